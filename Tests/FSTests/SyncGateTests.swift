// Group commit: concurrent callers that need durability share syncs, and none returns
// before a sync that started after its batch was applied.

@testable import FS
import FSTestSupport
import KVTestSupport
import Synchronization
import Testing

@Suite struct SyncGateTests {
    @Test func concurrentCallersShareSyncs() throws {
        let gate = SyncGate()
        let syncs = Counter()
        let late = Counter()
        let durableUpTo = Mutex<UInt64>(0)
        runOnThreads(8) { _ in
            let sequence = gate.noteApplied()
            try? gate.waitDurable(sequence) { () throws(FSError) in
                let covers = gate.lastApplied
                syncs.add()
                usleepMilliseconds(50)
                durableUpTo.withLock { $0 = max($0, covers) }
            }
            if durableUpTo.withLock({ $0 }) < sequence { late.add() }
        }
        #expect(late.value == 0, "a caller returned before its batch was synced")
        #expect(syncs.value <= 4, "8 callers needed \(syncs.value) syncs")
    }

    @Test func aFailedSyncFailsItsCallerAndTheNextOneRetries() throws {
        let gate = SyncGate()
        let sequence = gate.noteApplied()
        #expect(throws: FSError.self) {
            try gate.waitDurable(sequence) { () throws(FSError) in throw FSError(.EIO, "disk gone") }
        }
        var ran = false
        try gate.waitDurable(sequence) { () throws(FSError) in ran = true }
        #expect(ran)
    }
}
