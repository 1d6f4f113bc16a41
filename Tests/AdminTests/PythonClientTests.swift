// The AdminService checked by an implementation nobody here wrote: a Python client made
// with grpcio-tools from Protos/admin.proto (pinned versions, in a virtual environment so
// it also works where the system Python refuses pip installs) calls every RPC against a
// `zerofs run` the test starts on free ports (Tests/AdminTests/python/).

import Engine
import KVTestSupport
import MemoryBackend
import Testing
import Workloads

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct PythonClientTests {
    static let here = FileOps.parentPath(#filePath)
    static let root = FileOps.parentPath(FileOps.parentPath(here))

    @Test func everyRPCFromPython() throws {
        // The environment lives in the build folder (ZEROFS_PYENV to put it elsewhere);
        // setup-env does nothing when it is up to date.
        let venv = (getenv("ZEROFS_PYENV").map { String(cString: $0) }) ?? Self.root + "/.build/zerofs-pyenv"
        let setup = try ChildProcess.run([Self.here + "/python/setup-env", venv])
        try #require(setup.status == 0, "setup-env: \(String(decoding: setup.errors, as: UTF8.self))")

        let harness = StoreHarness(MemoryBackendFactory())
        defer { harness.cleanUp() }
        let server = try ServerProcess(["--backend", "lsm", "--path", harness.freshPath("python")])
        let run = try ChildProcess.run([venv + "/bin/python", Self.here + "/python/admin_client.py", "--stubs", venv + "/stubs", "127.0.0.1:\(server.rpcPort)"])
        let output = String(decoding: run.output, as: UTF8.self)
        #expect(run.status == 0, "\(output)\n\(String(decoding: run.errors, as: UTF8.self))")
        #expect(output.contains("every RPC called"), "\(output)")
        let (status, lines) = server.stop()
        #expect(status == 0 && lines.contains { $0.contains("stopped cleanly") }, "\(lines)")
    }
}
