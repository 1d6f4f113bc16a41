// A store whose syncs a test controls: it can hold them back (a durable write blocks at a
// gate until released) or make them fail, to check who waits for durability and what a
// failed sync answers.

import Engine
import Foundation
import Synchronization

/// Forwards to a store; while `hold` is set, a durable write (a sync) blocks until it is
/// cleared, and while `failSyncs` is set, one throws instead.
public final class HeldSyncStore: ForwardingBackend, @unchecked Sendable {
    private let gate = HoldGate()
    private let failing = Atomic<Bool>(false)

    public override init(_ inner: any KVBackend) { super.init(inner) }

    public func hold(_ on: Bool) { gate.hold(on) }

    /// Durable writes throw `KVError.io` after passing the gate.
    public func failSyncs(_ on: Bool) { failing.store(on, ordering: .sequentiallyConsistent) }

    /// Waits until at least one sync is blocked (false after `timeout` seconds).
    public func waitForBlockedSync(timeout: TimeInterval) -> Bool { gate.waitForWaiter(timeout: timeout) }

    public override func write(_ batch: WriteBatch, durable: Bool) throws {
        if durable {
            gate.pass()
            if failing.load(ordering: .sequentiallyConsistent) { throw KVError(.io, "sync refused by the test") }
        }
        try inner.write(batch, durable: durable)
    }
}
