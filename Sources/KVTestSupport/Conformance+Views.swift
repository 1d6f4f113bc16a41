// The conformance cases of read views (Conformance.swift lists every case): a view and its
// iterators see the store as it was when they were made, outlive closing as documented,
// and may be read again from inside an iterator's `withCurrent`.

import Engine
import Synchronization
import Testing

extension KVConformance {
    static func readViewIsolation(_ h: StoreHarness) throws {
        let store = try h.open(h.freshPath())
        defer { try? store.close() }
        try store.put([1], [1])
        try store.put([2], [2])
        let view = try store.readView()
        let iterator = try store.makeIterator(.all)
        try store.put([1], [10])
        try store.delete([2])
        try store.put([3], [3])
        var batch = WriteBatch()
        batch.deleteRange(from: [0], to: [9])
        try store.write(batch, durable: false)
        #expect(try view.get([1]) == [1])
        #expect(try view.get([2]) == [2])
        #expect(try view.get([3]) == nil)
        #expect(try view.entries() == [KVEntry(key: [1], value: [1]), KVEntry(key: [2], value: [2])])
        var seen: [KVEntry] = []
        while iterator.isValid {
            seen.append(try iterator.entry())
            try iterator.next()
        }
        #expect(seen == [KVEntry(key: [1], value: [1]), KVEntry(key: [2], value: [2])])
        #expect(try store.entries().isEmpty)
        let viewIterator = try view.makeIterator(.all)
        view.close()
        #expect { _ = try view.get([1]) } throws: { ($0 as? KVError)?.code == .closed }
        #expect(try viewIterator.key() == [1], "iterators outlive the view they came from")
    }

    /// Reading a view (a get, another iterator) from inside the closure of one of its
    /// iterators: nothing in the contract forbids it. Run on a thread of its own, so a
    /// backend that waits for itself fails the case instead of hanging the suite.
    static func nestedViewReads(_ h: StoreHarness) throws {
        let store = try h.open(h.freshPath())
        // A reader stuck for ever would hold the close up for ever too: left open then.
        var stuck = false
        defer { if !stuck { try? store.close() } }
        for i in 0..<3 { try store.put([UInt8(i)], [UInt8(10 + i)]) }
        let view = try store.readView()
        defer { if !stuck { view.close() } }
        let seen = Mutex<[[UInt8]]>([])
        let call = BackgroundCall {
            let outer = try view.makeIterator(.all)
            while outer.isValid {
                try outer.withCurrent { key, _ in
                    let again = try view.get(Array(key))
                    let inner = try view.makeIterator(.all)
                    try inner.next()
                    let second = try inner.withCurrent { key, _ in Array(key) }
                    seen.withLock { $0.append((again ?? []) + second) }
                }
                try outer.next()
            }
        }
        call.wait(until: .now + .seconds(60))
        stuck = !call.finished
        #expect(call.finished, "a read from inside withCurrent is still waiting after 60 s")
        #expect(call.finished && !call.failed)
        #expect(seen.withLock { $0 } == [[10, 1], [11, 1], [12, 1]])
    }
}
