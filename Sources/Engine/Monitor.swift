// A mutex with a condition variable, for the few places that must wait for another thread
// (group commit leaders and followers). Synchronization.Mutex has no condition variable.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public final class Monitor: @unchecked Sendable {
    // The pthread objects live at stable heap addresses and are only touched through
    // pthread calls, which are thread-safe by definition.
    let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    /// Runs `body` holding the mutex.
    @inlinable
    public func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock()
        defer { unlock() }
        return try body()
    }

    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }

    /// REQUIRES: the caller holds the mutex. Releases it while waiting.
    public func wait() { pthread_cond_wait(condition, mutex) }

    /// Waits at most `seconds`; returns false on time-out. REQUIRES: the mutex is held.
    public func wait(seconds: Double) -> Bool { Self.wait(condition, mutex, seconds: seconds) }

    public func broadcast() { pthread_cond_broadcast(condition) }

    static func wait(_ condition: UnsafeMutablePointer<pthread_cond_t>, _ mutex: UnsafeMutablePointer<pthread_mutex_t>, seconds: Double) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let total = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 + seconds
        var deadline = timespec()
        deadline.tv_sec = Int(total)
        deadline.tv_nsec = Int((total - Double(Int(total))) * 1e9)
        return pthread_cond_timedwait(condition, mutex, &deadline) == 0
    }
}

/// A second condition variable on a monitor's mutex: for a thread that waits for one
/// particular change, so that the monitor's broadcasts for the others do not wake it.
public final class MonitorCondition: @unchecked Sendable {
    private let monitor: Monitor
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init(on monitor: Monitor) {
        self.monitor = monitor
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        condition.deallocate()
    }

    /// Waits at most `seconds`; returns false on time-out. REQUIRES: the monitor's mutex
    /// is held.
    public func wait(seconds: Double) -> Bool { Monitor.wait(condition, monitor.mutex, seconds: seconds) }

    public func signal() { pthread_cond_signal(condition) }
}
