// A gate a test closes to hold threads at one point of their work (a store's sync, a WAL
// write) and opens to let them go on.

import Foundation

public final class HoldGate: @unchecked Sendable {
    // `condition` guards `held` and `waiting`.
    private let condition = NSCondition()
    private var held = false
    private var waiting = 0

    public init() {}

    /// Closes (true) or opens (false) the gate.
    public func hold(_ on: Bool) {
        condition.lock()
        held = on
        condition.broadcast()
        condition.unlock()
    }

    /// Passes the gate: waits while it is closed.
    public func pass() {
        condition.lock()
        waiting += 1
        condition.broadcast()
        while held { condition.wait() }
        waiting -= 1
        condition.unlock()
    }

    /// Waits until a thread waits at the gate (false after `timeout` seconds).
    public func waitForWaiter(timeout: TimeInterval) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while waiting == 0 {
            if !condition.wait(until: deadline) { return waiting > 0 }
        }
        return true
    }
}
