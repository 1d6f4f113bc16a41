// Uploads cut short where the server keeps an empty object (SeaweedFS does: s3.md). A
// writer never fills such an object in later: it puts the records (or the manifest) under
// the next id, and readers pass over empty WAL objects and manifests wherever they stand.
// Without that, a writer taking over could read the empty object as the log's torn end,
// and the first writer's retry would then slip records it was told had failed in behind
// the new writer's back, where its next open, or a replica, replays them.

import Engine
import Foundation
import KVTestSupport
import ObjectStore
import Synchronization
import Testing
@testable import LSMBackend

/// Forwards to an object store; the first `putIfAbsentOrCut` of a name with `prefix`
/// (once armed: at once, or after `arm()`; with `times`, that many in a row) leaves an
/// empty object there (an upload cut short that the server kept), runs `hook`, and
/// answers `.cutShort`, as the S3 store does when its retry finds that object.
final class CuttingObjects: ObjectStore, @unchecked Sendable {
    let base: any ObjectStore
    let prefix: String
    let hook = Mutex<(@Sendable () -> Void)?>(nil)
    let cut = Mutex<String?>(nil)
    /// Cuts still to make.
    private let armed: Mutex<Int>

    init(_ base: any ObjectStore, prefix: String, armed: Bool = true) {
        self.base = base
        self.prefix = prefix
        self.armed = Mutex(armed ? 1 : 0)
    }

    func arm(times: Int = 1) { armed.withLock { $0 = times } }

    var location: String { base.location }
    func get(_ name: String) throws -> [UInt8]? { try base.get(name) }
    func open(_ name: String) throws -> (any ReadableObject)? { try base.open(name) }
    func list(prefix: String) throws -> [String] { try base.list(prefix: prefix) }
    func put(_ name: String, _ bytes: [UInt8]) throws { try base.put(name, bytes) }
    func putIfAbsent(_ name: String, _ bytes: [UInt8]) throws -> Bool { try base.putIfAbsent(name, bytes) }
    func putIfAbsentOrCut(_ name: String, _ bytes: [UInt8]) throws -> PutIfAbsentOutcome {
        let cutting = name.hasPrefix(prefix) && armed.withLock { left in
            guard left > 0 else { return false }
            left -= 1
            return true
        }
        guard cutting else {
            return try base.putIfAbsentOrCut(name, bytes)
        }
        guard try base.putIfAbsent(name, []) else { return .taken }
        cut.withLock { $0 = name }
        if let hook = hook.withLock({ $0 }) { hook() }
        return .cutShort
    }
    func delete(_ name: String) throws { try base.delete(name) }
    func makeWriter(_ name: String) throws -> any ObjectWriter { try base.makeWriter(name) }
    func setInService(_ inService: Bool) { base.setInService(inService) }
    func storeClosed() { base.storeClosed() }
}

@Suite struct LSMCutUploadTests {
    let factory = LSMBackendFactory()

    /// A WAL upload cut short: the write lands under the next id, and every open after
    /// passes over the empty object in the middle of the log.
    @Test func aCutWALUploadGoesToTheNextObject() throws {
        let objects = MemoryObjectStore()
        let cutting = CuttingObjects(objects, prefix: "wal/")
        let writer = try factory.open(objects: cutting, options: tinyLSMOptions())
        try writer.put([0x01], [1], durable: true)
        try writer.put([0x02], [2], durable: true)
        let cut = try #require(cutting.cut.withLock { $0 })
        #expect(try objects.get(cut) == [], "the cut object stays empty")
        try writer.close()
        let reopened = try factory.open(objects: objects, options: tinyLSMOptions())
        #expect(try reopened.get([0x01]) == [1])
        #expect(try reopened.get([0x02]) == [2])
        try reopened.close()
    }

    /// The race: a second writer takes over while the first writer's WAL upload lies cut
    /// short (empty) and before its retry. The first writer's write fails (fenced); the
    /// second writer's acknowledged writes stand, and no later open or replica shows the
    /// failed write.
    @Test func aTakeoverDuringACutWALUploadNeverShowsTheFailedWrite() throws {
        let objects = MemoryObjectStore()
        let cutting = CuttingObjects(objects, prefix: "wal/")
        let first = try factory.open(objects: cutting, options: tinyLSMOptions())
        defer { try? first.close() }
        try first.put([0x05], [5], durable: false)  // buffered, goes with the cut write
        let second = Mutex<(any KVBackend)?>(nil)
        cutting.hook.withLock {
            $0 = {
                // Reads the cut object while it is empty, and fences after it.
                second.withLock { $0 = try? LSMBackendFactory().open(objects: objects, options: tinyLSMOptions()) }
            }
        }
        #expect(throws: KVError.self) { try first.put([0x01], [1], durable: true) }
        let taker = try #require(second.withLock { $0 })
        #expect(try taker.get([0x01]) == nil)
        try taker.put([0x01], [10], durable: true)
        try taker.put([0x02], [20], durable: true)
        let replica = try factory.openReplica(objects: objects, options: tinyLSMOptions())
        #expect(try replica.get([0x01]) == [10])
        #expect(try replica.get([0x05]) == nil)
        try replica.close()
        try taker.close()
        let again = try factory.open(objects: objects, options: tinyLSMOptions())
        defer { try? again.close() }
        #expect(try again.get([0x01]) == [10], "the failed write came back over an acknowledged one")
        #expect(try again.get([0x02]) == [20])
        #expect(try again.get([0x05]) == nil)
    }

    /// A manifest upload cut short: the commit lands under the next id, and opens and
    /// replicas take the newest manifest with bytes.
    @Test func aCutManifestUploadGoesToTheNextId() throws {
        let objects = MemoryObjectStore()
        let writer = try factory.open(objects: objects, options: tinyLSMOptions())
        try writer.put([0x01], [1], durable: true)
        try writer.close()
        let cutting = CuttingObjects(objects, prefix: "manifest/")
        let reopened = try factory.open(objects: cutting, options: tinyLSMOptions())
        let cut = try #require(cutting.cut.withLock { $0 })
        #expect(try objects.get(cut) == [])
        for i in 0..<300 { try reopened.put(TestBytes.key(i), TestBytes.value(i, size: 400), durable: i % 100 == 99) }
        try reopened.close()
        let again = try factory.open(objects: objects, options: tinyLSMOptions())
        defer { try? again.close() }
        #expect(try again.get([0x01]) == [1])
        for i in stride(from: 0, to: 300, by: 7) { #expect(try again.get(TestBytes.key(i)) == TestBytes.value(i, size: 400), "key \(i)") }
    }

    /// A checkpoint's commit cut short, once or twice in a row: the checkpoint pins the
    /// manifest its commit went to, not an empty one it tried first, so it opens, and
    /// collection (which reads every pinned manifest) goes on. (Twice in a row it pinned
    /// the second empty manifest: S3FaultTests met that.)
    @Test(arguments: [1, 2])
    func aCheckpointWhoseCommitWasCutPinsTheManifestItWentTo(cuts: Int) throws {
        let objects = MemoryObjectStore()
        let cutting = CuttingObjects(objects, prefix: "manifest/", armed: false)
        let writer = try factory.open(objects: cutting, options: tinyLSMOptions())
        for i in 0..<200 { try writer.put(TestBytes.key(i), TestBytes.value(i, size: 400), durable: false) }
        // Flushed to tables by a first checkpoint, so the second one's own commit is the
        // one cut.
        _ = try writer.createCheckpoint(named: "flushed")
        try writer.settleBackgroundWork()
        cutting.arm(times: cuts)
        _ = try writer.createCheckpoint(named: "before")
        #expect(cutting.cut.withLock { $0 } != nil)
        for i in 0..<200 { try writer.delete(TestBytes.key(i), durable: false) }
        try writer.flush()
        try writer.settleBackgroundWork()
        try writer.close()
        let pinned = try factory.openCheckpoint(objects: objects, named: "before", options: tinyLSMOptions())
        defer { try? pinned.close() }
        for i in stride(from: 0, to: 200, by: 9) { #expect(try pinned.get(TestBytes.key(i)) == TestBytes.value(i, size: 400), "key \(i)") }
        let again = try factory.open(objects: objects, options: tinyLSMOptions())
        defer { try? again.close() }
        #expect(try again.get(TestBytes.key(0)) == nil)
    }
}
