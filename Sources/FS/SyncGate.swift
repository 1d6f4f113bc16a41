// Group commit for the FS: callers that need their applied batch durable share syncs.
// Each commit takes a sequence number when its batch is applied; a caller waits until a
// sync that started after its batch was applied has finished, or runs that sync itself.
// With N concurrent metadata operations, about two syncs serve all N, on every backend.
//
// Before its sync, the caller that runs it waits (briefly) for the changes in progress
// when it got there to apply their batches: they then share its sync instead of waiting
// for it to end and paying for a sync of their own. A lone operation never waits.

import Engine
import Foundation
import Synchronization

final class SyncGate: @unchecked Sendable {
    // `applied`, `synced` and `syncing` are guarded by `condition`.
    private let condition = NSCondition()
    private var applied: UInt64 = 0
    private var synced: UInt64 = 0
    private var syncing = false

    /// Changes that entered and left their locked section (`beginChange`, `endChange`).
    private let entered = Atomic<UInt64>(0)
    private let left = Atomic<UInt64>(0)
    /// True while a syncing caller waits on `drain` for changes in progress.
    private let draining = Atomic<Bool>(false)
    private let drain = NSCondition()
    /// The longest a sync waits for changes in progress.
    let gatherLimit: Duration

    init(gatherLimit: Duration = .microseconds(100)) {
        self.gatherLimit = gatherLimit
    }

    /// A change starts: its batch will be applied before the matching `endChange`.
    func beginChange() {
        entered.add(1, ordering: .sequentiallyConsistent)
    }

    /// A change has applied its batch, or given up.
    func endChange() {
        left.add(1, ordering: .sequentiallyConsistent)
        if draining.load(ordering: .sequentiallyConsistent) {
            drain.lock()
            drain.signal()
            drain.unlock()
        }
    }

    /// Waits until as many changes have ended as had begun on entry, or `gatherLimit`.
    private func gather() {
        let goal = entered.load(ordering: .sequentiallyConsistent)
        if left.load(ordering: .sequentiallyConsistent) >= goal { return }
        let limit = gatherLimit.components
        let deadline = Date().addingTimeInterval(Double(limit.seconds) + Double(limit.attoseconds) / 1e18)
        drain.lock()
        draining.store(true, ordering: .sequentiallyConsistent)
        while left.load(ordering: .sequentiallyConsistent) < goal {
            if !drain.wait(until: deadline) { break }
        }
        draining.store(false, ordering: .sequentiallyConsistent)
        drain.unlock()
    }

    /// Called under the commit lock, right after a batch is applied: its sequence number.
    func noteApplied() -> UInt64 {
        condition.lock()
        defer { condition.unlock() }
        applied += 1
        return applied
    }

    /// The sequence number of the last applied batch.
    var lastApplied: UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return applied
    }

    /// Returns once every batch up to `sequence` is durable.
    func waitDurable(_ sequence: UInt64, _ sync: () throws(FSError) -> Void) throws(FSError) {
        condition.lock()
        defer { condition.unlock() }
        while synced < sequence {
            if syncing {
                condition.wait()
                continue
            }
            syncing = true
            condition.unlock()
            gather()
            condition.lock()
            let target = applied
            condition.unlock()
            let result = Result { () throws(FSError) in try sync() }
            condition.lock()
            syncing = false
            if case .success = result { synced = max(synced, target) }
            condition.broadcast()
            try result.get()
        }
    }
}
