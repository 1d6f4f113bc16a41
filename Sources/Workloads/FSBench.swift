// `zerofs bench fs`: filesystem workloads through the FS API, in this process, on a fresh
// store of each backend. Metadata: create, stat (lookup + getattr), readdir, rename and
// unlink of --files files in one directory. Data: sequential write and read of one
// --file-mib file in --io-kib calls (then fsync), and --random-ops 4 KiB random writes
// and reads inside it. Data is seeded random bytes (incompressible: zstd is tried and the
// chunks are stored raw, the worst case for compression).

import Engine
import FS
import Foundation

#if canImport(Glibc)
import Glibc
#endif

public struct FSBenchOptions: Sendable {
    public var files = 10_000
    public var fileMiB = 1024
    public var ioKiB = 1024
    public var randomOps = 20_000
    public var workloads = FSBench.allWorkloads
    public var directory: String?
    public var fsOptions = FSOptions()
    public var seed: UInt64 = 42

    public init() {}

    public func validate() throws(KVError) {
        guard files >= 1, fileMiB >= 1, randomOps >= 1 else {
            throw KVError(.invalidArgument, "--files, --file-mib and --random-ops must be positive")
        }
        // The calls take their bytes from a 2 MiB buffer of random data.
        guard (4...1024).contains(ioKiB) else { throw KVError(.invalidArgument, "--io-kib must be 4 to 1024, not \(ioKiB)") }
        for workload in workloads where !FSBench.allWorkloads.contains(workload) {
            throw KVError(.invalidArgument, "unknown workload '\(workload)'; known: \(FSBench.allWorkloads.joined(separator: ", "))")
        }
    }
}

public struct FSBenchResult: Sendable, BenchMeasurement {
    public var backend: String
    public var workload: String
    public var ops: Int
    public var seconds: Double
    public var bytes: Int
    public var p50Micros: Double
    public var p99Micros: Double

    public func json(_ options: FSBenchOptions) -> String {
        "{" + commonJSONFields + ",\"files\":\(options.files),"
            + "\"file_mib\":\(options.fileMiB),\"io_kib\":\(options.ioKiB),\"chunk_size\":\(options.fsOptions.chunkSize),"
            + "\"compress\":\(options.fsOptions.compressChunks),\"durable_metadata\":\(options.fsOptions.durableMetadata)}"
    }
}

public enum FSBench {
    public static let allWorkloads = ["create", "stat", "readdir", "rename", "unlink", "seqwrite", "seqread", "randwrite", "randread"]

    /// Runs the workloads on a fresh store of `factory`, calling `report` after each.
    public static func run(factory: any KVBackendFactory, options: FSBenchOptions, report: (FSBenchResult) -> Void) throws {
        try options.validate()
        let root = try options.directory ?? KVBench.makeTemporaryDirectory()
        defer { if options.directory == nil { try? FileOps.removeTree(root) } }
        let path = root + "/fs-" + factory.name
        try FileOps.removeTree(path)
        let store = try factory.open(at: path, options: BackendOptions())
        defer { try? store.close() }
        let fs = try FileSystem.open(store, options: options.fsOptions)
        defer { try? fs.close() }
        var runner = FSRunner(fs: fs, backend: factory.name, options: options)
        for workload in options.workloads { report(try runner.run(workload)) }
    }

    public static func table(_ results: [FSBenchResult]) -> String {
        let rows = [FSBenchResult.commonHeader] + results.map(\.commonRow)
        return TextTable.render(rows)
    }
}

/// One backend's run: the directory of --files files and the one large file.
struct FSRunner {
    let fs: FileSystem
    let backend: String
    let options: FSBenchOptions
    var latencies = LatencyRecorder()
    var dir: UInt64 = 0
    var inodes: [UInt64] = []
    var renamed = false
    var bigFile: UInt64?
    let pool: [UInt8]

    init(fs: FileSystem, backend: String, options: FSBenchOptions) {
        self.fs = fs
        self.backend = backend
        self.options = options
        var random = SeededGenerator(seed: options.seed)
        pool = (0..<(2 << 20)).map { _ in UInt8.random(in: 0...255, using: &random) }
    }

    func name(_ i: Int) -> [UInt8] { Array((renamed ? "renamed-\(i)" : "file-\(i)").utf8) }

    mutating func run(_ workload: String) throws -> FSBenchResult {
        latencies.reset()
        let cred = Credentials.root
        let start = Clock.now()
        var ops = 0
        var bytes = 0
        switch workload {
        case "create":
            dir = try fs.mkdir(cred, FileSystem.rootInode, Array("bench-\(Clock.now())".utf8), mode: 0o755).ino
            inodes = []
            renamed = false
            for i in 0..<options.files {
                let t = Clock.now()
                inodes.append(try fs.create(cred, dir, name(i), mode: 0o644, exclusive: true).ino)
                record(t)
            }
            ops = options.files
        case "stat":
            try requireFiles()
            for i in 0..<inodes.count {
                let t = Clock.now()
                _ = try fs.getattr(try fs.lookup(cred, dir, name(i)).ino)
                record(t)
            }
            ops = inodes.count
        case "readdir":
            try requireFiles()
            var cookie: UInt64 = 0
            while true {
                let t = Clock.now()
                let page = try fs.readdir(cred, dir, after: cookie, limit: 256)
                record(t)
                ops += page.entries.count
                guard let last = page.entries.last, !page.eof else { break }
                cookie = last.cookie
            }
        case "rename":
            try requireFiles()
            for i in 0..<inodes.count {
                let t = Clock.now()
                try fs.rename(cred, dir, Array("file-\(i)".utf8), dir, Array("renamed-\(i)".utf8))
                record(t)
            }
            renamed = true
            ops = inodes.count
        case "unlink":
            try requireFiles()
            for i in 0..<inodes.count {
                let t = Clock.now()
                try fs.unlink(cred, dir, name(i))
                record(t)
            }
            ops = inodes.count
            inodes = []
        case "seqwrite":
            let file = try fs.create(cred, FileSystem.rootInode, Array("big-\(Clock.now())".utf8), mode: 0o644).ino
            bigFile = file
            let io = options.ioKiB << 10
            let total = options.fileMiB << 20
            var offset = 0
            while offset < total {
                let at = (offset / io) % ((pool.count - io) / 4096) * 4096
                let t = Clock.now()
                try fs.write(cred, file, offset: UInt64(offset), Array(pool[at..<(at + io)]))
                record(t)
                offset += io
                ops += 1
            }
            try fs.fsync(file)
            bytes = total
        case "seqread":
            let file = try requireBigFile()
            let io = options.ioKiB << 10
            var offset: UInt64 = 0
            while true {
                let t = Clock.now()
                let result = try fs.read(cred, file, offset: offset, count: io)
                record(t)
                bytes += result.data.count
                offset += UInt64(result.data.count)
                ops += 1
                if result.eof || result.data.isEmpty { break }
            }
        case "randwrite", "randread":
            let file = try requireBigFile()
            var random = SeededGenerator(seed: options.seed &+ (workload == "randread" ? 1 : 0))
            let blocks = UInt64(options.fileMiB << 8)
            for _ in 0..<options.randomOps {
                let offset = UInt64.random(in: 0..<blocks, using: &random) * 4096
                let t = Clock.now()
                if workload == "randwrite" {
                    let at = Int(offset % UInt64(pool.count - 4096))
                    try fs.write(cred, file, offset: offset, Array(pool[at..<(at + 4096)]))
                } else {
                    _ = try fs.read(cred, file, offset: offset, count: 4096)
                }
                record(t)
            }
            if workload == "randwrite" { try fs.fsync(file) }
            ops = options.randomOps
            bytes = ops * 4096
        default:
            throw KVError(.invalidArgument, "unknown workload \(workload)")
        }
        let seconds = Double(Clock.now() - start) / 1e9
        let (p50, p99) = percentiles()
        return FSBenchResult(backend: backend, workload: workload, ops: ops, seconds: seconds, bytes: bytes, p50Micros: p50, p99Micros: p99)
    }

    private func requireFiles() throws {
        guard !inodes.isEmpty else { throw KVError(.invalidArgument, "this workload needs 'create' to run before it") }
    }

    private func requireBigFile() throws -> UInt64 {
        guard let bigFile else { throw KVError(.invalidArgument, "this workload needs 'seqwrite' to run before it") }
        return bigFile
    }

    private mutating func record(_ start: UInt64) { latencies.record(since: start) }

    private mutating func percentiles() -> (Double, Double) { latencies.percentiles() }
}
