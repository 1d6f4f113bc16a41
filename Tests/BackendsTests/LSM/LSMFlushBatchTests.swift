// Memtable flushes that take several frozen memtables at once (lsm.md, "Flush"): one
// manifest commits them all, and the newer memtables' tables shadow the older ones'.

import Engine
import Foundation
import KVTestSupport
import ObjectStore
import Testing
@testable import LSMBackend

@Suite struct LSMFlushBatchTests {
    let factory = LSMBackendFactory()

    @Test func memtablesThatQueueUpAreFlushedTogetherNewestFirst() throws {
        let objects = MachineCrashStore()
        var options = tinyLSMOptions()
        // No compaction commits in between, and room for the memtables held back.
        options.tuning["l0_compaction_trigger"] = "32"
        options.tuning["l0_stop_trigger"] = "64"
        options.tuning["max_immutable_memtables"] = "16"
        let backend = try factory.open(objects: objects, options: options)
        let store = try #require(backend as? LSMBackend).store
        let key = Array("the key".utf8)
        let rounds = 4
        // The first flush waits at its tables' commit while the next memtables freeze.
        objects.tablesHeld.withLock { $0 = true }
        for round in 0..<rounds {
            try backend.put(key, Array("value \(round)".utf8), durable: false)
            // Past memtable_bytes (64 KiB): the WAL thread freezes the memtable.
            try fill(backend, (round * 100)..<(round * 100 + 100), size: 1000)
            try waitUntil("memtable \(round + 1) frozen") { store.state.withLock { store.immutables.count } >= round + 1 }
        }
        let before = store.state.withLock { store.manifestID }
        objects.tablesHeld.withLock { $0 = false }
        try waitUntil("every memtable flushed") { store.state.withLock { store.immutables.isEmpty } }
        let commits = store.state.withLock { store.manifestID } - before
        // One per memtable before; now the ones frozen during the first flush go together.
        #expect(commits >= 1 && commits < UInt64(rounds), "\(commits) manifest commits for \(rounds) memtables")
        #expect(try backend.get(key) == Array("value \(rounds - 1)".utf8))
        try backend.close()

        let reopened = try factory.open(objects: objects, options: options)
        defer { try? reopened.close() }
        #expect(try reopened.get(key) == Array("value \(rounds - 1)".utf8))
        for i in 0..<(rounds * 100) { #expect(try reopened.get(TestBytes.key(i)) == TestBytes.value(i, size: 1000)) }
    }

    private func waitUntil(_ what: String, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(30)
        while !condition() {
            guard Date() < deadline else { throw KVError(.io, "timed out waiting: \(what)") }
            Thread.sleep(forTimeInterval: 0.002)
        }
    }
}
