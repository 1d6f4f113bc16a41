// `zerofs run` as a user runs it: it serves NFS on the address it prints, a second server
// on the same store is refused with a clear message, and SIGTERM stops it cleanly with
// the data durable (a third start finds it).

@testable import NFS
import Engine
import FSTestSupport
import Foundation
import KVTestSupport
import MemoryBackend
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct RunCommandTests {
    @Test func servesRefusesASecondServerAndStopsCleanly() throws {
        let nfsclient = try NFSClientProgram.path.get()
        let zerofs = FileOps.parentPath(ChildProcess.currentExecutable) + "/zerofs"
        try #require(FileOps.kind(of: zerofs) == .file, "run `swift build` before `swift test`")
        let harness = StoreHarness(MemoryBackendFactory())
        let path = harness.freshPath("run")

        func start() throws -> (ChildProcess, Int) {
            let child = try ChildProcess(executable: zerofs, arguments: ["run", "--backend", "lsm", "--path", path, "--nfs-address", "127.0.0.1:0", "--rpc-address", "127.0.0.1:0", "-c", "/dev/null"])
            while let line = child.readLine() {
                if let range = line.range(of: "NFS and MOUNT on 127.0.0.1:"), let port = Int(line[range.upperBound...]) {
                    return (child, port)
                }
            }
            throw XDRError("zerofs run exited before serving (status \(child.wait()))")
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
}
