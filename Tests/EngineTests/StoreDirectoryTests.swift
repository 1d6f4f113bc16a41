import Engine
import KVTestSupport
import MemoryBackend
import Testing

@Suite struct StoreDirectoryTests {
    @Test func createsMarkerAndLocksExclusively() throws {
        let harness = StoreHarness(MemoryBackendFactory())
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        let folder = try StoreDirectory.open(path: path, backend: "example", createIfMissing: true)
        #expect(folder.isNew)
        #expect(try FileOps.readFile(path + "/ZEROFS-STORE") == Array("zerofs-store 1\nbackend example\ncreating\n".utf8))
        #expect(try StoreDirectory.backendName(at: path) == "example")
        #expect { _ = try StoreDirectory.open(path: path, backend: "example", createIfMissing: true) } throws: {
            ($0 as? KVError)?.code == .locked
        }
        folder.lock.release()
        // Until the backend marks it ready, a store's creation may start over.
        #expect { _ = try StoreDirectory.open(path: path, backend: "example", createIfMissing: false) } throws: {
            ($0 as? KVError)?.code == .storeNotFound
        }
        let interrupted = try StoreDirectory.open(path: path, backend: "example", createIfMissing: true)
        #expect(interrupted.isNew)
        try StoreDirectory.markReady(path: path, backend: "example")
        #expect(try FileOps.readFile(path + "/ZEROFS-STORE") == Array("zerofs-store 1\nbackend example\nready\n".utf8))
        interrupted.lock.release()
        let again = try StoreDirectory.open(path: path, backend: "example", createIfMissing: false)
        #expect(!again.isNew)
        again.lock.release()
        #expect { _ = try StoreDirectory.open(path: path, backend: "other", createIfMissing: true) } throws: {
            ($0 as? KVError)?.code == .wrongBackend
        }
    }

    /// Two lines, neither `creating` nor `ready`: what versions before 2026-12-06 wrote
    /// while creating, and what a ready marker that lost its last line looks like. Started
    /// over only when the folder holds no file of the backend's.
    @Test func aMarkerOfTwoLinesStartsOverOnlyWithNothingToLose() throws {
        let harness = StoreHarness(MemoryBackendFactory())
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        try FileOps.makeDirectories(path + "/db/sub")
        try FileOps.writeFileAtomically(path + "/ZEROFS-STORE", Array("zerofs-store 1\nbackend example\n".utf8))
        let folder = try StoreDirectory.open(path: path, backend: "example", createIfMissing: true)
        #expect(folder.isNew)
        folder.lock.release()

        try FileOps.writeFileAtomically(path + "/db/sub/data", [1])
        for create in [true, false] {
            #expect { _ = try StoreDirectory.open(path: path, backend: "example", createIfMissing: create) } throws: {
                ($0 as? KVError)?.code == .corruption
            }
        }
        #expect(try FileOps.readFile(path + "/db/sub/data") == [1])
    }

    @Test func refusesNewerFormats() throws {
        let harness = StoreHarness(MemoryBackendFactory())
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        try FileOps.makeDirectories(path)
        try FileOps.writeFileAtomically(path + "/ZEROFS-STORE", Array("zerofs-store 9\nbackend example\n".utf8))
        #expect { _ = try StoreDirectory.open(path: path, backend: "example", createIfMissing: true) } throws: {
            ($0 as? KVError)?.code == .unsupportedFormat
        }
    }

    @Test func registryNamesItsBackends() throws {
        let registry = BackendRegistry([MemoryBackendFactory()], defaultName: "memory")
        #expect(try registry.factory(named: "memory").name == "memory")
        #expect { _ = try registry.factory(named: "nope") } throws: {
            ($0 as? KVError)?.message.contains("known backends: memory") == true
        }
    }
}
