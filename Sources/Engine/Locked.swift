// Locked: a value behind glibc's plain mutex, the lock of every hot path.
//
// Why not Synchronization.Mutex: on Linux it spins on a contended lock, then blocks on a
// priority-inheriting futex, whose unlock hands the lock to the sleeping waiter. That
// waiter must first be scheduled, and with more runnable threads than cores (a server on
// two cores, its event loops, workers and clients) every thread that wants the lock
// meanwhile spins and then queues behind it: a lock convoy. With 16 NFS clients, `perf`
// put 35% of the server's samples in `Mutex._lockSlow`, and one phase's CPU per call rose
// eightfold (Docs/nfs.md, "Locks"). glibc's mutex neither spins nor hands over: unlock
// wakes a waiter, and whichever thread runs first takes the lock.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `State` guarded by a mutex; `withLock` gives exclusive access. Not recursive.
///
/// Thread safety: as with `Mutex`, the value is reached only through `withLock`, and it
/// goes in and out `sending` (a region of its own), so sharing a `Locked` between
/// threads is safe.
public final class Locked<State>: @unchecked Sendable {
    @usableFromInline let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    @usableFromInline let value = UnsafeMutablePointer<State>.allocate(capacity: 1)

    public init(_ initial: sending State) {
        // A default mutex: fails only without memory, which the allocation above did not.
        pthread_mutex_init(mutex, nil)
        value.initialize(to: initial)
    }

    deinit {
        value.deinitialize(count: 1)
        value.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Inlinable, so that callers in other modules get it specialized and inlined: a
    /// generic call across modules cost some 200 instructions a lock.
    @inlinable @inline(__always)
    public func withLock<R, E: Error>(_ body: (inout sending State) throws(E) -> sending R) throws(E) -> sending R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}
