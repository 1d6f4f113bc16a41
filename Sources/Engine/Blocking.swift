// Blocking: how a thread tells the pool that runs it that it is about to wait for the
// disk (a sync), so the pool can let another of its threads run meanwhile. The NFS worker
// pool lets only as many workers run as there are cores (Docs/nfs.md, "Threads"); a
// worker waiting for a sync would otherwise keep a core's share of the work queued.

/// A pool that wants to hear when one of its threads waits.
public protocol BlockingObserver: AnyObject, Sendable {
    /// The calling thread is about to wait.
    func willBlock()
    /// The calling thread runs again.
    func didUnblock()
}

public enum Blocking {
    /// The observer of the calling thread's pool (nil for threads of no such pool).
    @TaskLocal public static var observer: (any BlockingObserver)?

    /// Runs `body`, a wait, with the calling thread's pool told. Nested waits (a sync
    /// held back by a full memtable) tell it once: inside, the thread has no observer.
    public static func during<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        guard let observer else { return try body() }
        observer.willBlock()
        defer { observer.didUnblock() }
        return try $observer.withValue(nil, typed: body)
    }
}
