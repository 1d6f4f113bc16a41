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
    @Option(help: "Bytes per sequential read or write call, in KiB (4 to 1024).") var ioKib = 1024
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
        options.workloads = try commaList(workloads, "--workloads")
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

struct BenchSnapshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Snapshot, clone and rollback cost, reads and writes with many snapshots, client latency while collecting."
    )

    @OptionGroup var target: BenchTarget
    @Option(help: "Files in the large dataset.") var files = 100_000
    @Option(help: "Files in the small dataset.") var smallFiles = 10
    @Option(help: "Size of each file in KiB.") var fileKib = 4
    @Option(help: "Snapshots timed per row.") var reps = 15
    @Option(help: "Snapshots taken before the second read and write rows.") var snapshots = 100
    @Option(help: "Percent of the files rewritten between two snapshots.") var rewritePercent = 1.0
    @Option(help: "Operations per read, write and idle-client row.") var ops = 60_000
    @Option(help: "Block cache in MiB.") var cacheMib = 64
    @Option(help: "Reference measured in the same run: btrfs (needs root and btrfs-progs) or none.") var reference = "btrfs"

    func run() throws {
        var options = SnapshotBenchOptions()
        options.files = files
        options.smallFiles = smallFiles
        options.fileKiB = fileKib
        options.reps = reps
        options.snapshots = snapshots
        options.rewritePercent = rewritePercent
        options.ops = ops
        options.cacheBytes = cacheMib << 20
        options.directory = target.dir
        let backends = try target.backends()
        do { try options.validate() } catch { throw ValidationError(error.message) }
        var results: [SnapshotBenchResult] = []
        for name in backends {
            let factory = try BackendCatalog.standard.factory(named: name)
            try SnapshotBench.run(factory: factory, options: options) { result in
                results.append(result)
                if target.json {
                    print(result.json())
                    flushStandardOutput()
                } else {
                    printError("  \(name) \(result.workload): \(String(format: "%.3f", result.p50Micros / 1000)) ms p50, \(Int(result.opsPerSecond)) ops/s")
                }
            }
        }
        var note: String?
        if reference == "btrfs" {
            if let why = BtrfsReference.unavailable() {
                note = why
            } else {
                let directory = try target.dir ?? KVBench.makeTemporaryDirectory()
                defer { if target.dir == nil { try? FileOps.removeTree(directory) } }
                for result in try BtrfsReference.run(files: files, smallFiles: smallFiles, fileKiB: fileKib, reps: reps, directory: directory) {
                    results.append(result)
                    if target.json {
                        print(result.json())
                        flushStandardOutput()
                    }
                }
            }
        } else if reference != "none" {
            throw ValidationError("--reference must be btrfs or none")
        }
        if let note { printError(note) }
        if !target.json {
            print("zerofs bench snapshot: \(files) files of \(fileKib) KiB (small dataset: \(smallFiles)), \(snapshots) snapshots "
                + "with \(rewritePercent)% rewritten between them, \(ops) ops per row")
            print(SnapshotBench.table(results))
            print(SnapshotBench.summary(results))
        }
    }
}

struct BenchNFS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nfs",
        abstract: "The NFS server driven by libnfs clients, against nfs-ganesha in the same run (metadata and data phases)."
    )

    @OptionGroup var target: BenchTarget
    @Option(help: "Comma-separated file counts of the metadata phases.") var files = "2000,10000"
    @Option(help: "Concurrent clients of the multi-client rows (each also runs with one).") var clients = 4
    @Option(help: "MiB written and read by the data phases.") var mib = 200
    @Option(help: "Runs of every phase on each server, in turns (medians reported).") var rounds = 5
    @Option(help: "Reference measured in the same run: ganesha (needs root, nfs-ganesha, nfs-ganesha-vfs, rpcbind) or none.")
    var reference = "ganesha"
    @Option(help: "A compiled Tools/nfsclient/nfsclient.c (default: compiled at start).") var client: String?
    @Option(help: "Worker threads of the zerofs server.") var serverThreads = 8

    func run() throws {
        var options = NFSBenchOptions()
        options.files = try commaList(files, "--files").map { entry in
            guard let count = Int(entry) else { throw ValidationError("--files takes comma-separated counts, got '\(entry)'") }
            return count
        }
        options.clients = clients
        options.mib = mib
        options.rounds = rounds
        options.reference = reference
        options.directory = target.dir
        options.client = client
        options.serverThreads = serverThreads
        do { try options.validate() } catch { throw ValidationError(error.message) }
        for name in try target.backends() {
            let factory = try BackendCatalog.standard.factory(named: name)
            let outcome = try NFSBench.run(factory: factory, options: options) { printError($0) }
            for note in outcome.notes { printError(note) }
            if target.json {
                for result in outcome.results { print(result.json) }
                flushStandardOutput()
                continue
            }
            print("zerofs bench nfs: \(name) backend, files \(files), \(clients) clients, \(mib) MiB, medians of \(rounds) rounds")
            print(NFSBench.table(outcome))
            print("disk fsync latency (4 KiB write + fdatasync, median): \(String(format: "%.0f", outcome.fsyncMicros)) µs")
            print("server peak RSS: \(outcome.peakRSSBytes >> 20) MiB")
        }
    }
}
