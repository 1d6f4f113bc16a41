// LMDB-specific behaviour beyond the shared contract: the map grows instead of failing;
// a map larger than the address space given is refused with the setting named, and a
// smaller one then makes the store.

import Engine
import KVTestSupport
@testable import LMDBBackend
import Testing

@Suite struct LMDBTests {
    /// A map that cannot double (64 TiB: 128 TiB is more than a process's address space)
    /// fails the growth with `.io` and leaves the store as it was: LMDB, asked to map the
    /// new size, would have unmapped the old map first, and the next read crashed.
    @Test func aMapThatCannotGrowLeavesTheStoreUsable() throws {
        let harness = StoreHarness(LMDBBackendFactory())
        defer { harness.cleanUp() }
        var options = BackendOptions()
        options.tuning = ["map_size": String(64 << 40)]
        let store = try harness.open(harness.freshPath(), options: options)
        try store.put([1], [1])
        let backend = try #require(store as? LMDBBackend)
        #expect { try backend.env.grow() } throws: { ($0 as? KVError)?.code == .io }
        #expect(backend.env.isUsable)
        #expect(try store.get([1]) == [1])
        try store.put([2], [2], durable: true)
        #expect(try store.entries().count == 2)
        try store.close()
    }

    @Test func aFullMapGrowsInsteadOfFailing() throws {
        let harness = StoreHarness(LMDBBackendFactory())
        defer { harness.cleanUp() }
        var options = BackendOptions()
        options.tuning = ["map_size": "65536"]
        let path = harness.freshPath()
        let store = try harness.open(path, options: options)
        for i in 0..<64 { try store.put(TestBytes.key(i), TestBytes.value(i, size: 64 << 10)) }
        // A write that needs growth while a view is open waits for the view to close.
        let view = try store.readView()
        let closer = Counter()
        runConcurrently(2) { thread in
            if thread == 0 {
                usleepMilliseconds(200)
                closer.add()
                view.close()
            } else {
                do {
                    for i in 64..<128 { try store.put(TestBytes.key(i), TestBytes.value(i, size: 64 << 10)) }
                } catch {
                    Issue.record("write failed: \(error)")
                }
            }
        }
        #expect(closer.value == 1)
        for i in stride(from: 0, to: 128, by: 9) { #expect(try store.get(TestBytes.key(i)) == TestBytes.value(i, size: 64 << 10)) }
        try store.close()
        let reopened = try harness.open(path, options: options)
        #expect(try reopened.entries().count == 128)
        try reopened.close()
    }

    @Test func aMapBeyondTheAddressSpaceIsRefusedByName() throws {
        let harness = StoreHarness(LMDBBackendFactory())
        defer { harness.cleanUp() }
        var options = BackendOptions()
        options.tuning = ["map_size": "\(1 << 62)"]
        let path = harness.freshPath()
        var refused: KVError?
        do { _ = try harness.open(path, options: options) } catch { refused = error as? KVError }
        #expect(refused?.code == .invalidArgument, "\(String(describing: refused))")
        #expect(refused?.message.contains("map_size") == true, "\(String(describing: refused))")
        // Nothing was made but the start of a creation: a sane map size makes the store.
        options.tuning = [:]
        let store = try harness.open(path, options: options)
        try store.put([1], [2])
        #expect(try store.get([1]) == [2])
        try store.close()
    }
}
