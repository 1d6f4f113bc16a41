// The read gate: a drain waits for the reads that entered before it, not for later ones.

@testable import FS
import Foundation
import Synchronization
import Testing

@Suite struct ReadGateTests {
    @Test func aDrainWaitsForEarlierReadsOnly() {
        let gate = ReadGate()
        let early = gate.enter()
        let drained = Atomic<Bool>(false)
        let drainer = Joinable {
            gate.drain()
            drained.store(true, ordering: .sequentiallyConsistent)
        }
        // A read entering while the drain waits is counted in the new epoch: the drain
        // does not wait for it.
        usleep(50_000)
        let late = gate.enter()
        usleep(100_000)
        let drainedEarly = drained.load(ordering: .sequentiallyConsistent)
        #expect(!drainedEarly, "the drain waits for the earlier read")
        #expect(gate.readers == 2)
        gate.leave(early)
        drainer.join()
        let drainedAfter = drained.load(ordering: .sequentiallyConsistent)
        #expect(drainedAfter)
        // The next drain waits for the late read.
        let second = Atomic<Bool>(false)
        let again = Joinable {
            gate.drain()
            second.store(true, ordering: .sequentiallyConsistent)
        }
        usleep(100_000)
        let secondEarly = second.load(ordering: .sequentiallyConsistent)
        #expect(!secondEarly, "the next drain waits for the later read")
        gate.leave(late)
        again.join()
        #expect(gate.readers == 0)
    }

    @Test func aDrainWithNoReadersReturnsAtOnce() {
        let gate = ReadGate()
        gate.leave(gate.enter())
        gate.drain()
        gate.drain()
        #expect(gate.readers == 0)
    }
}
