// `zerofs bench fs` and `zerofs fsck`: parsing and wiring only; the work lives in FS and
// Workloads.

import ArgumentParser
import BackendCatalog
import Engine
import FS
import Workloads

struct BenchFS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fs",
        abstract: "Filesystem workloads through the FS layer, in this process, on each backend in turn."
    )

    @OptionGroup var target: BenchTarget
    @Option(help: "Files for create, stat, readdir, rename and unlink.") var files = 10_000
    @Option(help: "Size of the sequential-I/O file in MiB.") var fileMib = 1024
    @Option(help: "Bytes per sequential read or write call, in KiB.") var ioKib = 1024
    @Option(help: "4 KiB random writes and reads.") var randomOps = 20_000
    @Option(help: "Chunk size in bytes.") var chunkSize = 32768
    @Option(help: "Chunk compression: zstd or none.") var compression = "zstd"
    @Flag(help: "Do not make metadata operations durable before they return.") var relaxedMetadata = false
    @Option(help: "Comma-separated workloads (default: all).") var workloads = FSBench.allWorkloads.joined(separator: ",")

    func run() throws {
        var options = FSBenchOptions()
        options.files = files
        options.fileMiB = fileMib
        options.ioKiB = ioKib
        options.randomOps = randomOps
        options.workloads = workloads.split(separator: ",").map(String.init)
        options.directory = target.dir
        options.fsOptions.chunkSize = chunkSize
        options.fsOptions.durableMetadata = !relaxedMetadata
        guard compression == "zstd" || compression == "none" else { throw ValidationError("--compression must be zstd or none") }
        options.fsOptions.compressChunks = compression == "zstd"
        let backends = try target.backends()
        do { try options.validate() } catch { throw ValidationError(error.message) }
        var results: [FSBenchResult] = []
        for name in backends {
            let factory = try BackendCatalog.standard.factory(named: name)
            try FSBench.run(factory: factory, options: options) { result in
                results.append(result)
                if target.json {
                    print(result.json(options))
                    flushStandardOutput()
                } else {
                    printError("  \(name) \(result.workload): \(Int(result.opsPerSecond)) ops/s")
                }
            }
        }
        if !target.json {
            print("zerofs bench fs: \(files) files, \(fileMib) MiB file in \(ioKib) KiB calls, \(randomOps) random 4 KiB ops, "
                + "chunk \(chunkSize) B, compression \(compression), durable metadata \(!relaxedMetadata)")
            print(FSBench.table(results))
        }
    }
}

struct Fsck: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a filesystem store for consistency; exits non-zero when it finds a problem."
    )

    @Option(help: "Backend of the store (\(BackendCatalog.standard.names.joined(separator: ", "))).")
    var backend = BackendCatalog.standard.defaultName
    @Option(help: "Path of the store.") var path: String

    func run() throws {
        let factory = try BackendCatalog.standard.factory(named: backend)
        var backendOptions = BackendOptions()
        backendOptions.createIfMissing = false
        let store = try factory.open(at: path, options: backendOptions)
        defer { try? store.close() }
        let report: FsckReport
        do {
            report = try FS.Fsck.check(store)
        } catch {
            printError("zerofs fsck: \(error)")
            throw ExitCode(2)
        }
        for problem in report.problems { print("problem: \(problem)") }
        print("zerofs fsck: \(report.inodes) inodes, \(report.entries) entries, \(report.chunks) chunks, "
            + "\(report.problems.count) problem\(report.problems.count == 1 ? "" : "s")")
        if !report.isClean { throw ExitCode(1) }
    }
}
