// `zerofs bench snapshot`: what snapshots cost, on a fresh store of each backend.
//   snapshot: the time to snapshot a dataset of --small-files files and one of --files
//     files (--reps snapshots each; median and p99), then of the large one under a running
//     writer.
//   read / write: random whole-file reads and rewrites on the large dataset after
//     --snapshots rounds rewriting --rewrite-percent of the files (no snapshot), then again
//     after as many rounds with a snapshot after each; then 10 clones and one rollback (to
//     the middle snapshot, keeping the later ones) are timed, and reads and writes measured
//     again.
//   gc: client latency (a rewrite and a read of random files, one thread) while idle and
//     while the background collector reclaims the oldest snapshot, deleted (it holds the
//     most), until it is done.
// Files are --file-kib of seeded random bytes in 100 directories. Metadata is not made
// durable per operation (the setup would take minutes); snapshots are durable.

import Engine
import FS
import Foundation
import Synchronization

public struct SnapshotBenchOptions: Sendable {
    public var files = 100_000
    public var smallFiles = 10
    public var fileKiB = 4
    public var reps = 15
    public var snapshots = 100
    public var rewritePercent = 1.0
    public var ops = 60_000
    public var cacheBytes = 64 << 20
    public var directory: String?
    public var seed: UInt64 = 42

    public init() {}

    public func validate() throws(KVError) {
        guard files >= 100, smallFiles >= 1, fileKiB >= 1, reps >= 1, snapshots >= 2, ops >= 1,
              rewritePercent > 0, rewritePercent <= 100
        else {
            throw KVError(.invalidArgument, "--files must be at least 100, --snapshots at least 2, --rewrite-percent in (0, 100], the rest positive")
        }
    }
}

public struct SnapshotBenchResult: Sendable, BenchMeasurement {
    public var backend: String
    public var workload: String
    public var files: Int
    public var snapshots: Int
    public var ops: Int
    public var seconds: Double
    public var bytes: Int
    public var p50Micros: Double
    public var p99Micros: Double

    /// For snapshot, clone and rollback rows: the median time of one, in milliseconds.
    public var snapshotMillis: Double? {
        ["snapshot", "snapshot-under-writer", "clone", "rollback"].contains(workload) ? p50Micros / 1000 : nil
    }

    public func json() -> String {
        var line = "{" + commonJSONFields + ",\"files\":\(files),\"snapshots\":\(snapshots)"
        if let ms = snapshotMillis { line += ",\"snapshot_ms\":\(String(format: "%.3f", ms)),\"snapshot_p99_ms\":\(String(format: "%.3f", p99Micros / 1000))" }
        return line + "}"
    }

    public static var header: [String] { ["backend", "workload", "files", "snapshots", "ops", "ops/s", "p50 ms", "p99 ms"] }

    public var row: [String] {
        [backend, workload, "\(files)", "\(snapshots)", "\(ops)", String(format: "%.0f", opsPerSecond),
         String(format: "%.3f", p50Micros / 1000), String(format: "%.3f", p99Micros / 1000)]
    }
}

public enum SnapshotBench {
    public static func run(factory: any KVBackendFactory, options: SnapshotBenchOptions, report: (SnapshotBenchResult) -> Void) throws {
        try options.validate()
        let root = try options.directory ?? KVBench.makeTemporaryDirectory()
        defer { if options.directory == nil { try? FileOps.removeTree(root) } }
        let path = root + "/snap-" + factory.name
        try FileOps.removeTree(path)
        var backendOptions = BackendOptions()
        backendOptions.cacheBytes = options.cacheBytes
        let store = try factory.open(at: path, options: backendOptions)
        defer { try? store.close() }
        var fsOptions = FSOptions()
        fsOptions.durableMetadata = false
        let pool = try Pool.open(store, options: fsOptions)
        defer { try? pool.close() }
        var runner = try SnapshotRunner(pool: pool, backend: factory.name, options: options)
        try runner.run(report)
    }

    public static func table(_ results: [SnapshotBenchResult]) -> String {
        TextTable.render([SnapshotBenchResult.header] + results.map(\.row))
    }
}

struct SnapshotRunner {
    let pool: Pool
    let backend: String
    let options: SnapshotBenchOptions
    let data: [UInt8]
    var random: SeededGenerator
    var latencies = LatencyRecorder()

    /// A dataset of the same files: 100 directories, file i in directory i % 100.
    struct Tree {
        let fs: FileSystem
        var directories: [UInt64] = []

        func directory(of file: Int) -> UInt64 { directories[file % directories.count] }
    }

    init(pool: Pool, backend: String, options: SnapshotBenchOptions) throws {
        self.pool = pool
        self.backend = backend
        self.options = options
        random = SeededGenerator(seed: options.seed)
        var generator = SeededGenerator(seed: options.seed &+ 1)
        data = (0..<(options.fileKiB << 10) * 64).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    func name(_ file: Int) -> [UInt8] { Array("file-\(file)".utf8) }

    /// The bytes of one file: a seeded slice of the random pool.
    mutating func content() -> [UInt8] {
        let size = options.fileKiB << 10
        let at = Int.random(in: 0...(data.count - size), using: &random)
        return Array(data[at..<(at + size)])
    }

    mutating func run(_ report: (SnapshotBenchResult) -> Void) throws {
        let small = try pool.filesystem(try pool.createDataset("small").id)
        for file in 0..<options.smallFiles {
            let node = try small.create(.root, small.root, name(file), mode: 0o644)
            try small.write(.root, node.ino, offset: 0, content())
        }
        // Two datasets of the same files and history; "big" gets the snapshots, "flat"
        // none. Measured in turns, in one store, so both see the same store and cache.
        let big = try makeTree("big")
        let flat = try makeTree("flat")
        try pool.store.flush()
        for row in try timeSnapshots(["small": options.smallFiles, "big": options.files]) { report(row) }
        report(try snapshotsUnderWriter(big))
        // The snapshots above go, so the read and write rows compare none with many.
        for info in try pool.listSnapshots(of: "big") { try pool.deleteSnapshot(info.name) }
        try pool.collectGarbage()
        let rewrites = max(1, Int(Double(options.files) * options.rewritePercent / 100))
        for round in 0..<options.snapshots {
            for _ in 0..<rewrites {
                let file = Int.random(in: 0..<options.files, using: &random)
                let bytes = content()
                try rewrite(big, file, bytes)
                try rewrite(flat, file, bytes)
            }
            try pool.snapshot("big", "s\(round)")
        }
        try pool.store.flush()
        for row in try compare(flat, big) { report(row) }
        latencies.reset()
        var start = Clock.now()
        for index in 0..<10 {
            let t = Clock.now()
            _ = try pool.clone("big@s\(options.snapshots / 2 + index % (options.snapshots / 2))", to: "clone\(index)")
            latencies.record(since: t)
        }
        report(result("clone", files: options.files, ops: 10, start: start))
        latencies.reset()
        start = Clock.now()
        try pool.rollback("big", to: "s\(options.snapshots / 2)")
        latencies.record(since: start)
        report(result("rollback", files: options.files, ops: 1, start: start))
        try pool.collectGarbage()
        for row in try compare(flat, big, after: "-after-rollback") { report(row) }
        try pool.collectGarbage()

        // Client latency while idle, then while the collector merges the oldest snapshot.
        try pool.store.settleBackgroundWork()
        report(try clientLatency(big, workload: "client-idle", ops: options.ops) { false })
        // The background worker collects (paced, at a lower priority), as in a server.
        let oldest = "big@s0"
        let gcStart = Clock.now()
        try pool.deleteSnapshot(oldest)
        let collecting = pool
        var during = try clientLatency(big, workload: "client-during-gc", ops: Int.max) { !collecting.isCollecting }
        during.seconds = Double(Clock.now() - gcStart) / 1e9
        report(during)
    }

    mutating func makeTree(_ dataset: String) throws -> Tree {
        var tree = Tree(fs: try pool.filesystem(try pool.createDataset(dataset).id))
        for d in 0..<100 { tree.directories.append(try tree.fs.mkdir(.root, tree.fs.root, Array("d\(d)".utf8), mode: 0o755).ino) }
        var generator = SeededGenerator(seed: options.seed &+ 2)
        for file in 0..<options.files {
            let node = try tree.fs.create(.root, tree.directory(of: file), name(file), mode: 0o644)
            let size = options.fileKiB << 10
            let at = Int.random(in: 0...(data.count - size), using: &generator)
            try tree.fs.write(.root, node.ino, offset: 0, Array(data[at..<(at + size)]))
        }
        return tree
    }

    func rewrite(_ tree: Tree, _ file: Int, _ bytes: [UInt8]) throws {
        let node = try tree.fs.lookup(.root, tree.directory(of: file), name(file))
        try tree.fs.write(.root, node.ino, offset: 0, bytes)
    }

    func readFile(_ tree: Tree, _ file: Int) throws {
        let node = try tree.fs.lookup(.root, tree.directory(of: file), name(file))
        _ = try tree.fs.read(.root, node.ino, offset: 0, count: Int(node.size))
    }

    func result(_ workload: String, files: Int, snapshots: Int = 0, ops: Int, start: UInt64, bytes: Int = 0) -> SnapshotBenchResult {
        var recorder = latencies
        let (p50, p99) = recorder.percentiles()
        return SnapshotBenchResult(backend: backend, workload: workload, files: files, snapshots: snapshots, ops: ops,
                                   seconds: Double(Clock.now() - start) / 1e9, bytes: bytes, p50Micros: p50, p99Micros: p99)
    }

    /// Snapshots of each dataset (name: files) in turns, --reps each.
    mutating func timeSnapshots(_ datasets: [String: Int]) throws -> [SnapshotBenchResult] {
        var samples: [String: LatencyRecorder] = [:]
        let start = Clock.now()
        for rep in 0..<options.reps {
            for dataset in datasets.keys.sorted() {
                let t = Clock.now()
                try pool.snapshot(dataset, "timed-\(rep)")
                samples[dataset, default: LatencyRecorder()].record(since: t)
            }
        }
        return datasets.sorted { $0.value < $1.value }.map { dataset, files in
            latencies = samples[dataset] ?? LatencyRecorder()
            return result("snapshot", files: files, ops: options.reps, start: start)
        }
    }

    mutating func snapshotsUnderWriter(_ tree: Tree) throws -> SnapshotBenchResult {
        let fs = tree.fs
        let stop = Atomic<Bool>(false)
        let failure = Locked<String?>(nil)
        let (files, data, directories) = (options.files, data, tree.directories)
        let writer = Thread {
            var random = SeededGenerator(seed: 7)
            while !stop.load(ordering: .acquiring) {
                let file = Int.random(in: 0..<files, using: &random)
                do {
                    let node = try fs.lookup(.root, directories[file % directories.count], Array("file-\(file)".utf8))
                    let at = Int.random(in: 0...(data.count - 4096), using: &random)
                    try fs.write(.root, node.ino, offset: 0, Array(data[at..<(at + 4096)]))
                } catch {
                    failure.withLock { $0 = "\(error)" }
                    return
                }
            }
        }
        writer.start()
        Thread.sleep(forTimeInterval: 0.2)
        latencies.reset()
        let start = Clock.now()
        for rep in 0..<options.reps {
            let t = Clock.now()
            try pool.snapshot("big", "writer-\(rep)")
            latencies.record(since: t)
            Thread.sleep(forTimeInterval: 0.02)
        }
        let outcome = result("snapshot-under-writer", files: options.files, ops: options.reps, start: start)
        stop.store(true, ordering: .releasing)
        while !writer.isFinished { Thread.sleep(forTimeInterval: 0.001) }
        if let failure = failure.withLock({ $0 }) { throw KVError(.io, "the writer failed: \(failure)") }
        return outcome
    }

    /// Random whole-file reads (lookup, then read) and rewrites (lookup, then write) on the
    /// dataset without snapshots and the one with them, in turns (the first alternating): five runs
    /// each, the median reported.
    mutating func compare(_ flat: Tree, _ big: Tree, after suffix: String = "") throws -> [SnapshotBenchResult] {
        var runs: [String: [SnapshotBenchResult]] = [:]
        for run in 0..<5 {
            for (workload, write) in [("read", false), ("write", true)] {
                // Which goes first alternates: neither always follows the other's writes.
                let turns = [(flat, 0), (big, options.snapshots)]
                for (tree, snapshots) in run % 2 == 0 ? turns : turns.reversed() {
                    // Both datasets see the same files in the same order.
                    var picks = SeededGenerator(seed: options.seed &+ UInt64(2 * run + (write ? 1 : 0)) &+ 99)
                    // Each row starts from a settled store: it pays for the flushes and
                    // compactions it causes, not for those the row before it left.
                    try pool.store.settleBackgroundWork()
                    latencies.reset()
                    let start = Clock.now()
                    for _ in 0..<options.ops {
                        let file = Int.random(in: 0..<options.files, using: &picks)
                        let t = Clock.now()
                        if write { try rewrite(tree, file, content()) } else { try readFile(tree, file) }
                        latencies.record(since: t)
                    }
                    let row = result(workload + suffix, files: options.files, snapshots: snapshots, ops: options.ops,
                                     start: start, bytes: options.ops * (options.fileKiB << 10))
                    runs["\(workload)\(snapshots)", default: []].append(row)
                }
            }
        }
        return ["read0", "read\(options.snapshots)", "write0", "write\(options.snapshots)"].compactMap { key in
            runs[key].map { $0.sorted { $0.opsPerSecond < $1.opsPerSecond }[$0.count / 2] }
        }
    }

    /// A client rewriting then reading random files until `finished()` (or `ops` ops).
    mutating func clientLatency(_ tree: Tree, workload: String, ops: Int, finished: () -> Bool) throws -> SnapshotBenchResult {
        latencies.reset()
        let start = Clock.now()
        var count = 0
        while count < ops, !finished() {
            let file = Int.random(in: 0..<options.files, using: &random)
            let t = Clock.now()
            if count % 2 == 0 { try rewrite(tree, file, content()) } else { try readFile(tree, file) }
            latencies.record(since: t)
            count += 1
        }
        return result(workload, files: options.files, snapshots: options.snapshots - 1, ops: count, start: start)
    }
}

extension SnapshotBench {
    /// The ratios the aims are stated in, per backend.
    public static func summary(_ results: [SnapshotBenchResult]) -> String {
        var lines: [String] = []
        for backend in Set(results.map(\.backend)).sorted() {
            let rows = results.filter { $0.backend == backend }
            func row(_ workload: String, files: Int? = nil, snapshots: Int? = nil) -> SnapshotBenchResult? {
                rows.first { $0.workload == workload && (files == nil || $0.files == files) && (snapshots == nil || $0.snapshots == snapshots) }
            }
            let snaps = rows.filter { $0.workload == "snapshot" }.sorted { $0.files < $1.files }
            if snaps.count == 2 {
                lines.append(String(format: "%@: snapshot %d files / %d files: %.2fx (%.3f ms / %.3f ms)", backend, snaps[1].files,
                                    snaps[0].files, snaps[1].p50Micros / max(snaps[0].p50Micros, 1e-9),
                                    snaps[1].p50Micros / 1000, snaps[0].p50Micros / 1000))
            }
            for workload in ["read", "write"] {
                let counts = Set(rows.filter { $0.workload == workload }.map(\.snapshots)).sorted()
                if counts.count == 2, let none = row(workload, snapshots: counts[0]), let many = row(workload, snapshots: counts[1]) {
                    lines.append(String(format: "%@: %@ with %d snapshots / with none: %.2fx", backend, workload, counts[1],
                                        many.opsPerSecond / max(none.opsPerSecond, 1e-9)))
                }
            }
            if backend != "btrfs", let big = snaps.last,
               let btrfs = results.first(where: { $0.backend == "btrfs" && $0.workload == "snapshot" && $0.files == big.files }) {
                lines.append(String(format: "%@: snapshot of %d files / btrfs: %.2fx (%.3f ms / %.3f ms)", backend, big.files,
                                    big.p50Micros / max(btrfs.p50Micros, 1e-9), big.p50Micros / 1000, btrfs.p50Micros / 1000))
            }
            if let idle = row("client-idle"), let gc = row("client-during-gc") {
                lines.append(String(format: "%@: client p99 while collecting / idle: %.2fx (%.3f ms / %.3f ms)", backend,
                                    gc.p99Micros / max(idle.p99Micros, 1e-9), gc.p99Micros / 1000, idle.p99Micros / 1000))
            }
        }
        return lines.joined(separator: "\n")
    }
}
