// Named crash points between the steps of each mutation. A no-op unless a test arms one:
// then the filesystem stops at that point (the step after it never runs, and every later
// call fails with EIO), which is what a process killed there leaves in the store.

import Engine
import Synchronization

public final class CrashPoints: Sendable {
    /// Every point, for tests that visit each one.
    public static let all: [String] = {
        let ops = ["create", "mkdir", "symlink", "mknod", "link", "unlink", "rmdir", "rename", "write", "setattr",
                   "reclaim", "reclaim-finish"]
        return ops.flatMap { ["\($0).before-commit", "\($0).after-commit"] }
    }()

    private let state = Locked<(armed: String?, skip: Int, stopped: Bool)>((nil, 0, false))
    /// Set by the first `arm`: until then `pass` neither names its point nor takes the lock.
    private let everArmed = Atomic<Bool>(false)

    public init() {}

    /// Stops at point `name` once it has been passed `skip` times.
    public func arm(_ name: String, skip: Int = 0) {
        state.withLock { $0 = (name, skip, $0.stopped) }
        everArmed.store(true, ordering: .sequentiallyConsistent)
    }

    public var stopped: Bool { state.withLock { $0.stopped } }

    /// Throws once the armed point is reached (and on every call after that).
    func pass(_ name: @autoclosure () -> String) throws(FSError) {
        guard everArmed.load(ordering: .relaxed) else { return }
        let name = name()
        let stop = state.withLock { s -> Bool in
            if s.armed == name {
                if s.skip == 0 { s.stopped = true } else { s.skip -= 1 }
            }
            return s.stopped
        }
        if stop { throw FSError(.EIO, "stopped at crash point \(name)") }
    }

    func checkRunning() throws(FSError) {
        if stopped { throw FSError(.EIO, "the filesystem stopped at a crash point") }
    }
}
