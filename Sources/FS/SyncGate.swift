// Group commit for the FS: callers that need their applied batch durable share syncs.
// Each commit takes a sequence number when its batch is applied; a caller waits until a
// sync that started after its batch was applied has finished, or runs that sync itself.
// With N concurrent metadata operations, about two syncs serve all N, on every backend.

import Engine
import Foundation

final class SyncGate: @unchecked Sendable {
    // All fields are guarded by `condition`.
    private let condition = NSCondition()
    private var applied: UInt64 = 0
    private var synced: UInt64 = 0
    private var syncing = false

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
