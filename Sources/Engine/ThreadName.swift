// Names the calling thread for the system (ps -L, top -H, perf): Foundation's
// `Thread.name` does not reach the kernel on Linux, and glibc's pthread_setname_np is not
// visible to Swift, so the name goes through /proc/thread-self/comm (Linux 3.17).

import Foundation

/// Names the calling thread; Linux keeps the first 15 bytes. Elsewhere it does nothing.
public func nameCurrentThread(_ name: String) {
    let bytes = Array(name.utf8.prefix(15))
    let fd = open("/proc/thread-self/comm", O_WRONLY)
    guard fd >= 0 else { return }
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}

/// The calling thread's name as the system knows it ("" when it cannot tell).
public func currentThreadName() -> String {
    guard let text = try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8) else { return "" }
    return text.trimmingCharacters(in: .newlines)
}
