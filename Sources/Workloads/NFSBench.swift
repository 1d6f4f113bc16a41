// `zerofs bench nfs`: the NFS server driven by real clients (Tools/nfsclient/nfsclient.c on
// libnfs, compiled at start), against nfs-ganesha exporting a local folder in the same run.
//   metadata phases: create (+ a 4 KiB write), stat, readdir, read (open + 4 KiB read),
//     unlink, over each --files count, with one client and with --clients processes
//     (the files split between them);
//   data phases: --mib MiB written sequentially in 1 MiB writes then fsync (COMMIT), and
//     read back.
// Every phase runs --rounds times on each server, the servers taking turns phase by phase
// (which goes first alternates by round), each run on a quiet machine (`settle`: dirty
// pages written back, the server idle);
// medians are reported with the ratio, and each server's CPU time per call in the median
// run. Also: the disk's fsync latency (ganesha does not fsync CREATE or REMOVE; we do) and
// this process's peak RSS (the server runs in it).
// ganesha runs with rpcbind in a private network namespace (rpcbind listens on every
// interface), and its clients join that namespace with nsenter.

import Engine
import FS
import Foundation
import NFS

public struct NFSBenchOptions: Sendable {
    public var files = [2000, 10000]
    public var clients = 4
    public var mib = 200
    public var rounds = 5
    public var reference = "ganesha"
    public var directory: String?
    /// A compiled nfsclient; nil: compile Tools/nfsclient/nfsclient.c.
    public var client: String?
    /// Worker threads of our server.
    public var serverThreads = 8

    public init() {}

    public func validate() throws(KVError) {
        guard !files.isEmpty, files.allSatisfy({ $0 >= 10 }), clients >= 1, mib >= 1, rounds >= 1, serverThreads >= 1 else {
            throw KVError(.invalidArgument, "--files must be at least 10, --clients, --mib, --rounds and --server-threads at least 1")
        }
        guard ["ganesha", "none"].contains(reference) else {
            throw KVError(.invalidArgument, "--reference must be ganesha or none")
        }
    }
}

public struct NFSBenchResult: Sendable {
    public var target: String
    public var phase: String
    public var files: Int
    public var clients: Int
    public var opsPerSecond: Double
    public var mbPerSecond: Double?
    /// The server's CPU time (all its threads, user and kernel) per call, or per MiB in the
    /// data phases; nil when it could not be read.
    public var serverCPUMicros: Double?

    public var json: String {
        var fields = "\"target\":\"\(target)\",\"phase\":\"\(phase)\",\"files\":\(files),\"clients\":\(clients),"
            + "\"ops_per_sec\":\(String(format: "%.1f", opsPerSecond))"
        if let mbPerSecond { fields += ",\"mb_per_sec\":\(String(format: "%.1f", mbPerSecond))" }
        if let serverCPUMicros {
            fields += mbPerSecond != nil ? ",\"server_cpu_us_per_mib\":" : ",\"server_cpu_us_per_op\":"
            fields += String(format: "%.1f", serverCPUMicros)
        }
        return "{\(fields)}"
    }
}

/// A server the benchmark drives.
protocol NFSBenchTarget {
    var name: String { get }
    /// The URL of the export, for nfsclient.
    var url: String { get }
    /// The command line that runs `arguments` (an nfsclient call) where the server is reachable.
    func command(_ arguments: [String]) -> [String]
    /// The server's process, for its CPU time.
    var serverPID: pid_t? { get }
    func stop()
}

public enum NFSBench {
    public struct Outcome: Sendable {
        public var results: [NFSBenchResult]
        public var fsyncMicros: Double
        public var peakRSSBytes: UInt64
        public var notes: [String]
    }

    /// Runs every phase on the zerofs server over `factory`'s store and on the reference.
    public static func run(factory: any KVBackendFactory, options: NFSBenchOptions,
                           progress: @escaping (String) -> Void) throws -> Outcome {
        try options.validate()
        let base = options.directory ?? (NSTemporaryDirectory() + "zerofs-bench-nfs-\(getpid())")
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { if options.directory == nil { try? FileOps.removeTree(base) } }
        let client = try options.client ?? compileClient(into: base)
        var notes: [String] = []
        let fsync = try fsyncLatency(in: base)

        let ours = try ZeroFSTarget(factory: factory, directory: base + "/zerofs", threads: options.serverThreads)
        defer { ours.stop() }
        var targets: [any NFSBenchTarget] = [ours]
        if options.reference == "ganesha" {
            if let why = GaneshaTarget.unavailable() {
                notes.append(why)
            } else {
                let ganesha = try GaneshaTarget(directory: base + "/ganesha", client: client)
                targets.append(ganesha)
            }
        }
        defer { for target in targets.dropFirst() { target.stop() } }

        var samples: [String: [NFSBenchResult]] = [:]
        // The servers take turns phase by phase (which goes first alternates by round), so
        // a slow stretch of the machine lands on both rather than on one server's phases.
        for round in 0..<options.rounds {
            let order = round % 2 == 0 ? targets : targets.reversed()
            for files in options.files {
                for clients in Set([1, options.clients]).sorted() {
                    let dir = "/m\(round)-\(files)-\(clients)"
                    for target in order { try call(target, client, ["mkdir", dir]) }
                    for phase in ["create", "stat", "readdir", "read", "unlink"] {
                        for target in order {
                            let r = try bench(target, client, phase, files / clients, clients, dir, files: files, quiet: targets)
                            samples["\(target.name) \(phase) \(files) \(clients)", default: []].append(r)
                            progress("  round \(round + 1) \(target.name) \(phase) \(files) files \(clients) clients: \(Int(r.opsPerSecond)) ops/s")
                        }
                    }
                }
            }
            let dir = "/d\(round)"
            for target in order { try call(target, client, ["mkdir", dir]) }
            for phase in ["seqwrite", "seqread"] {
                for target in order {
                    let r = try bench(target, client, phase, options.mib, 1, dir, files: 1, quiet: targets)
                    samples["\(target.name) \(phase) 1 1", default: []].append(r)
                    progress("  round \(round + 1) \(target.name) \(phase): \(Int(r.mbPerSecond ?? 0)) MB/s")
                }
            }
            for target in order { try call(target, client, ["rm", dir + "/seq"]) }
        }
        let results = samples.keys.sorted().compactMap { key -> NFSBenchResult? in
            guard let runs = samples[key], !runs.isEmpty else { return nil }
            let sorted = runs.sorted { ($0.mbPerSecond ?? $0.opsPerSecond) < ($1.mbPerSecond ?? $1.opsPerSecond) }
            return sorted[sorted.count / 2]
        }
        return Outcome(results: results, fsyncMicros: fsync, peakRSSBytes: UInt64(processPeakRSS()), notes: notes)
    }

    /// The table: one row per phase, both servers, the ratio and each server's CPU time.
    public static func table(_ outcome: Outcome) -> String {
        var rows = [["phase", "files", "clients", "zerofs", "ganesha", "ratio", "zerofs cpu", "ganesha cpu"]]
        let ours = outcome.results.filter { $0.target == "zerofs" }
        for r in ours.sorted(by: { (order($0.phase) / 5, $0.files, $0.clients, order($0.phase)) < (order($1.phase) / 5, $1.files, $1.clients, order($1.phase)) }) {
            let ref = outcome.results.first { $0.target == "ganesha" && $0.phase == r.phase && $0.files == r.files && $0.clients == r.clients }
            let unit = r.mbPerSecond != nil ? " MB/s" : "/s"
            let value = { (x: NFSBenchResult) in String(format: "%.0f", x.mbPerSecond ?? x.opsPerSecond) + unit }
            let ratio = ref.map { String(format: "%.2fx", (r.mbPerSecond ?? r.opsPerSecond) / max(0.001, $0.mbPerSecond ?? $0.opsPerSecond)) } ?? "-"
            let cpuUnit = r.mbPerSecond != nil ? " µs/MiB" : " µs"
            let cpu = { (x: NFSBenchResult?) in x?.serverCPUMicros.map { String(format: "%.0f", $0) + cpuUnit } ?? "-" }
            rows.append([r.phase, r.mbPerSecond != nil ? "-" : "\(r.files)", "\(r.clients)", value(r), ref.map(value) ?? "-", ratio,
                         cpu(r), cpu(ref)])
        }
        return TextTable.render(rows, leftAligned: 1)
    }

    static func order(_ phase: String) -> Int {
        ["create", "stat", "readdir", "read", "unlink", "seqwrite", "seqread"].firstIndex(of: phase) ?? 99
    }

    // MARK: running the client

    /// Compiles Tools/nfsclient/nfsclient.c into `directory`; the program's path.
    public static func compileClient(into directory: String) throws -> String {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Tools/nfsclient/nfsclient.c").path
        guard FileManager.default.fileExists(atPath: source) else {
            throw ChildProcessError("\(source) not found: run from the source checkout or pass --client")
        }
        let output = directory + "/nfsclient"
        let flags = try capture(["/usr/bin/pkg-config", "--cflags", "--libs", "libnfs"])
        guard flags.status == 0 else { throw ChildProcessError("libnfs not found (apt-get install libnfs-dev): \(flags.output)") }
        let gcc = try capture(["/usr/bin/gcc", "-O2", "-o", output, source] + flags.output.split(whereSeparator: \.isWhitespace).map(String.init))
        guard gcc.status == 0 else { throw ChildProcessError("compiling nfsclient failed: \(gcc.output)") }
        return output
    }

    static func capture(_ argv: [String]) throws -> (status: Int32, output: String) {
        let result = try ChildProcess.run(argv)
        return (result.status, String(decoding: result.output + result.errors, as: UTF8.self))
    }

    @discardableResult
    static func call(_ target: any NFSBenchTarget, _ client: String, _ arguments: [String]) throws -> String {
        let result = try capture(target.command([client, target.url] + arguments))
        guard result.status == 0 else {
            throw ChildProcessError("\(target.name): nfsclient \(arguments.joined(separator: " ")) failed: \(result.output)")
        }
        return result.output
    }

    static func bench(_ target: any NFSBenchTarget, _ client: String, _ phase: String, _ count: Int, _ clients: Int,
                      _ dir: String, files: Int, quiet: [any NFSBenchTarget]) throws -> NFSBenchResult {
        // Every run starts with `quiet`'s servers idle (`settle`).
        settle(quiet)
        let cpuBefore = target.serverPID.flatMap(cpuNanoseconds)
        let ticksBefore = target.serverPID.flatMap(processCPUNanoseconds)
        let output = try call(target, client, ["bench", phase, "\(count)", "\(clients)", dir])
        let cpuAfter = target.serverPID.flatMap(cpuNanoseconds)
        let ticksAfter = target.serverPID.flatMap(processCPUNanoseconds)
        guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix("phase=") }) else {
            throw ChildProcessError("\(target.name): no result from nfsclient bench \(phase): \(output)")
        }
        var fields: [String: String] = [:]
        for pair in line.split(separator: " ") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        guard let ops = fields["ops_per_sec"].flatMap(Double.init) else {
            throw ChildProcessError("\(target.name): unreadable result '\(line)'")
        }
        var result = NFSBenchResult(target: target.name, phase: phase, files: files, clients: clients, opsPerSecond: ops,
                                    mbPerSecond: fields["mb_per_sec"].flatMap(Double.init))
        // A data phase moves `count` MiB; a metadata phase makes `files` calls in all.
        let units = Double(result.mbPerSecond != nil ? count : files)
        if let cpuBefore, let cpuAfter, cpuAfter >= cpuBefore {
            result.serverCPUMicros = Double(cpuAfter - cpuBefore) / 1000 / units
        } else if let ticksBefore, let ticksAfter, ticksAfter >= ticksBefore {
            // A thread ended during the phase (its schedstat is gone): the process's own
            // total, which keeps ended threads' time, in clock ticks.
            result.serverCPUMicros = Double(ticksAfter - ticksBefore) / 1000 / units
        }
        return result
    }

    /// Lets the machine go quiet before a phase, the same whichever server runs it: writes
    /// back every dirty page (`sync`: the kernel's writeback of the files a phase wrote,
    /// ganesha's above all, would otherwise run during the next phase), then waits until
    /// each server has used under 2% of a core for 200 ms (our memtable flushes and
    /// compactions), for at most 10 s.
    static func settle(_ targets: [any NFSBenchTarget]) {
        sync()
        let pids = targets.compactMap(\.serverPID)
        let window: UInt64 = 200_000_000
        let deadline = ContinuousClock.now + .seconds(10)
        var last = pids.map(cpuNanoseconds)
        while ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: Double(window) / 1e9)
            let now = pids.map(cpuNanoseconds)
            defer { last = now }
            let busy = zip(last, now).contains { before, after in
                guard let before, let after else { return false }
                return after &- before >= window / 50
            }
            if !busy { return }
        }
    }

    /// The CPU time of every thread of process `pid` so far, in nanoseconds (each thread's
    /// run time from /proc/PID/task/TID/schedstat: finer than the 10 ms ticks of
    /// /proc/PID/stat). Threads that have ended are not counted; neither server starts or
    /// ends threads during a phase.
    static func cpuNanoseconds(_ pid: pid_t) -> UInt64? {
        let tasks = "/proc/\(pid)/task"
        guard let threads = try? FileManager.default.contentsOfDirectory(atPath: tasks) else { return nil }
        var total: UInt64 = 0
        var read = false
        for thread in threads {
            guard let text = try? String(contentsOfFile: "\(tasks)/\(thread)/schedstat", encoding: .utf8),
                  let first = text.split(separator: " ").first, let nanoseconds = UInt64(first) else { continue }
            total += nanoseconds
            read = true
        }
        // A kernel without scheduler statistics has no schedstat files: no figure at all.
        return read ? total : nil
    }

    /// The CPU time of process `pid` so far (user and system, ended threads included),
    /// in nanoseconds, from the clock ticks of /proc/PID/stat.
    static func processCPUNanoseconds(_ pid: pid_t) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        let hertz = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
        return (user + system) * (1_000_000_000 / hertz)
    }

    /// Median of 100 4 KiB writes each followed by fdatasync, in µs.
    static func fsyncLatency(in directory: String) throws -> Double {
        let path = directory + "/fsync-probe"
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
        guard fd >= 0 else { throw ChildProcessError("cannot create \(path)") }
        defer {
            close(fd)
            unlink(path)
        }
        let block = [UInt8](repeating: 7, count: 4096)
        var recorder = LatencyRecorder()
        for i in 0..<100 {
            let t = Clock.now()
            _ = block.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, off_t(i * 4096)) }
            fdatasync(fd)
            recorder.record(since: t)
        }
        return recorder.percentiles().0
    }
}

/// Our server, in this process, over a fresh store; metadata durable as in production.
final class ZeroFSTarget: NFSBenchTarget {
    let name = "zerofs"
    let store: any KVBackend
    let pool: Pool
    let server: NFSServer

    init(factory: any KVBackendFactory, directory: String, threads: Int) throws {
        try? FileOps.removeTree(directory)
        store = try factory.open(at: directory, options: BackendOptions())
        pool = try Pool.open(store)
        var options = NFSServer.Options()
        options.port = 0
        options.threads = threads
        server = try NFSServer.start(NFSService(pool: pool), options: options)
    }

    var url: String { "nfs://127.0.0.1/?version=3&nfsport=\(server.port)&mountport=\(server.port)" }

    func command(_ arguments: [String]) -> [String] { arguments }

    /// This process: meanwhile the bench's own thread only waits for the client.
    var serverPID: pid_t? { getpid() }

    func stop() {
        server.stop()
        try? pool.close()
        try? store.close()
    }
}

/// nfs-ganesha (VFS) exporting a local folder, with rpcbind, in a private network namespace.
final class GaneshaTarget: NFSBenchTarget {
    let name = "ganesha"
    let shell: ChildProcess
    let directory: String

    static func unavailable() -> String? {
        if getuid() != 0 { return "ganesha reference skipped: needs root (network namespace)" }
        for tool in ["/usr/bin/ganesha.nfsd", "/usr/sbin/rpcbind", "/usr/bin/unshare", "/usr/bin/nsenter"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            return "ganesha reference skipped: \(tool) missing (apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind)"
        }
        return nil
    }

    init(directory: String, client: String) throws {
        self.directory = directory
        try? FileOps.removeTree(directory)
        try FileManager.default.createDirectory(atPath: directory + "/export", withIntermediateDirectories: true)
        let config = """
            NFS_CORE_PARAM { NFS_Port = 2049; MNT_Port = 20048; Enable_NLM = false; Enable_RQUOTA = false;
                Protocols = 3, 4; Enable_UDP = false; Mount_Path_Pseudo = true; }
            NFSV4 { Graceless = true; }
            EXPORT { Export_Id = 1; Path = \(directory)/export; Pseudo = /export; Access_Type = RW;
                Squash = No_Root_Squash; SecType = sys; Protocols = 3, 4; Transports = TCP; FSAL { Name = VFS; } }
            """
        try config.write(toFile: directory + "/ganesha.conf", atomically: true, encoding: .utf8)
        let script = """
            exec >/dev/null 2>&1
            ip link set lo up
            /usr/sbin/rpcbind -f -w & r=$!
            sleep 0.3
            /usr/bin/ganesha.nfsd -F -L \(directory)/ganesha.log -f \(directory)/ganesha.conf -p \(directory)/ganesha.pid & g=$!
            trap 'kill $g; wait $g; kill $r; wait $r; exit 0' TERM
            wait $g
            """
        shell = try ChildProcess(executable: "/usr/bin/unshare", arguments: ["-n", "--", "/bin/bash", "-c", script])
        // Ready when a client can list the export.
        let deadline = Date().addingTimeInterval(20)
        while true {
            Thread.sleep(forTimeInterval: 0.3)
            if let result = try? NFSBench.capture(command([client, url, "ls", "/"])), result.status == 0 { break }
            if Date() > deadline || !shell.isRunning {
                stop()
                throw ChildProcessError("ganesha did not start; see \(directory)/ganesha.log")
            }
        }
    }

    var url: String { "nfs://127.0.0.1/export?version=3&nfsport=2049&mountport=20048" }

    func command(_ arguments: [String]) -> [String] {
        ["/usr/bin/nsenter", "-t", "\(shell.pid)", "-n"] + arguments
    }

    /// From ganesha's pid file (only the network is a namespace of its own: the pid is ours).
    var serverPID: pid_t? {
        (try? String(contentsOfFile: directory + "/ganesha.pid", encoding: .utf8))
            .flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    func stop() {
        shell.kill(SIGTERM)
    }
}
