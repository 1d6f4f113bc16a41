// `zerofs bench kv`: a db_bench-style benchmark of any backend through the KVBackend API.
// Each backend runs in its own child process (peak RSS never falls within a process) and
// reports one JSON object per workload; the parent prints a table or forwards the JSON.
//
// Workloads, in order: fillseq (fresh store), fillrandom (fresh store), overwrite,
// readrandom, readseq, seekrandom (seek + 10 next), deleterandom; each over --num keys.

import Engine
import Foundation

#if canImport(Glibc)
import Glibc
#endif

public struct KVBenchOptions: Sendable {
    public var num = 1_000_000
    public var keySize = 16
    public var valueSize = 100
    public var batchSize = 1
    public var durable = false
    public var workloads = KVBench.allWorkloads
    public var directory: String?
    public var backendOptions = BackendOptions()
    public var seed: UInt64 = 42
    /// Stores go under this remote location ("s3://bucket/prefix") instead of `directory`,
    /// with `backendOptions.remote`; their disk caches stay local.
    public var remoteRoot: String?
    /// The name results carry (default: the backend's).
    public var label: String?

    public init() {}

    public func validate() throws(KVError) {
        guard num >= 1 else { throw KVError(.invalidArgument, "--num must be at least 1") }
        guard (8...KVLimits.maxKeySize).contains(keySize) else {
            throw KVError(.invalidArgument, "--key-size must be 8 to \(KVLimits.maxKeySize) bytes")
        }
        guard (0...(1 << 20)).contains(valueSize) else { throw KVError(.invalidArgument, "--value-size must be 0 to 1048576 bytes") }
        guard batchSize >= 1 else { throw KVError(.invalidArgument, "--batch-size must be at least 1") }
        for workload in workloads where !KVBench.allWorkloads.contains(workload) {
            throw KVError(.invalidArgument, "unknown workload '\(workload)'; known: \(KVBench.allWorkloads.joined(separator: ", "))")
        }
    }
}

/// One measured workload.
public struct KVBenchResult: Sendable, BenchMeasurement {
    public var backend: String
    public var workload: String
    public var ops: Int
    public var seconds: Double
    public var bytes: Int
    public var p50Micros: Double
    public var p99Micros: Double
    public var peakRSSBytes: Int
    public var found: Int
    /// Requests to remote object storage during the workload (nil: a local store).
    public var objects: ObjectOperations?

    /// The JSON fields of `objects` (computed: key paths are not Sendable, so no stored static).
    static var objectFields: [(String, WritableKeyPath<ObjectOperations, Int>)] {
        [
            ("object_puts", \.puts), ("object_gets", \.gets), ("object_lists", \.lists), ("object_deletes", \.deletes),
            ("object_heads", \.heads), ("object_bytes_out", \.bytesSent), ("object_bytes_in", \.bytesReceived),
            ("disk_cache_hits", \.diskCacheHits), ("disk_cache_misses", \.diskCacheMisses),
        ]
    }

    public func json(_ options: KVBenchOptions) -> String {
        var objectJSON = ""
        if let objects {
            for (name, path) in Self.objectFields { objectJSON += ",\"\(name)\":\(objects[keyPath: path])" }
        }
        return "{" + commonJSONFields + ",\"peak_rss_bytes\":\(peakRSSBytes),"
            + "\"found\":\(found),\"num\":\(options.num),\"key_size\":\(options.keySize),\"value_size\":\(options.valueSize),"
            + "\"batch_size\":\(options.batchSize),\"durable\":\(options.durable)" + objectJSON + "}"
    }

    /// PUT requests per 1,000 writes, for the workloads that write.
    public var putsPerThousandWrites: Double? {
        guard let objects, ["fillseq", "fillrandom", "overwrite", "deleterandom"].contains(workload), ops > 0 else { return nil }
        return Double(objects.puts) * 1000 / Double(ops)
    }

    /// Parses one line of `json(_:)` output.
    public init?(json line: String) {
        func field(_ name: String) -> String? {
            guard let start = line.range(of: "\"\(name)\":") else { return nil }
            var rest = line[start.upperBound...]
            if rest.hasPrefix("\"") {
                rest = rest.dropFirst()
                return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
            }
            let end = rest.firstIndex(where: { $0 == "," || $0 == "}" }) ?? rest.endIndex
            return String(rest[..<end])
        }
        guard let backend = field("backend"), let workload = field("workload"),
              let ops = field("ops").flatMap({ Int($0) }), let seconds = field("seconds").flatMap({ Double($0) }),
              let mbps = field("mb_per_sec").flatMap({ Double($0) }), let p50 = field("p50_us").flatMap({ Double($0) }),
              let p99 = field("p99_us").flatMap({ Double($0) }), let rss = field("peak_rss_bytes").flatMap({ Int($0) })
        else { return nil }
        self.init(backend: backend, workload: workload, ops: ops, seconds: seconds, bytes: Int(mbps * 1_048_576 * seconds),
                  p50Micros: p50, p99Micros: p99, peakRSSBytes: rss, found: field("found").flatMap { Int($0) } ?? 0)
        if field("object_puts") != nil {
            var objects = ObjectOperations()
            for (name, path) in Self.objectFields { objects[keyPath: path] = field(name).flatMap { Int($0) } ?? 0 }
            self.objects = objects
        }
    }

    public init(backend: String, workload: String, ops: Int, seconds: Double, bytes: Int, p50Micros: Double,
                p99Micros: Double, peakRSSBytes: Int, found: Int) {
        self.backend = backend
        self.workload = workload
        self.ops = ops
        self.seconds = seconds
        self.bytes = bytes
        self.p50Micros = p50Micros
        self.p99Micros = p99Micros
        self.peakRSSBytes = peakRSSBytes
        self.found = found
    }
}

public enum KVBench {
    public static let allWorkloads = ["fillseq", "fillrandom", "overwrite", "readrandom", "readseq", "seekrandom", "deleterandom"]

    /// Runs every workload on one backend in this process, calling `report` after each.
    public static func runInProcess(
        factory: any KVBackendFactory, options: KVBenchOptions, report: (KVBenchResult) -> Void
    ) throws {
        try options.validate()
        let root = try options.directory ?? makeTemporaryDirectory()
        defer { if options.directory == nil { try? FileOps.removeTree(root) } }
        var bench = Runner(factory: factory, options: options, root: root)
        defer { bench.closeAll() }
        for workload in options.workloads {
            report(try bench.run(workload))
        }
    }

    public static func makeTemporaryDirectory() throws -> String {
        var template = Array("/tmp/zerofs-bench-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw KVError.posix("mkdtemp", path: "/tmp", errno: errno)
        }
        return String(cString: made)
    }

    /// Prints results as an aligned table, with each backend's throughput relative to the
    /// first backend of the run when there are several.
    public static func table(_ results: [KVBenchResult], reference: String?) -> String {
        let remote = results.contains { $0.objects != nil }
        var rows: [[String]] = [KVBenchResult.commonHeader + ["peak RSS MiB"]]
        if let reference { rows[0].append("vs \(reference)") }
        if remote { rows[0] += ["PUT", "GET", "LIST", "DELETE", "PUT/1k writes", "MiB out", "MiB in", "cache hits"] }
        for result in results {
            var row = result.commonRow + [String(format: "%.1f", Double(result.peakRSSBytes) / 1_048_576)]
            if let reference {
                let base = results.first { $0.backend == reference && $0.workload == result.workload }
                row.append(base.map { String(format: "%.2fx", result.opsPerSecond / max($0.opsPerSecond, 1e-9)) } ?? "-")
            }
            if remote {
                if let o = result.objects {
                    row += ["\(o.puts)", "\(o.gets)", "\(o.lists)", "\(o.deletes)",
                            result.putsPerThousandWrites.map { String(format: "%.2f", $0) } ?? "-",
                            String(format: "%.1f", Double(o.bytesSent) / 1_048_576), String(format: "%.1f", Double(o.bytesReceived) / 1_048_576),
                            "\(o.diskCacheHits)"]
                } else {
                    row += Array(repeating: "-", count: 8)
                }
            }
            rows.append(row)
        }
        return TextTable.render(rows)
    }
}

/// The state of one backend's run: the two stores and the shared key order.
struct Runner {
    let factory: any KVBackendFactory
    let options: KVBenchOptions
    let root: String
    private var sequentialStore: (any KVBackend)?
    private var store: (any KVBackend)?
    /// `store`'s object requests when the last workload on it ended.
    private var objectsSoFar: ObjectOperations?
    private var order: [Int]
    private var latencies: [UInt32]
    private let values: [UInt8]

    init(factory: any KVBackendFactory, options: KVBenchOptions, root: String) {
        self.factory = factory
        self.options = options
        self.root = root
        var random = SeededGenerator(seed: options.seed)
        order = Array(0..<options.num)
        order.shuffle(using: &random)
        latencies = []
        latencies.reserveCapacity(options.num)
        // A pool of random bytes: each value is a slice at a key-dependent offset.
        values = (0..<(1 << 20) + options.valueSize).map { _ in UInt8.random(in: 0...255, using: &random) }
    }

    mutating func closeAll() {
        try? sequentialStore?.close()
        try? store?.close()
        sequentialStore = nil
        store = nil
    }

    private func open(_ name: String) throws -> any KVBackend {
        let path = root + "/" + factory.name + "-" + name
        try FileOps.removeTree(path)
        guard let remoteRoot = options.remoteRoot else { return try factory.open(at: path, options: options.backendOptions) }
        var backendOptions = options.backendOptions
        backendOptions.remote["cache_path"] = path + ".cache"
        try FileOps.removeTree(path + ".cache")
        return try factory.open(at: remoteRoot + "/" + name, options: backendOptions)
    }

    /// Writes key number `n` into `buffer`: zero padding, then n in 8 big-endian bytes,
    /// so key order is numeric order.
    private func fillKey(_ n: Int, _ buffer: inout [UInt8]) {
        var v = UInt64(n)
        for i in stride(from: options.keySize - 1, through: options.keySize - 8, by: -1) {
            buffer[i] = UInt8(truncatingIfNeeded: v)
            v >>= 8
        }
    }

    private func withKey<R>(_ n: Int, _ buffer: inout [UInt8], _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        fillKey(n, &buffer)
        return try buffer.withUnsafeBytes(body)
    }

    mutating func run(_ workload: String) throws -> KVBenchResult {
        latencies.removeAll(keepingCapacity: true)
        // Each workload starts from a settled store: the last one's flushes and compactions
        // are not charged to it.
        try store?.settleBackgroundWork()
        let started = Clock.now()
        var ops = 0
        var found = 0
        var bytes = 0
        var objects: ObjectOperations?
        switch workload {
        case "fillseq":
            try? sequentialStore?.close()
            sequentialStore = try open("seq")
            (ops, bytes) = try fill(sequentialStore!, keys: { $0 })
            try sequentialStore!.flush()
            objects = sequentialStore!.objectOperations()
            try sequentialStore!.close()
            sequentialStore = nil
        case "fillrandom":
            try? store?.close()
            store = try open("random")
            objectsSoFar = nil
            let order = order
            (ops, bytes) = try fill(store!, keys: { order[$0] })
        case "overwrite":
            let order = order
            let count = options.num
            (ops, bytes) = try fill(try requireStore(), keys: { order[count - 1 - $0] })
        case "readrandom":
            let store = try requireStore()
            var key = [UInt8](repeating: 0, count: options.keySize)
            var random = SeededGenerator(seed: options.seed &+ 1)
            for _ in 0..<options.num {
                let n = Int.random(in: 0..<options.num, using: &random)
                let t = Clock.now()
                fillKey(n, &key)
                let value = try store.get(key)
                record(t)
                if let value {
                    found += 1
                    bytes += options.keySize + value.count
                }
                ops += 1
            }
        case "readseq":
            let t = Clock.now()
            try requireStore().scan(.all) { key, value in
                ops += 1
                found += 1
                bytes += key.count + value.count
                return true
            }
            // One scan: per-entry latency is the mean, reported as both percentiles.
            let mean = Double(Clock.now() - t) / Double(max(ops, 1))
            latencies = [UInt32(min(mean, Double(UInt32.max)))]
        case "seekrandom":
            let store = try requireStore()
            let iterator = try store.makeIterator(.all)
            var key = [UInt8](repeating: 0, count: options.keySize)
            var random = SeededGenerator(seed: options.seed &+ 2)
            for _ in 0..<options.num {
                let n = Int.random(in: 0..<options.num, using: &random)
                let t = Clock.now()
                fillKey(n, &key)
                try iterator.seek(key)
                var steps = 0
                while iterator.isValid && steps < 10 {
                    bytes += try iterator.withCurrent { $0.count + $1.count }
                    try iterator.next()
                    steps += 1
                }
                record(t)
                if steps > 0 { found += 1 }
                ops += 1
            }
        case "deleterandom":
            let store = try requireStore()
            var key = [UInt8](repeating: 0, count: options.keySize)
            var batch = WriteBatch()
            var index = 0
            while index < options.num {
                let t = Clock.now()
                batch.removeAll()
                for n in index..<min(index + options.batchSize, options.num) {
                    withKey(order[n], &key) { batch.delete($0) }
                }
                try store.write(batch, durable: options.durable)
                record(t)
                ops += batch.count
                bytes += batch.count * options.keySize
                index += options.batchSize
            }
        default:
            throw KVError(.invalidArgument, "unknown workload '\(workload)'")
        }
        let seconds = Double(Clock.now() - started) / 1e9
        let (p50, p99) = percentiles()
        // The requests a workload caused include the flushes and compactions it left due,
        // done now (untimed) rather than charged to the next workload's row.
        if workload != "fillseq" { try store?.settleBackgroundWork() }
        if workload != "fillseq", let now = store?.objectOperations() {
            objects = now - (objectsSoFar ?? ObjectOperations())
            objectsSoFar = now
        }
        var result = KVBenchResult(backend: options.label ?? factory.name, workload: workload, ops: ops, seconds: seconds, bytes: bytes,
                                   p50Micros: p50, p99Micros: p99, peakRSSBytes: processPeakRSS(), found: found)
        result.objects = objects
        return result
    }

    private func requireStore() throws -> any KVBackend {
        guard let store else { throw KVError(.invalidArgument, "this workload needs fillrandom to run first") }
        return store
    }

    private mutating func fill(_ store: any KVBackend, keys: (Int) -> Int) throws -> (Int, Int) {
        var key = [UInt8](repeating: 0, count: options.keySize)
        var batch = WriteBatch()
        var index = 0
        let poolSize = values.count - options.valueSize
        while index < options.num {
            let t = Clock.now()
            batch.removeAll()
            for i in index..<min(index + options.batchSize, options.num) {
                let n = keys(i)
                let offset = (n &* 7919) % max(poolSize, 1)
                withKey(n, &key) { k in
                    values.withUnsafeBytes { pool in
                        batch.put(k, UnsafeRawBufferPointer(rebasing: pool[offset..<(offset + options.valueSize)]))
                    }
                }
            }
            try store.write(batch, durable: options.durable)
            record(t)
            index += options.batchSize
        }
        return (options.num, options.num * (options.keySize + options.valueSize))
    }

    private mutating func record(_ start: UInt64) {
        latencies.append(UInt32(min(Clock.now() - start, UInt64(UInt32.max))))
    }

    private mutating func percentiles() -> (Double, Double) {
        guard !latencies.isEmpty else { return (0, 0) }
        latencies.sort()
        func at(_ q: Double) -> Double { Double(latencies[min(latencies.count - 1, Int(Double(latencies.count) * q))]) / 1000 }
        return (at(0.5), at(0.99))
    }
}

enum Clock {
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
