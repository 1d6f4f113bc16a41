// A guard that lets many threads use native handles at once while `close()` waits for
// them to finish and then frees everything exactly once. Backends over C libraries run
// every call under `shared`, so a close racing a read can never free memory in use.

import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public final class LifetimeGuard: @unchecked Sendable {
    // The rwlock lives at a stable heap address; `closed` is read and written only while
    // holding it (shared to read, exclusive to write).
    private let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)
    private var closed = false
    /// Mirrors `closed` for lock-free checks by users whose memory safety does not depend
    /// on the guard (they only need "closed" to be reported).
    private let closedFlag = Atomic<Bool>(false)
    private let what: String

    /// `what` names the guarded thing in `.closed` errors ("store", "read view").
    public init(_ what: String) {
        self.what = what
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    /// Runs `body` while the guarded thing is open; throws `.closed` after `close`.
    @inlinable
    public func shared<R>(_ body: () throws -> R) throws -> R {
        try enterShared()
        defer { leave() }
        return try body()
    }

    /// Runs `body` only if still open, for cleanup paths (deinit) that must not throw.
    public func ifOpen(_ body: () -> Void) {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        if !closed { body() }
    }

    public var isClosed: Bool {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return closed
    }

    /// Waits for every `shared` call to finish, marks the guard closed and runs `finalize`
    /// once. Returns false (and runs nothing) when it was already closed.
    @discardableResult
    public func close(_ finalize: () throws -> Void) rethrows -> Bool {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        if closed { return false }
        closed = true
        closedFlag.store(true, ordering: .releasing)
        try finalize()
        return true
    }

    /// Throws `.closed` after `close` began, without taking the lock. Only for callers
    /// that hold their own references to everything they touch.
    @inlinable
    public func ensureOpen() throws(KVError) {
        if isClosedFast { throw KVError(.closed, "\(describe) is closed") }
    }

    @usableFromInline
    var isClosedFast: Bool { closedFlag.load(ordering: .acquiring) }

    @usableFromInline
    var describe: String { what }

    @usableFromInline
    func enterShared() throws(KVError) {
        pthread_rwlock_rdlock(lock)
        if closed {
            pthread_rwlock_unlock(lock)
            throw KVError.closed(what)
        }
    }

    @usableFromInline
    func leave() { pthread_rwlock_unlock(lock) }
}
