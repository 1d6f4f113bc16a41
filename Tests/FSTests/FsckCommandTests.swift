// `zerofs fsck --backend NAME --path PATH`: exit 0 and a summary on a clean store,
// exit 1 with each problem on a damaged one (runs the built executable).

@testable import FS
import Engine
import FSTestSupport
import KVTestSupport
import RocksDBBackend
import Testing

@Suite struct FsckCommandTests {
    func runFsck(_ path: String) throws -> (status: Int32, output: [String]) {
        let zerofs = FileOps.parentPath(ChildProcess.currentExecutable) + "/zerofs"
        let child = try ChildProcess(executable: zerofs, arguments: ["fsck", "--backend", "rocksdb", "--path", path, "-c", "/dev/null", "--rpc-address", "127.0.0.1:1"])
        var lines: [String] = []
        while let line = child.readLine() { lines.append(line) }
        return (child.wait(), lines)
    }

    @Test func exitStatusFollowsTheFindings() throws {
        let zerofs = FileOps.parentPath(ChildProcess.currentExecutable) + "/zerofs"
        try #require(FileOps.kind(of: zerofs) == .file, "run `swift build` before `swift test`")
        let harness = StoreHarness(RocksDBBackendFactory())
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        var store = try harness.open(path)
        let fs = try FileSystem.open(store, options: FSFixture.testOptions)
        let file = try fs.create(.root, FileSystem.rootInode, n("f"), mode: 0o644)
        try fs.write(.root, file.ino, offset: 0, n("data"))
        try fs.close()
        try store.close()

        let clean = try runFsck(path)
        #expect(clean.status == 0)
        #expect(clean.output.last == "zerofs fsck: 2 inodes, 1 entries, 1 chunks, 0 problems")

        store = try harness.open(path)
        try store.put(FSKeys.stats(0), FSCounters(inodes: 7, bytes: 1).encode(), durable: true)
        try store.close()
        let damaged = try runFsck(path)
        #expect(damaged.status == 1)
        #expect(damaged.output.contains("problem: statistics count 7 inodes, the store holds 2"))
    }
}
