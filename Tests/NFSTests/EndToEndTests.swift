// End to end against real NFS clients nobody here wrote: libnfs's tools (nfs-cp, nfs-cat,
// nfs-ls) and a C program on libnfs's API (Tools/nfsclient/nfsclient.c, compiled by the test),
// talking over TCP to an NFSServer on a free port of 127.0.0.1.

@testable import NFS
import FS
import FSTestSupport
import Foundation
import KVTestSupport
import LSMBackend
import Synchronization
import Testing

/// Runs a program; its exit status and output (through ChildProcess.run: no pipes,
/// threads or descriptors of this process involved, so the stores that other suites
/// run at the same time are never touched).
func runProgram(_ path: String, _ arguments: [String]) throws -> (status: Int32, out: [UInt8], err: String) {
    let result = try ChildProcess.run([path] + arguments)
    return (result.status, result.output, String(decoding: result.errors, as: UTF8.self))
}

/// The compiled C client, built once per test process.
enum NFSClientProgram {
    static let path: Result<String, ClientBuildError> = {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("zerofs-nfsclient-\(getpid())").path
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            return .success(try NFSBench.compileClient(into: directory))
        } catch {
            return .failure(ClientBuildError(message: "\(error) (run scripts/install-deps)"))
        }
    }()
}

struct ClientBuildError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// A server on a free port over an lsm store in a fresh folder.
final class ServedStore {
    let fixture: FSFixture
    private(set) var server: NFSServer

    init() throws {
        fixture = try FSFixture(LSMBackendFactory())
        server = try Self.serve(fixture.fs.pool)
    }

    static func serve(_ pool: Pool) throws -> NFSServer {
        var options = NFSServer.Options()
        options.port = 0
        options.threads = 4
        return try NFSServer.start(NFSService(pool: pool), options: options)
    }

    func url(_ export: String) -> String {
        "nfs://127.0.0.1\(export)?version=3&nfsport=\(server.port)&mountport=\(server.port)"
    }

    /// Stops the server, reopens the store (a restart), serves again on a new port.
    func restart() throws {
        server.stop()
        try fixture.reopen()
        server = try Self.serve(fixture.fs.pool)
    }

    func stop() {
        server.stop()
        try? fixture.fs.close()
    }
}

@Suite(.serialized) struct EndToEndTests {
    func client() throws -> String { try NFSClientProgram.path.get() }

    func expectSuccess(_ result: (status: Int32, out: [UInt8], err: String), _ what: String,
                       sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == 0, "\(what): \(result.err) \(String(decoding: result.out.suffix(2000), as: UTF8.self))",
                sourceLocation: sourceLocation)
    }

    @Test func posixScenarioAndSeveralClientsAtOnce() throws {
        let nfsclient = try client()
        let served = try ServedStore()
        defer { served.stop() }
        expectSuccess(try runProgram(nfsclient, [served.url("/"), "posix", "/"]), "posix")
        // Four clients at once, each in its own directory.
        for k in 0..<4 { expectSuccess(try runProgram(nfsclient, [served.url("/"), "mkdir", "/c\(k)"]), "mkdir") }
        let results = Mutex<[Int32]>([])
        let url = served.url("/")
        let threads = (0..<4).map { k in
            Thread {
                let result = try? runProgram(nfsclient, [url, "posix", "/c\(k)"])
                results.withLock { $0.append(result?.status ?? -1) }
            }
        }
        for thread in threads { thread.start() }
        while results.withLock({ $0.count }) < 4 { Thread.sleep(forTimeInterval: 0.01) }
        #expect(results.withLock { $0 } == [0, 0, 0, 0])
        try served.fixture.expectClean()
    }

    @Test func copiesOfManySizesInAndOut() throws {
        let nfsclient = try client()
        let served = try ServedStore()
        defer { served.stop() }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("zerofs-e2e-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        var generator = SeededGenerator(seed: TestSeed.resolve("copiesOfManySizesInAndOut"))
        for size in [0, 1, 4095, 4096, 32769, (1 << 20) + 3, 64 << 20] {
            let local = folder.appendingPathComponent("in-\(size)").path
            let back = folder.appendingPathComponent("out-\(size)").path
            let data = Data((0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) })
            try data.write(to: URL(fileURLWithPath: local))
            expectSuccess(try runProgram(nfsclient, [served.url("/"), "put", local, "/f\(size)"]), "put \(size)")
            expectSuccess(try runProgram(nfsclient, [served.url("/"), "get", "/f\(size)", back]), "get \(size)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: back)) == data, "size \(size)")
        }
        // libnfs's own tools: nfs-cp in, nfs-cat and nfs-ls. (libnfs refuses a file URL
        // at the top of the export: it mounts "" and answers "Export is empty".)
        expectSuccess(try runProgram(nfsclient, [served.url("/"), "mkdir", "/tools"]), "mkdir")
        let local = folder.appendingPathComponent("tool").path
        try Data("through nfs-cp\n".utf8).write(to: URL(fileURLWithPath: local))
        let url = { (path: String) in "nfs://127.0.0.1\(path)?version=3&nfsport=\(served.server.port)&mountport=\(served.server.port)" }
        expectSuccess(try runProgram("/usr/bin/nfs-cp", [local, url("/tools/tool")]), "nfs-cp")
        let cat = try runProgram("/usr/bin/nfs-cat", [url("/tools/tool")])
        expectSuccess(cat, "nfs-cat")
        #expect(cat.out == Array("through nfs-cp\n".utf8))
        let ls = try runProgram("/usr/bin/nfs-ls", [url("/tools")])
        expectSuccess(ls, "nfs-ls")
        #expect(String(decoding: ls.out, as: UTF8.self).contains("tool"))
        try served.fixture.expectClean()
    }

    @Test func snapshotsReadOnlyAndARestart() throws {
        let nfsclient = try client()
        let served = try ServedStore()
        defer { served.stop() }
        let pool = served.fixture.fs.pool
        _ = try pool.createDataset("ds")
        expectSuccess(try runProgram(nfsclient, [served.url("/ds"), "write", "/f", "before"]), "write")
        _ = try pool.snapshot("ds", "s1")
        expectSuccess(try runProgram(nfsclient, [served.url("/ds"), "write", "/f", "after"]), "rewrite")
        #expect(try runProgram(nfsclient, [served.url("/ds@s1"), "cat", "/f"]).out == Array("before".utf8))
        #expect(try runProgram(nfsclient, [served.url("/ds"), "cat", "/.snapshots/s1/f"]).out == Array("before".utf8))
        #expect(try runProgram(nfsclient, [served.url("/ds"), "cat", "/f"]).out == Array("after".utf8))
        expectSuccess(try runProgram(nfsclient, [served.url("/ds@s1"), "expect-rofs", "/new"]), "ROFS at the snapshot")
        expectSuccess(try runProgram(nfsclient, [served.url("/ds"), "expect-rofs", "/.snapshots/s1/new"]), "ROFS in .snapshots")
        try served.restart()
        #expect(try runProgram(nfsclient, [served.url("/ds"), "cat", "/f"]).out == Array("after".utf8))
        #expect(try runProgram(nfsclient, [served.url("/ds@s1"), "cat", "/f"]).out == Array("before".utf8))
        try served.fixture.expectClean()
    }
}
