// Group commit: concurrent callers that need durability share syncs, and none returns
// before a sync that started after its batch was applied. A sync first waits for the
// changes in progress (begun, not yet applied) so that they share it, but not forever.

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

    @Test func aChangeInProgressWhenASyncStartsSharesIt() throws {
        let gate = SyncGate(gatherLimit: .seconds(30))
        let syncs = Counter()
        // A change is under way (its batch not yet applied) when another caller syncs.
        gate.beginChange()
        runOnThreads(2) { index in
            if index == 1 {
                usleepMilliseconds(50)
                let sequence = gate.noteApplied()
                gate.endChange()
                // The sync waited for the change, so it covers the change's batch too.
                try? gate.waitDurable(sequence) { () throws(FSError) in syncs.add() }
            } else {
                let sequence = gate.noteApplied()
                try? gate.waitDurable(sequence) { () throws(FSError) in syncs.add() }
            }
        }
        #expect(syncs.value == 1, "the change needed a sync of its own")
    }

    @Test func aSyncWaitsForAChangeInProgressOnlyUpToItsLimit() throws {
        let gate = SyncGate(gatherLimit: .milliseconds(5))
        gate.beginChange()  // never ends
        let sequence = gate.noteApplied()
        var ran = false
        try gate.waitDurable(sequence) { () throws(FSError) in ran = true }
        #expect(ran)
    }
}
