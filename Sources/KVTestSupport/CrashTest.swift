// The crash test: a child process (`zerofs debug crash-writer`) writes durable batches and
// acknowledges each; it is killed with SIGKILL at a random moment; the reopened store must
// hold every acknowledged batch, and no batch in part. The child runs with the SyncCounter
// library preloaded, and every acknowledgement must come after a completed sync call,
// since a kill keeps the page cache and would hide a missing fsync.

import Engine
import Testing
import Workloads

#if canImport(Glibc)
import Glibc
#endif

public struct CrashTest {
    public let factory: any KVBackendFactory
    public var rounds = 4
    /// The store's location for a given harness path, and the child's extra arguments
    /// (a remote store: its location and `--remote` settings).
    public var location: @Sendable (String) -> String = { $0 }
    public var childArguments: [String] = []
    /// Whether acknowledgements must follow a completed sync call (a local store); a remote
    /// store is durable when its object store answers, with no sync call to count.
    public var checksSyncs = true
    let seed: UInt64

    public init(_ factory: any KVBackendFactory, testName: String) {
        self.factory = factory
        seed = TestSeed.resolve(testName)
        rounds = TestSeed.environmentInt("ZEROFS_CRASH_ROUNDS", default: 4)
    }

    /// The built `zerofs` executable and sync counter, next to the test binary.
    public static func builtProducts() -> (zerofs: String, syncCounter: String)? {
        let folder = FileOps.parentPath(ChildProcess.currentExecutable)
        let zerofs = folder + "/zerofs"
        let library = folder + "/libZeroFSSyncCounter.so"
        guard FileOps.kind(of: zerofs) == .file, FileOps.kind(of: library) == .file else { return nil }
        return (zerofs, library)
    }

    public func run() throws {
        guard let products = Self.builtProducts() else {
            Issue.record("the crash test needs the built zerofs executable and libZeroFSSyncCounter.so next to the test binary; run `swift build` before `swift test`")
            return
        }
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        var random = SeededGenerator(seed: seed)
        var next: UInt64 = 0
        for round in 0..<rounds {
            let child = try ChildProcess(
                executable: products.zerofs,
                arguments: ["debug", "crash-writer", "--backend", factory.name, "--path", location(path), "--start", "\(next)"] + childArguments,
                environment: ["LD_PRELOAD=" + products.syncCounter])
            let killAfter = Int.random(in: 5...120, using: &random)
            var acknowledged: UInt64?
            var unsynced: [String] = []
            var seen = 0
            while let line = child.readLine() {
                let fields = line.split(separator: " ")
                guard fields.count == 4, fields[0] == "ack", let batch = UInt64(fields[1]),
                      let before = UInt64(fields[2]), let after = UInt64(fields[3])
                else {
                    Issue.record("unexpected writer output: \(line)")
                    break
                }
                acknowledged = batch
                if after <= before { unsynced.append(line) }
                seen += 1
                if seen == killAfter {
                    usleep(UInt32.random(in: 0...3000, using: &random))
                    break
                }
            }
            child.kill()
            if checksSyncs, !unsynced.isEmpty {
                Issue.record("\(factory.name): \(unsynced.count) durable writes were acknowledged without a completed sync, first: \(unsynced[0]) (seed \(seed))")
            }
            guard let last = acknowledged else {
                Issue.record("\(factory.name) round \(round): the writer acknowledged nothing (seed \(seed))")
                return
            }

            let store = try factory.open(at: path, options: BackendOptions())
            var counts: [UInt64: Int] = [:]
            var wrongValues = 0
            try store.scan(.prefix(CrashWriter.prefix)) { key, value in
                let batch = key.dropFirst(CrashWriter.prefix.count).prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                counts[batch, default: 0] += 1
                if Array(value) != CrashWriter.value(batch: batch) { wrongValues += 1 }
                return true
            }
            try store.close()
            let present = counts.keys.sorted()
            #expect(wrongValues == 0, "\(factory.name): \(wrongValues) values were damaged (seed \(seed))")
            #expect(present.first == 0 && present.last == UInt64(present.count - 1),
                    "\(factory.name): the surviving batches are not a prefix of the sequence (seed \(seed))")
            #expect((present.last ?? 0) >= last, "\(factory.name) round \(round): acknowledged batch \(last) is missing; last present \(String(describing: present.last)) (seed \(seed))")
            let partial = counts.filter { $0.value != CrashWriter.keys(batch: $0.key).count }
            #expect(partial.isEmpty, "\(factory.name): batches survived in part: \(partial.keys.sorted().prefix(5)) (seed \(seed))")
            next = (present.last ?? 0) + 1
        }
    }
}
