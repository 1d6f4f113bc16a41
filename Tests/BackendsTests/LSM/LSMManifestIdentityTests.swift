// The lsm store's manifests as readers find them, and its identity: empty newest
// manifests (commits cut off before their body) passed over by every reader, and the
// `store-id` object a store gets when it is made, which disk caches and replicas check.

import Engine
import KVTestSupport
import ObjectStore
import Testing
@testable import LSMBackend

@Suite struct LSMManifestIdentityTests {
    let factory = LSMBackendFactory()

    @Test func emptyNewestManifestsAreCommitsCutOffBeforeTheirBody() throws {
        // SeaweedFS keeps an empty object for a PUT whose connection closed before its
        // body: a writer killed while committing can leave its manifest so (the S3 crash
        // test met such WAL objects). No manifest is empty, and nothing depended on it.
        let objects = try closedStore(durableWrites: 10)
        let newest = try objects.list(prefix: "manifest/").compactMap(Manifest.id(of:)).max()!
        try objects.put(Manifest.name(newest + 1), [])
        try objects.put(Manifest.name(newest + 2), [])
        let reopened = try factory.open(objects: objects, options: BackendOptions())
        #expect(try reopened.entries().count == 10)
        try reopened.put([1], [1], durable: true)
        try reopened.close()
        let after = try objects.list(prefix: "manifest/").compactMap(Manifest.id(of:))
        #expect(after.max()! > newest + 2, "the open commits past them")
        let again = try factory.open(objects: objects, options: BackendOptions())
        #expect(try again.entries().count == 11)
        try again.close()
        // A manifest with bytes that do not decode is still corruption.
        let last = try objects.list(prefix: "manifest/").compactMap(Manifest.id(of:)).max()!
        objects.tamper(Manifest.name(last)) { $0.removeLast(3) }
        let error = #expect(throws: KVError.self) { try factory.open(objects: objects, options: BackendOptions()) }
        #expect(error?.code == .corruption)
    }

    @Test func replicasAndCheckpointOpensPassOverEmptyNewestManifests() throws {
        // As the writer's open does (above), a replica and an open of a checkpoint read the
        // newest manifest that has bytes; a replica reads a cut attempt once it is filled
        // in (S3ObjectStore replaces its own), and follows a writer that commits past it.
        let objects = MemoryObjectStore()
        let writer = try factory.open(objects: objects, options: BackendOptions())
        try fill(writer, 0..<5, durable: true)
        _ = try writer.createCheckpoint(named: "before")
        try fill(writer, 5..<8, durable: true)
        try writer.close()
        let newest = try objects.list(prefix: "manifest/").compactMap(Manifest.id(of:)).max()!
        try objects.put(Manifest.name(newest + 1), [])

        let replica = try factory.openReplica(objects: objects, options: BackendOptions())
        #expect(try replica.entries().count == 8)
        _ = try replica.catchUp()
        #expect(try replica.entries().count == 8)
        let checkpoint = try factory.openCheckpoint(objects: objects, named: "before", options: BackendOptions())
        #expect(try checkpoint.entries().count == 5)
        try checkpoint.close()

        try objects.put(Manifest.name(newest + 1), try objects.get(Manifest.name(newest))!)
        _ = try replica.catchUp()
        #expect(try replica.entries().count == 8)
        let next = try factory.open(objects: objects, options: BackendOptions())
        try fill(next, 8..<11, durable: true)
        try next.close()
        _ = try replica.catchUp()
        #expect(try replica.entries().count == 11)
        try replica.close()

        // Only empty manifests: that is not a store to read.
        let hollow = MemoryObjectStore()
        try hollow.put(Manifest.name(1), [])
        let error = #expect(throws: KVError.self) { try factory.openReplica(objects: hollow, options: BackendOptions()) }
        #expect(error?.code == .corruption)
    }

    @Test func aStoreGetsAnIdentityWhenMadeAndKeepsIt() throws {
        // A disk cache keeps its pages for one identity (DiskCacheTests): a new store, a
        // restored one and a store from before identities each get one; reopening keeps it.
        let objects = try closedStore(durableWrites: 3)
        let first = try #require(try objects.get(LSMStore.identityName))
        #expect(first.count == 16)
        try factory.open(objects: objects, options: BackendOptions()).close()
        #expect(try objects.get(LSMStore.identityName) == first)

        try objects.delete(LSMStore.identityName)
        try factory.open(objects: objects, options: BackendOptions()).close()
        let given = try #require(try objects.get(LSMStore.identityName))
        #expect(given != first)

        // Made anew where a deleted store left its identity: another one.
        let again = MemoryObjectStore()
        try again.put(LSMStore.identityName, given)
        try factory.open(objects: again, options: BackendOptions()).close()
        #expect(try again.get(LSMStore.identityName) != given)

        let store = try factory.open(objects: objects, options: BackendOptions())
        _ = try store.createCheckpoint(named: "c")
        try store.close()
        let target = MemoryObjectStore()
        try target.put(LSMStore.identityName, given)
        try factory.restoreCheckpoint(objects: objects, named: "c", into: target)
        let restored = try #require(try target.get(LSMStore.identityName))
        #expect(restored != given && restored.count == 16)
        let reopened = try factory.open(objects: target, options: BackendOptions())
        #expect(try reopened.entries().count == 3)
        try reopened.close()
    }
}
