// The `zerofs` command line end to end, as a user runs it: every subcommand against a
// server the test starts on free ports (over gRPC), then the same commands with no server
// (the command opens the store itself and says so), table and JSON output, error exits
// with one line on stderr, the README's quick start with libnfs's nfs-cp and nfs-cat, a
// checkpoint served read-only and restored, and scrub finding a damaged table.

import BackendCatalog
import Engine
import FS
import Foundation
import KVTestSupport
import MemoryBackend
import Testing
import Workloads

#if canImport(Glibc)
import Glibc
#endif

struct CommandResult {
    var status: Int32
    var out: String
    var err: String

    /// The output parsed as one JSON object.
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(out.utf8))) as? [String: Any] ?? [:]
    }
}

enum ZeroFSProgram {
    static var path: String { FileOps.parentPath(ChildProcess.currentExecutable) + "/zerofs" }

    /// Runs zerofs; commands other than `init` read an empty config unless given `-c`, so a
    /// developer's ./zerofs.toml never changes a test.
    static func run(_ arguments: [String], environment: [String] = []) throws -> CommandResult {
        let isolated = arguments.first == "init" || arguments.contains("-c") ? arguments : arguments + ["-c", "/dev/null"]
        let result = try ChildProcess.run([path] + isolated, environment: environment)
        return CommandResult(status: result.status, out: String(decoding: result.output, as: UTF8.self),
                             err: String(decoding: result.errors, as: UTF8.self))
    }
}

/// A `zerofs run` child on free ports.
final class ServerProcess {
    let child: ChildProcess
    let nfsPort: Int
    let rpcPort: Int

    init(_ arguments: [String], environment: [String] = []) throws {
        let config = arguments.contains("-c") ? [] : ["-c", "/dev/null"]
        child = try ChildProcess(
            executable: ZeroFSProgram.path, arguments: ["run", "--nfs-address", "127.0.0.1:0", "--rpc-address", "127.0.0.1:0"] + config + arguments,
            environment: environment)
        var nfs: Int?
        var rpc: Int?
        while nfs == nil || rpc == nil, let line = child.readLine() {
            if let range = line.range(of: "NFS and MOUNT on 127.0.0.1:") { nfs = Int(line[range.upperBound...]) }
            if let range = line.range(of: "gRPC AdminService on 127.0.0.1:") { rpc = Int(line[range.upperBound...]) }
        }
        guard let nfs, let rpc else { throw ChildProcessError("zerofs run exited before serving (status \(child.wait()))") }
        nfsPort = nfs
        rpcPort = rpc
    }

    func url(_ export: String) -> String {
        "nfs://127.0.0.1\(export)?version=3&nfsport=\(nfsPort)&mountport=\(nfsPort)"
    }

    /// SIGTERM, then the exit status; the output must say it stopped cleanly.
    @discardableResult
    func stop() -> (Int32, [String]) {
        Glibc.kill(child.pid, SIGTERM)
        var lines: [String] = []
        while let line = child.readLine() { lines.append(line) }
        return (child.wait(), lines)
    }
}

@Suite(.serialized) struct CLITests {
    let harness = StoreHarness(MemoryBackendFactory())

    init() throws {
        try #require(FileOps.kind(of: ZeroFSProgram.path) == .file, "run `swift build` before `swift test`")
    }

    /// Runs one command; expects success unless `status` says otherwise.
    @discardableResult
    func zerofs(
        _ arguments: [String], status: Int32 = 0, environment: [String] = [], sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> CommandResult {
        let result = try ZeroFSProgram.run(arguments, environment: environment)
        #expect(result.status == status, "zerofs \(arguments.joined(separator: " ")): \(result.err)", sourceLocation: sourceLocation)
        return result
    }

    /// Every dataset, snapshot and checkpoint subcommand on the store at `path`, with
    /// `store` naming it (and the server, when one runs). Checks tables, JSON and errors.
    func exerciseEveryCommand(_ store: [String], online: Bool) throws {
        let say = online ? "" : "directly"
        func check(_ result: CommandResult) {
            if online {
                #expect(!result.err.contains("directly"), "\(result.err)")
            } else {
                #expect(result.err.contains("no server at") && result.err.contains(say), "\(result.err)")
            }
        }
        check(try zerofs(["dataset", "create", "--name", "projects"] + store))
        #expect(try zerofs(["dataset", "create", "--name", "projects/web"] + store).out == "created dataset projects/web\n")
        let created = try zerofs(["dataset", "create", "--name", "scratch", "--json"] + store).json
        #expect(created["name"] as? String == "scratch")
        #expect((created["uuid"] as? String)?.count == 36)

        // list: a table like zfs list, and JSON.
        let table = try zerofs(["dataset", "list"] + store).out.split(separator: "\n").map(String.init)
        #expect(table.first?.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            == ["NAME", "USED", "REFER", "WRITTEN", "CREATED", "DEFAULT", "READONLY", "ORIGIN"])
        #expect(table.dropFirst().map { $0.split(separator: " ").first.map(String.init) ?? "" } == ["projects", "projects/web", "root", "scratch"])
        #expect(table.first { $0.hasPrefix("root ") }?.contains("yes") == true)
        let listed = try zerofs(["dataset", "list", "--json"] + store).json["datasets"] as? [[String: Any]] ?? []
        #expect(listed.compactMap { $0["name"] as? String } == ["projects", "projects/web", "root", "scratch"])

        // default
        #expect(try zerofs(["dataset", "get-default"] + store).out == "root\n")
        try zerofs(["dataset", "set-default", "--name", "projects"] + store)
        #expect(try zerofs(["dataset", "get-default", "--json"] + store).json["name"] as? String == "projects")
        try zerofs(["dataset", "set-default", "--name", "root"] + store)

        // snapshots, recursive; by full and by bare unique name
        #expect(try zerofs(["dataset", "snapshot", "--source", "projects", "--name", "monday", "--recursive"] + store).out
            == "created snapshot projects@monday\ncreated snapshot projects/web@monday\n")
        try zerofs(["dataset", "snapshot", "--source", "scratch", "--name", "only"] + store)
        let snapshots = try zerofs(["dataset", "list-snapshots", "--json"] + store).json["snapshots"] as? [[String: Any]] ?? []
        #expect(snapshots.compactMap { $0["name"] as? String } == ["projects@monday", "projects/web@monday", "scratch@only"])
        #expect(snapshots.allSatisfy { $0["is_snapshot"] as? Bool == true && $0["readonly"] as? Bool == true })
        let ofWeb = try zerofs(["dataset", "list-snapshots", "--source", "projects/web"] + store).out
        #expect(ofWeb.contains("projects/web@monday") && !ofWeb.contains("projects@monday"))
        let info = try zerofs(["dataset", "info", "--name", "projects@monday"] + store).out
        #expect(info.contains("type         snapshot") && info.contains("readonly     yes"), "\(info)")
        try zerofs(["dataset", "rename-snapshot", "--name", "scratch@only", "--new-name", "renamed"] + store)
        // A bare name used by one dataset: the answer says whose snapshot went.
        #expect(try zerofs(["dataset", "delete-snapshot", "--name", "renamed"] + store).out == "deleted snapshot scratch@renamed\n")
        let ambiguous = try zerofs(["dataset", "delete-snapshot", "--name", "monday"] + store, status: 1)
        #expect(ambiguous.err.contains("ambiguous") && ambiguous.err.contains("INVALID_ARGUMENT"), "\(ambiguous.err)")

        // clone, rollback, rename, readonly
        let clone = try zerofs(["dataset", "clone", "--snapshot", "projects@monday", "--name", "experiment", "--json"] + store).json
        #expect(clone["origin"] as? String == "projects@monday")
        #expect(try zerofs(["dataset", "list"] + store).out.contains("projects@monday"))
        try zerofs(["dataset", "rollback", "--name", "projects", "--snapshot", "monday"] + store)
        try zerofs(["dataset", "rename", "--name", "experiment", "--new-name", "lab"] + store)
        #expect(try zerofs(["dataset", "set", "--name", "lab", "readonly=on", "--json"] + store).json["readonly"] as? Bool == true)
        #expect(try zerofs(["dataset", "info", "--name", "lab"] + store).out.contains("readonly     yes"))
        try zerofs(["dataset", "set", "--name", "lab", "readonly=off"] + store)
        #expect(try zerofs(["dataset", "set", "--name", "lab", "colour=red"] + store, status: 1).err.contains("unknown property"))

        // Errors: one line on stderr naming the status; nothing changed.
        for (arguments, status) in [
            (["dataset", "create", "--name", "projects"], "ALREADY_EXISTS"),
            (["dataset", "create", "--name", "a@b"], "INVALID_ARGUMENT"),
            (["dataset", "info", "--name", "nope"], "NOT_FOUND"),
            (["dataset", "delete", "--name", "root"], "FAILED_PRECONDITION"),
            (["dataset", "delete", "--name", "projects"], "FAILED_PRECONDITION"),
            (["dataset", "snapshot", "--source", "projects@monday", "--name", "x"], "FAILED_PRECONDITION"),
            (["dataset", "clone", "--snapshot", "projects", "--name", "y"], "FAILED_PRECONDITION"),
            (["checkpoint", "create", "--name", "bad name"], "INVALID_ARGUMENT"),
            (["checkpoint", "delete", "--name", "missing"], "NOT_FOUND"),
        ] {
            let result = try zerofs(arguments + store, status: 1)
            let lines = result.err.split(separator: "\n").filter { !$0.contains("no server at") }
            #expect(lines.count == 1 && lines[0].hasPrefix("zerofs ") && lines[0].hasSuffix("(\(status))"), "\(arguments): \(result.err)")
        }

        // checkpoints
        #expect(try zerofs(["checkpoint", "create", "--name", "cp1"] + store).out == "created checkpoint cp1\n")
        let checkpoints = try zerofs(["checkpoint", "list", "--json"] + store).json["checkpoints"] as? [[String: Any]] ?? []
        #expect(checkpoints.compactMap { $0["name"] as? String } == ["cp1"])
        #expect(try zerofs(["checkpoint", "list"] + store).out.hasPrefix("NAME"))

        // deletes
        try zerofs(["dataset", "delete", "--name", "scratch"] + store)
        try zerofs(["dataset", "delete", "--name", "projects", "--recursive"] + store)
        let after = try zerofs(["dataset", "list", "--json"] + store).json["datasets"] as? [[String: Any]] ?? []
        #expect(after.compactMap { $0["name"] as? String } == ["lab", "root"])  // the clone stays
        try zerofs(["dataset", "delete", "--name", "lab"] + store)
        try zerofs(["checkpoint", "delete", "--name", "cp1"] + store)

        // fsck and scrub
        #expect(try zerofs(["fsck"] + store).out.hasSuffix("0 problems\n"))
        let scrub = try zerofs(["scrub", "--json"] + store).json
        #expect((scrub["objects"] as? Int ?? 0) > 0, "\(scrub)")
        #expect(scrub["failures"] == nil)
    }

    @Test func everyCommandAgainstARunningServer() throws {
        let path = harness.freshPath("cli-online")
        defer { try? FileOps.removeTree(path) }
        let server = try ServerProcess(["--backend", "lsm", "--path", path])
        let store = ["--backend", "lsm", "--path", path, "--rpc-address", "127.0.0.1:\(server.rpcPort)"]
        try exerciseEveryCommand(store, online: true)

        // While the server holds the store, a command that finds no server at its address
        // cannot open it either, and says why.
        let blocked = try zerofs(["dataset", "list", "--backend", "lsm", "--path", path, "--rpc-address", "127.0.0.1:1"], status: 1)
        #expect(blocked.err.contains("in use"), "\(blocked.err)")
        // A server for another store at the address is not talked to.
        let other = try zerofs(["dataset", "list", "--path", path + "-other", "--rpc-address", "127.0.0.1:\(server.rpcPort)"], status: 1)
        #expect(other.err.contains("serves \(FileOps.absolutePath(path))"), "\(other.err)")
        // Nor is one serving the path with another backend than the command names.
        let otherBackend = try zerofs(["dataset", "list", "--backend", "rocksdb", "--path", path, "--rpc-address", "127.0.0.1:\(server.rpcPort)"], status: 1)
        #expect(otherBackend.err.contains("with the lsm backend, not rocksdb") && otherBackend.err.contains("--backend lsm"), "\(otherBackend.err)")

        let (status, lines) = server.stop()
        #expect(status == 0)
        #expect(lines.contains { $0.contains("stopped cleanly") }, "\(lines)")
    }

    @Test func everyCommandWithNoServer() throws {
        let path = harness.freshPath("cli-offline")
        defer { try? FileOps.removeTree(path) }
        let missing = try zerofs(["dataset", "list", "--path", path, "--rpc-address", "127.0.0.1:1"], status: 1)
        #expect(missing.err.contains("no lsm store at"), "\(missing.err)")
        // Make the store, then work on it with no server.
        ServerProcess.stopAfterStart(try ServerProcess(["--backend", "lsm", "--path", path]))
        try exerciseEveryCommand(["--backend", "lsm", "--path", path, "--rpc-address", "127.0.0.1:1"], online: false)
    }

    /// Something that takes connections at the admin address and never answers (a stuck
    /// server, another program): the command gives up after its probe's 10 s.
    @Test func aListenerThatNeverAnswersDoesNotHangACommand() throws {
        let listener = try #require(LoopbackListener())
        defer { listener.close() }
        let port = listener.port
        let started = ContinuousClock.now
        let result = try zerofs(["dataset", "list", "--rpc-address", "127.0.0.1:\(port)"], status: 1)
        #expect(result.err.contains("does not answer as a zerofs server"), "\(result.err)")
        #expect(ContinuousClock.now - started < .seconds(60))
    }

    /// A bench option out of range is refused by name before any work.
    @Test func benchOptionsOutOfRangeAreRefused() throws {
        // `bench` reads no config: run without the `-c` the other commands get. A bad
        // option value is a usage error (64).
        for io in ["2048", "3", "-1"] {
            let result = try ChildProcess.run([ZeroFSProgram.path, "bench", "fs", "--backend", "memory", "--io-kib=\(io)", "--files", "1"])
            let errors = String(decoding: result.errors, as: UTF8.self)
            #expect(result.status == 64 && errors.contains("--io-kib must be 4 to 1024"), "\(result.status): \(errors)")
        }
        // Empty lists and entries ran nothing and exited 0 (or, in process, trapped).
        for arguments in [["kv", "--backend", ""], ["kv", "--in-process", "--backend", ""], ["fs", "--backend", ","],
                          ["fs", "--workloads", ""], ["nfs", "--files", "2000,abc"]] {
            let result = try ChildProcess.run([ZeroFSProgram.path, "bench"] + arguments)
            let errors = String(decoding: result.errors, as: UTF8.self)
            #expect(result.status == 64 && errors.contains("comma-separated"), "\(arguments): \(result.status): \(errors)")
        }
    }

    /// A store in S3 is named only by storage.url: a path that looks like one, or a
    /// backend flag that cannot keep one, is refused before anything opens (the path
    /// opened the store in S3 here, fencing its server; rocksdb made an empty local
    /// store named after the URL and served it).
    @Test func aStoreInS3IsNamedOnlyByTheConfigsURL() throws {
        let directory = harness.freshPath("cli-s3-names")
        try FileOps.makeDirectories(directory)
        defer { try? FileOps.removeTree(directory) }
        let viaPath = try zerofs(["dataset", "list", "--path", "s3://bucket/fs"], status: 1)
        #expect(viaPath.err.contains("--path names a local folder"), "\(viaPath.err)")
        let config = directory + "/s3.toml"
        try FileOps.writeFileAtomically(config, Array("[storage]\nurl = \"s3://bucket/fs\"\n".utf8))
        let viaBackend = try zerofs(["run", "-c", config, "--backend", "rocksdb"], status: 1)
        #expect(viaBackend.err.contains("only the lsm backend keeps a store in S3"), "\(viaBackend.err)")
        #expect(FileOps.kind(of: "s3:") == .missing, "a local store was made")
        let inConfig = directory + "/path.toml"
        try FileOps.writeFileAtomically(inConfig, Array("[storage]\npath = \"s3://bucket/fs\"\n".utf8))
        let viaConfigPath = try zerofs(["dataset", "list", "-c", inConfig], status: 1)
        #expect(viaConfigPath.err.contains("storage.path: is a local folder"), "\(viaConfigPath.err)")
    }

    @Test func quickStartWithAConfigFile() throws {
        let directory = harness.freshPath("cli-quickstart")
        try FileOps.makeDirectories(directory)
        defer { try? FileOps.removeTree(directory) }
        let config = directory + "/zerofs.toml"
        try zerofs(["init", config])
        #expect(try zerofs(["init", config], status: 1).err.contains("exists"))
        // The init file with free ports, so the test binds nothing fixed.
        var text = try String(decoding: FileOps.readFile(config), as: UTF8.self)
        text = text.replacingOccurrences(of: "path = \"zerofs-data\"", with: "path = \"${QUICKSTART_DIR}/data\"")
        try FileOps.writeFileAtomically(config, Array(text.utf8))
        let environment = ["QUICKSTART_DIR=\(directory)"]
        let server = try ServerProcess(["-c", config], environment: environment)
        defer { server.stop() }
        let store = ["-c", config, "--rpc-address", "127.0.0.1:\(server.rpcPort)"]
        try zerofs(["dataset", "create", "--name", "docs"] + store, environment: environment)
        let local = directory + "/notes.txt"
        try FileOps.writeFileAtomically(local, Array("version 1\n".utf8))
        #expect(try ZeroFSProgram.runTool("/usr/bin/nfs-cp", [local, server.url("/docs/notes.txt")]).status == 0)
        try zerofs(["dataset", "snapshot", "--source", "docs", "--name", "v1"] + store, environment: environment)
        // nfs-cp never overwrites: change the file with the project's small libnfs client.
        try FileOps.writeFileAtomically(local, Array("version 2, longer\n".utf8))
        let nfsclient = try NFSBench.compileClient(into: directory)
        #expect(try ZeroFSProgram.runTool(nfsclient, [server.url("/docs"), "put", local, "/notes.txt"]).status == 0)
        #expect(try ZeroFSProgram.runTool("/usr/bin/nfs-cat", [server.url("/docs/notes.txt")]).out == "version 2, longer\n")
        let old = try ZeroFSProgram.runTool("/usr/bin/nfs-cat", [server.url("/docs@v1/notes.txt")])
        #expect(old.out == "version 1\n", "\(old.err)")
        let viaSnapshots = try ZeroFSProgram.runTool(nfsclient, [server.url("/docs"), "cat", "/.snapshots/v1/notes.txt"])
        #expect(viaSnapshots.out == "version 1\n", "\(viaSnapshots.err)")

        let stats = try zerofs(["dataset", "info", "--name", "docs@v1", "--json"] + store, environment: environment).json
        #expect((stats["refer_bytes"] as? Int ?? 0) >= 10)

        // A bad config: the file, the key and the reason, one line.
        let bad = directory + "/bad.toml"
        try FileOps.writeFileAtomically(bad, Array("[storage]\nbackend = \"zfs\"\n".utf8))
        let refused = try zerofs(["dataset", "list", "-c", bad], status: 1)
        #expect(refused.err == "zerofs dataset list: \(bad): storage.backend: must be lsm, rocksdb or lmdb, got \"zfs\"\n")
        #expect(try zerofs(["run", "-c", bad], status: 1).err.contains("storage.backend"))
        // --threads as servers.nfs.threads: a huge count would start threads for ever.
        let huge = try zerofs(["run", "--backend", "lsm", "--path", directory + "/never", "--threads", "9223372036854775807"], status: 1)
        #expect(huge.err.contains("--threads must be 1 to 1024"), "\(huge.err)")
    }

    @Test func checkpointsServeReadOnlyAndRestore() throws {
        let path = harness.freshPath("cli-checkpoint")
        let restored = path + "-restored"
        defer {
            try? FileOps.removeTree(path)
            try? FileOps.removeTree(restored)
        }
        let store = ["--backend", "lsm", "--path", path, "--rpc-address", "127.0.0.1:1"]
        var server = try ServerProcess(["--backend", "lsm", "--path", path])
        try zerofs(["dataset", "create", "--name", "docs", "--backend", "lsm", "--path", path, "--rpc-address", "127.0.0.1:\(server.rpcPort)"])
        let local = path + "-file"
        defer { unlink(local) }
        try FileOps.writeFileAtomically(local, Array("kept in the checkpoint\n".utf8))
        #expect(try ZeroFSProgram.runTool("/usr/bin/nfs-cp", [local, server.url("/docs/a.txt")]).status == 0)
        server.stop()
        try zerofs(["checkpoint", "create", "--name", "before"] + store)
        try zerofs(["dataset", "create", "--name", "later"] + store)

        // Served read-only: files readable, no change accepted.
        server = try ServerProcess(["--backend", "lsm", "--path", path, "--checkpoint", "before"])
        let online = ["--backend", "lsm", "--path", path, "--rpc-address", "127.0.0.1:\(server.rpcPort)"]
        #expect(try ZeroFSProgram.runTool("/usr/bin/nfs-cat", [server.url("/docs/a.txt")]).out == "kept in the checkpoint\n")
        #expect(try ZeroFSProgram.runTool("/usr/bin/nfs-cp", [local, server.url("/docs/b.txt")]).status != 0)
        #expect(try zerofs(["dataset", "create", "--name", "x"] + online, status: 1).err.contains("FAILED_PRECONDITION"))
        #expect(!(try zerofs(["dataset", "list"] + online).out.contains("later")))
        server.stop()

        try zerofs(["checkpoint", "restore", "--name", "before", "--to", restored] + store)
        #expect(try zerofs(["checkpoint", "restore", "--name", "before", "--to", restored] + store, status: 1).err.contains("destination is not empty"))
        #expect(try zerofs(["checkpoint", "restore", "--name", "nope", "--to", restored + "2"] + store, status: 1).err.contains("nope"))
        let names = try zerofs(["dataset", "list", "--json", "--backend", "lsm", "--path", restored, "--rpc-address", "127.0.0.1:1"]).json
        #expect((names["datasets"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["docs", "root"])
        #expect(try zerofs(["fsck", "--backend", "lsm", "--path", restored, "--rpc-address", "127.0.0.1:1"]).out.hasSuffix("0 problems\n"))
        // Another incarnation: the old store's NFS file handles are STALE on the new one.
        func incarnation(_ path: String) throws -> UInt64 {
            let kv = try BackendCatalog.standard.factory(named: "lsm").open(at: path, options: BackendOptions())
            defer { try? kv.close() }
            let pool = try Pool.open(kv, options: FSOptions())
            defer { try? pool.close() }
            return pool.incarnation
        }
        #expect(try incarnation(path) != incarnation(restored))
    }

    @Test func scrubNamesADamagedTable() throws {
        let path = harness.freshPath("cli-scrub")
        defer { try? FileOps.removeTree(path) }
        let store = ["--backend", "lsm", "--path", path, "--rpc-address", "127.0.0.1:1"]
        let server = try ServerProcess(["--backend", "lsm", "--path", path])
        try zerofs(["dataset", "create", "--name", "docs", "--backend", "lsm", "--path", path, "--rpc-address", "127.0.0.1:\(server.rpcPort)"])
        let local = path + "-file"
        defer { unlink(local) }
        try FileOps.writeFileAtomically(local, Array(repeating: UInt8(ascii: "z"), count: 200_000) + Array((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7919) }))
        #expect(try ZeroFSProgram.runTool("/usr/bin/nfs-cp", [local, server.url("/docs/big")]).status == 0)
        server.stop()
        try zerofs(["checkpoint", "create", "--name", "flush"] + store)  // puts everything in tables
        let clean = try zerofs(["scrub"] + store)
        #expect(clean.out.hasSuffix("0 failures\n"), "\(clean.out)")
        #expect(clean.err.contains("verified manifest, block and value checksums"), "\(clean.err)")

        let tables = try FileOps.list(path + "/objects/sst").filter { $0.hasSuffix(".sst") }
        try #require(!tables.isEmpty)
        let victim = path + "/objects/sst/" + tables[0]
        var bytes = try FileOps.readFile(victim)
        bytes[bytes.count / 3] ^= 0xFF
        try FileOps.writeFileAtomically(victim, bytes)
        let damaged = try zerofs(["scrub"] + store, status: 1)
        #expect(damaged.out.contains("failed: sst/\(tables[0])"), "\(damaged.out)")
        #expect(damaged.out.hasSuffix("1 failure\n"), "\(damaged.out)")
    }
}

extension ServerProcess {
    static func stopAfterStart(_ server: ServerProcess) { server.stop() }
}

extension ZeroFSProgram {
    static func runTool(_ tool: String, _ arguments: [String]) throws -> CommandResult {
        let result = try ChildProcess.run([tool] + arguments)
        return CommandResult(status: result.status, out: String(decoding: result.output, as: UTF8.self), err: String(decoding: result.errors, as: UTF8.self))
    }
}
