// `zerofs bench nfs` end to end at a small size, without the reference: every phase runs
// through the real client and reports its rate and the server's CPU time per call.

import Engine
import FS
import Foundation
import KVTestSupport
import LSMBackend
import Testing

@Suite struct NFSBenchTests {
    @Test func everyPhaseReportsItsRateAndTheServersCPU() throws {
        let client = try NFSClientProgram.path.get()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("zerofs-nfsbench-\(getpid())").path
        defer { try? FileOps.removeTree(directory) }
        var options = NFSBenchOptions()
        options.files = [20]
        options.clients = 2
        options.mib = 2
        options.rounds = 1
        options.reference = "none"
        options.directory = directory
        options.client = client
        options.serverThreads = 2
        let outcome = try NFSBench.run(factory: LSMBackendFactory(), options: options) { _ in }

        let rows = outcome.results.map { "\($0.phase) \($0.clients)" }.sorted()
        let metadata = ["create", "stat", "readdir", "read", "unlink"].flatMap { ["\($0) 1", "\($0) 2"] }
        #expect(rows == (metadata + ["seqwrite 1", "seqread 1"]).sorted())
        for result in outcome.results {
            #expect(result.target == "zerofs")
            #expect(result.opsPerSecond > 0, "\(result.phase)")
            // Serving 20 calls, or a MiB, takes the server some CPU time, and not a second per unit.
            let cpu = try #require(result.serverCPUMicros, "\(result.phase)")
            #expect(cpu > 0 && cpu < 1_000_000, "\(result.phase): \(cpu) µs")
            #expect(result.json.contains(result.mbPerSecond == nil ? "\"server_cpu_us_per_op\":" : "\"server_cpu_us_per_mib\":"))
        }
        let table = NFSBench.table(outcome)
        #expect(table.contains("zerofs cpu"))
        #expect(outcome.peakRSSBytes > 0)
    }

    @Test func badOptionsAreRefusedBeforeAnythingRuns() {
        var options = NFSBenchOptions()
        options.reference = "knfsd"
        #expect(throws: KVError.self) { try options.validate() }
        options.reference = "none"
        options.files = [5]
        #expect(throws: KVError.self) { try options.validate() }
    }
}
