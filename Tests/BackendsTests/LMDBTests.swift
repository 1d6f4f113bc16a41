// LMDB-specific behaviour beyond the shared contract: the map grows instead of failing.

import Engine
import KVTestSupport
import LMDBBackend
import Testing

@Suite struct LMDBTests {
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
}
