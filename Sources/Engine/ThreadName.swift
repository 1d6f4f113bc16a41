// Long-lived threads with a name the system shows (ps -L, top -H, perf) and a nice value
// of their own. Foundation's `Thread.name` does not reach the kernel on Linux, and glibc's
// pthread_setname_np is not visible to Swift, so the name goes through
// /proc/thread-self/comm (Linux 3.17).

import Foundation

/// Starts a thread running `body`, named `name` (for Foundation and the system) and, when
/// `nice` is not 0, at that nice value: on Linux it belongs to the thread itself
/// (setpriority(2), "Bugs"), so background work can yield the cores to callers.
public func startThread(named name: String, nice: Int32 = 0, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread { runAsThread(named: name, nice: nice, body) }
    thread.name = name
    thread.start()
}

/// Like `startThread`, but the thread may not be made (pthread_create fails with EAGAIN
/// past the system's or the user's limit on threads): returns 0 when it started, else the
/// error, where Foundation's `Thread.start` would lose it silently.
public func startThreadIfPossible(named name: String, nice: Int32 = 0, _ body: @escaping @Sendable () -> Void) -> Int32 {
    let work = Unmanaged.passRetained(ThreadBody { runAsThread(named: name, nice: nice, body) })
    var thread = pthread_t()
    let code = pthread_create(&thread, nil, { raw in
        Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, work.toOpaque())
    guard code == 0 else {
        work.release()
        return code
    }
    pthread_detach(thread)
    return 0
}

/// A new thread's first steps: its name and nice value, then `body`.
private func runAsThread(named name: String, nice: Int32, _ body: () -> Void) {
    nameCurrentThread(name)
    if nice != 0 { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, nice) }
    body()
}

private final class ThreadBody {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// Names the calling thread; Linux keeps the first 15 bytes. Elsewhere it does nothing.
func nameCurrentThread(_ name: String) {
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

/// Runs `bodies` at once, each but the first on a thread of its own (the calling thread
/// runs the first, and any the system will not give a thread), and returns when all have
/// ended: the first error thrown, if any, after all have ended. For system calls that
/// wait for the disk, which wait for the same device flush when they run together and
/// one after another when they do not (a file system's journal commit).
public func runConcurrently(_ bodies: [@Sendable () throws -> Void]) throws {
    guard bodies.count > 1 else {
        try bodies.first?()
        return
    }
    final class Outcome: @unchecked Sendable {
        let monitor = Monitor()
        var running = 0
        var error: (any Error)?
    }
    let outcome = Outcome()
    func record(_ error: (any Error)?) {
        outcome.monitor.withLock {
            if outcome.error == nil, let error { outcome.error = error }
        }
    }
    for body in bodies.dropFirst() {
        outcome.monitor.withLock { outcome.running += 1 }
        let code = startThreadIfPossible(named: currentThreadName()) {
            var failure: (any Error)?
            do { try body() } catch { failure = error }
            outcome.monitor.withLock {
                if outcome.error == nil, let failure { outcome.error = failure }
                outcome.running -= 1
                outcome.monitor.broadcast()
            }
        }
        if code != 0 {
            outcome.monitor.withLock { outcome.running -= 1 }
            do { try body() } catch { record(error) }
        }
    }
    do { try bodies[0]() } catch { record(error) }
    try outcome.monitor.withLock {
        while outcome.running > 0 { outcome.monitor.wait() }
        if let error = outcome.error { throw error }
    }
}
