// The one conformance suite of the KVBackend contract. Each backend runs it through a
// few-line test file:
//
//   @Test(arguments: KVConformance.cases(for: RocksDBBackendFactory()))
//   func conformance(_ check: ConformanceCase) throws { try check.run() }
//
// Cases that need data to outlive the process declare it; `memory` runs all the others.

import Engine
import Testing

#if canImport(Glibc)
import Glibc
#endif

public struct ConformanceCase: Sendable, CustomTestStringConvertible {
    public let name: String
    public let factory: any KVBackendFactory
    let needsPersistence: Bool
    let body: @Sendable (StoreHarness) throws -> Void

    public var testDescription: String { "\(factory.name): \(name)" }

    /// Runs the case against fresh stores, removing them afterwards.
    public func run() throws {
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        try body(harness)
    }
}

public enum KVConformance {
    /// The cases `factory`'s capabilities allow.
    /// A remote store has no folder and no lock: the folder cases (those that need
    /// persistence) and the lock case give way to the fencing case.
    public static func cases(for factory: any KVBackendFactory) -> [ConformanceCase] {
        let capabilities = factory.capabilities
        let chosen = capabilities.remote
            ? all.filter { !$0.persistent && $0.name != lockCase } + [("a second opener fences the first", false, secondOpenerFences)]
            : all.filter { !$0.persistent || capabilities.persistent }
        return chosen.map { ConformanceCase(name: $0.name, factory: factory, needsPersistence: $0.persistent, body: $0.body) }
    }

    static let lockCase = "a second opener gets a locked error naming the holder"

    typealias Body = @Sendable (StoreHarness) throws -> Void
    static let all: [(name: String, persistent: Bool, body: Body)] = [
        ("empty key and empty value", false, emptyKeyAndValue),
        ("binary keys sort by unsigned bytes", false, binaryKeyOrder),
        ("values of 0 B, 100 B, 1 MiB and 16 MiB; their lengths in a walk over keys", false, valueSizes),
        ("overwrite and delete", false, overwriteAndDelete),
        ("delete-range", false, deleteRange),
        ("batches apply in order and atomically", false, batchSemantics),
        ("size limits are enforced before anything applies", false, sizeLimits),
        ("iteration bounds and seek", false, iterationBoundsAndSeek),
        ("firstEntry(from:prefix:)", false, firstEntry),
        ("firstVersion(from:prefix:suffixLength:) matches a model across flushes", false, firstVersionMatchesModel),
        ("read views and iterators are isolated from later writes", false, readViewIsolation),
        ("a view is read again from inside its iterator's withCurrent", false, nestedViewReads),
        ("100,000-key bulk load and full scan", false, bulkLoad),
        ("concurrent writers and readers keep a batch invariant", false, concurrentInvariant),
        ("reopen keeps every durable write", false, reopenKeepsWrites),
        ("checkpoints are point-in-time and restorable", false, checkpointSemantics),
        ("checkpoint names and errors", false, checkpointErrors),
        ("operations after close fail cleanly", false, afterClose),
        (lockCase, false, secondOpenerLocked),
        ("paths that are not stores of this backend are refused", true, badPaths),
        ("a store whose data files vanished is reported, not recreated empty", true, missingData),
        ("leftovers of an interrupted create do not block the folder", true, interruptedCreate),
        ("a creation cut short after the marker is started over", true, interruptedBackendCreation),
        ("a marker that lost its last line is reported and the store kept", true, markerWithoutState),
        ("a store reached through a symbolic link opens", true, symbolicLink),
        ("concurrent checkpoints of one name: exactly one wins", false, checkpointRace),
    ]

    // MARK: Cases

    static func emptyKeyAndValue(_ h: StoreHarness) throws {
        let store = try h.open(h.freshPath())
        defer { try? store.close() }
        #expect(try store.get([]) == nil)
        try store.put([], [])
        #expect(try store.get([]) == [])
        try store.put([], [1, 2])
        #expect(try store.get([]) == [1, 2])
        try store.put([0], [])
        #expect(try store.entries().map(\.key) == [[], [0]])
        try store.delete([])
        #expect(try store.get([]) == nil)
        #expect(try store.get([0]) == [])
    }

    static func binaryKeyOrder(_ h: StoreHarness) throws {
        let store = try h.open(h.freshPath())
        defer { try? store.close() }
        let keys: [[UInt8]] = [[0xFF], [0x00], [0x00, 0x00], [0x7F, 0xFF], [0x80], [0xFF, 0x00], [0xFF, 0xFF, 0xFF], [0x01, 0x00, 0x02], []]
        var batch = WriteBatch()
        for (i, key) in keys.enumerated() { batch.put(key, [UInt8(i)]) }
        try store.write(batch, durable: false)
        let expected = keys.sorted { Bytes.compare($0, $1) < 0 }
        #expect(expected.first == [])
        #expect(try store.entries().map(\.key) == expected)
        for (i, key) in keys.enumerated() { #expect(try store.get(key) == [UInt8(i)]) }
    }

    static func valueSizes(_ h: StoreHarness) throws {
        let path = h.freshPath()
        var store = try h.open(path)
        let sizes = [0, 100, 1 << 20, 16 << 20]
        for (i, size) in sizes.enumerated() { try store.put(TestBytes.key(i), TestBytes.value(i, size: size), durable: true) }
        for (i, size) in sizes.enumerated() { #expect(try store.get(TestBytes.key(i)) == TestBytes.value(i, size: size)) }
        try store.close()
        store = try h.open(path)
        defer { try? store.close() }
        for (i, size) in sizes.enumerated() { #expect(try store.get(TestBytes.key(i))?.count == size) }
        #expect(try store.get(TestBytes.key(3)) == TestBytes.value(3, size: 16 << 20))
        // A walk over keys gives each value's length (after the reopen, from wherever the
        // backend keeps the values now), and stops where its body says.
        var walked: [([UInt8], Int)] = []
        try store.scanKeys(.all) { key, length in
            walked.append((Array(key), length))
            return true
        }
        #expect(walked.map(\.0) == sizes.indices.map { TestBytes.key($0) })
        #expect(walked.map(\.1) == sizes)
        var steps = 0
        try store.scanKeys(KeyRange(start: TestBytes.key(1))) { key, _ in
            steps += 1
            #expect(Array(key) == TestBytes.key(1))
            return false
        }
        #expect(steps == 1)
    }

    static func overwriteAndDelete(_ h: StoreHarness) throws {
        let store = try h.open(h.freshPath())
        defer { try? store.close() }
        let key = TestBytes.text("k")
        try store.put(key, TestBytes.text("one"))
        try store.put(key, TestBytes.text("two"))
        #expect(try store.get(key) == TestBytes.text("two"))
        try store.delete(key)
        #expect(try store.get(key) == nil)
        try store.delete(key)
        try store.delete(TestBytes.text("never-written"))
        #expect(try store.entries().isEmpty)
        try store.put(key, TestBytes.text("three"))
        #expect(try store.entries() == [KVEntry(key: key, value: TestBytes.text("three"))])
    }

    static func deleteRange(_ h: StoreHarness) throws {
        let store = try h.open(h.freshPath())
        defer { try? store.close() }
        var batch = WriteBatch()
        for i in 0..<100 { batch.put(TestBytes.key(i), TestBytes.key(i)) }
        try store.write(batch, durable: false)
        batch.removeAll()
        batch.deleteRange(from: TestBytes.key(10), to: TestBytes.key(20))
        batch.deleteRange(from: TestBytes.key(50), to: TestBytes.key(50))
        batch.deleteRange(from: TestBytes.key(70), to: TestBytes.key(60))
        try store.write(batch, durable: false)
        let remaining = try store.entries().map(\.key)
        #expect(remaining == (0..<100).filter { !(10..<20).contains($0) }.map { TestBytes.key($0) })
        #expect(try store.get(TestBytes.key(10)) == nil)
        #expect(try store.get(TestBytes.key(19)) == nil)
        #expect(try store.get(TestBytes.key(20)) == TestBytes.key(20))
        // A range delete then a put of a key inside it, in one batch: the put wins.
        batch.removeAll()
        batch.deleteRange(from: TestBytes.key(0), to: TestBytes.key(100))
        batch.put(TestBytes.key(42), [42])
        try store.write(batch, durable: true)
        #expect(try store.entries() == [KVEntry(key: TestBytes.key(42), value: [42])])
        // Keys that only share a prefix with the range ends.
        try store.put([1], [])
        try store.put([1, 0], [])
        try store.put([2], [])
        batch.removeAll()
        batch.deleteRange(from: [1, 0], to: [2])
        try store.write(batch, durable: false)
        #expect(try store.get([1]) == [])
        #expect(try store.get([1, 0]) == nil)
        #expect(try store.get([2]) == [])
    }

    static func batchSemantics(_ h: StoreHarness) throws {
        let store = try h.open(h.freshPath())
        defer { try? store.close() }
        var batch = WriteBatch()
        batch.put([1], [1])
        batch.put([2], [2])
        batch.delete([1])
        batch.put([3], [3])
        batch.put([3], [4])
        batch.put([0], [0])
        try store.write(batch, durable: true)
        #expect(try store.entries() == [KVEntry(key: [0], value: [0]), KVEntry(key: [2], value: [2]), KVEntry(key: [3], value: [4])])
        try store.write(WriteBatch(), durable: true)
        #expect(try store.entries().count == 3)
        let decoded = try WriteBatch(rep: batch.rep)
        #expect(decoded == batch)
    }

    static func sizeLimits(_ h: StoreHarness) throws {
        let store = try h.open(h.freshPath())
        defer { try? store.close() }
        let longest = [UInt8](repeating: 0xAB, count: KVLimits.maxKeySize)
        try store.put(longest, [1])
        #expect(try store.get(longest) == [1])
        var batch = WriteBatch()
        batch.put([9], [9])
        batch.put(longest + [0], [1])
        #expect { try store.write(batch, durable: false) } throws: { ($0 as? KVError)?.code == .invalidArgument }
        batch.removeAll()
        batch.put([9], [9])
        batch.put([8], [UInt8](repeating: 0, count: KVLimits.maxValueSize + 1))
        #expect { try store.write(batch, durable: false) } throws: { ($0 as? KVError)?.code == .invalidArgument }
        #expect(try store.get([9]) == nil)
        #expect { _ = try store.get(longest + [0]) } throws: { ($0 as? KVError)?.code == .invalidArgument }
    }

    static func iterationBoundsAndSeek(_ h: StoreHarness) throws {
        let store = try h.open(h.freshPath())
        defer { try? store.close() }
        var batch = WriteBatch()
        for i in stride(from: 0, to: 100, by: 2) { batch.put(TestBytes.key(i), TestBytes.value(i, size: 10)) }
        try store.write(batch, durable: false)
        let all = try store.entries()
        #expect(all.count == 50)
        #expect(all.map(\.key) == stride(from: 0, to: 100, by: 2).map { TestBytes.key($0) })
        #expect(all.allSatisfy { $0.value == TestBytes.value(Int($0.key[7]), size: 10) })

        let bounded = try store.entries(KeyRange(start: TestBytes.key(11), end: TestBytes.key(20)))
        #expect(bounded.map(\.key) == [12, 14, 16, 18].map { TestBytes.key($0) })
        #expect(try store.entries(KeyRange(start: TestBytes.key(20), end: TestBytes.key(20))).isEmpty)
        #expect(try store.entries(KeyRange(start: TestBytes.key(200))).isEmpty)

        let iterator = try store.makeIterator(KeyRange(start: TestBytes.key(10), end: TestBytes.key(30)))
        #expect(try iterator.key() == TestBytes.key(10))
        try iterator.seek(TestBytes.key(21))
        #expect(try iterator.key() == TestBytes.key(22))
        try iterator.seek(TestBytes.key(0))
        #expect(try iterator.key() == TestBytes.key(10), "seek below the range clamps to its start")
        try iterator.seek(TestBytes.key(28))
        try iterator.next()
        #expect(!iterator.isValid, "the end bound is exclusive")
        // Reading or stepping an iterator off its entries is an error, not a crash.
        #expect { try iterator.next() } throws: { ($0 as? KVError)?.code == .invalidArgument }
        #expect { _ = try iterator.entry() } throws: { ($0 as? KVError)?.code == .invalidArgument }
        let empty = try store.makeIterator(KeyRange(start: TestBytes.key(200)))
        #expect(!empty.isValid)
        #expect { _ = try empty.entry() } throws: { ($0 as? KVError)?.code == .invalidArgument }
        #expect { try empty.next() } throws: { ($0 as? KVError)?.code == .invalidArgument }
        try iterator.seek(TestBytes.key(12))
        #expect(iterator.isValid, "an iterator can seek again after running off its end")
        var count = 0
        try store.scan(.all) { _, _ in
            count += 1
            return count < 5
        }
        #expect(count == 5)
    }

    static func firstEntry(_ h: StoreHarness) throws {
        let store = try h.open(h.freshPath())
        defer { try? store.close() }
        var batch = WriteBatch()
        for key in [[1, 5], [1, 9], [2], [2, 0, 1], [3, 3]] as [[UInt8]] { batch.put(key, key) }
        try store.write(batch, durable: false)
        #expect(try store.firstEntry(from: [1], prefix: [1])?.key == [1, 5])
        #expect(try store.firstEntry(from: [1, 6], prefix: [1])?.key == [1, 9])
        #expect(try store.firstEntry(from: [1, 10], prefix: [1]) == nil)
        #expect(try store.firstEntry(from: [0], prefix: [2]) == KVEntry(key: [2], value: [2]))
        #expect(try store.firstEntry(from: [2, 0], prefix: [2, 0])?.key == [2, 0, 1])
        #expect(try store.firstEntry(from: [3], prefix: []) == KVEntry(key: [3, 3], value: [3, 3]))
        #expect(try store.firstEntry(from: [4], prefix: []) == nil)
        let view = try store.readView()
        try store.delete([1, 5])
        #expect(try view.firstEntry(from: [1], prefix: [1])?.key == [1, 5])
        #expect(try store.firstEntry(from: [1], prefix: [1])?.key == [1, 9])
        view.close()
    }

    /// Versioned keys (a 2-byte logical key and an 8-byte suffix) written, overwritten and
    /// deleted over several flushes, so versions of one logical key sit in many sources;
    /// after each round every query must give what a sorted model gives.
    static func firstVersionMatchesModel(_ h: StoreHarness) throws {
        let store = try h.open(h.freshPath())
        defer { try? store.close() }
        let seed = TestSeed.resolve("firstVersionMatchesModel")
        var random = SeededGenerator(seed: seed)
        var model: [[UInt8]: [UInt8]] = [:]
        func key(_ logical: UInt8, _ suffix: UInt64) -> [UInt8] {
            var key: [UInt8] = [0x4B, logical]
            for shift in stride(from: 56, through: 0, by: -8) { key.append(UInt8(truncatingIfNeeded: suffix >> UInt64(shift))) }
            return key
        }
        for round in 0..<8 {
            var batch = WriteBatch()
            for _ in 0..<60 {
                let k = key(UInt8.random(in: 0..<6, using: &random), UInt64.random(in: 0..<24, using: &random))
                if Int.random(in: 0..<4, using: &random) == 0 {
                    batch.delete(k)
                    model[k] = nil
                } else {
                    let value = [UInt8(round), UInt8.random(in: 0...255, using: &random)]
                    batch.put(k, value)
                    model[k] = value
                }
            }
            try store.write(batch, durable: false)
            if round % 2 == 1 { try store.flush() }
            let sorted = model.keys.sorted { Bytes.compare($0, $1) < 0 }
            for logical in 0..<7 as Range<UInt8> {
                for suffix in 0..<26 as Range<UInt64> {
                    let from = key(logical, suffix)
                    let expected = sorted.first { Bytes.compare($0, from) >= 0 && $0.starts(with: [0x4B, logical]) }
                    let found = try store.firstVersion(from: from, prefix: [0x4B, logical], suffixLength: 8)
                    #expect(found?.key == expected && found?.value == expected.flatMap { model[$0] },
                            "seed \(seed), round \(round), logical \(logical), from suffix \(suffix)")
                }
            }
        }
    }

    static func bulkLoad(_ h: StoreHarness) throws {
        let path = h.freshPath()
        let store = try h.open(path)
        defer { try? store.close() }
        var generator = SeededGenerator(seed: 7)
        var order = Array(0..<100_000)
        order.shuffle(using: &generator)
        var batch = WriteBatch()
        for (n, i) in order.enumerated() {
            batch.put(TestBytes.key(i), TestBytes.key(i &* 31))
            if n % 1000 == 999 {
                try store.write(batch, durable: false)
                batch.removeAll()
            }
        }
        try store.flush()
        var expected = 0
        var ok = true
        try store.scan(.all) { key, value in
            ok = ok && Array(key) == TestBytes.key(expected) && Array(value) == TestBytes.key(expected &* 31)
            expected += 1
            return true
        }
        #expect(ok)
        #expect(expected == 100_000)
        for i in stride(from: 0, to: 100_000, by: 997) { #expect(try store.get(TestBytes.key(i)) == TestBytes.key(i &* 31)) }
    }

    static func concurrentInvariant(_ h: StoreHarness) throws {
        let store = try h.open(h.freshPath())
        defer { try? store.close() }
        try store.put([0xA], TestBytes.key(0))
        try store.put([0xB], TestBytes.key(0))
        let failures = Counter()
        let threads = 4
        let rounds = 400
        runConcurrently(threads) { thread in
            do {
                if thread < 2 {
                    for round in 0..<rounds {
                        let value = TestBytes.key(thread * 1_000_000 + round)
                        var batch = WriteBatch()
                        batch.put([0xA], value)
                        batch.put([0xC, UInt8(thread)], value)
                        batch.put([0xB], value)
                        try store.write(batch, durable: round % 50 == 0)
                    }
                } else {
                    for _ in 0..<rounds {
                        let view = try store.readView()
                        let a = try view.get([0xA])
                        let b = try view.get([0xB])
                        if a != b || a == nil { failures.add() }
                        let entries = try view.entries(KeyRange(start: [0xA], end: [0xC]))
                        if entries.count != 2 || entries[0].value != entries[1].value { failures.add() }
                        view.close()
                    }
                }
            } catch {
                failures.add()
            }
        }
        #expect(failures.value == 0)
        #expect(try store.get([0xA]) == store.get([0xB]))
    }

    static func reopenKeepsWrites(_ h: StoreHarness) throws {
        let path = h.freshPath()
        var store = try h.open(path)
        for i in 0..<200 { try store.put(TestBytes.key(i), TestBytes.value(i, size: 50), durable: i % 20 == 19) }
        var batch = WriteBatch()
        batch.deleteRange(from: TestBytes.key(50), to: TestBytes.key(60))
        try store.write(batch, durable: true)
        try store.close()
        store = try h.open(path)
        defer { try? store.close() }
        let keys = try store.entries().map(\.key)
        #expect(keys == (0..<200).filter { !(50..<60).contains($0) }.map { TestBytes.key($0) })
        #expect(try store.get(TestBytes.key(199)) == TestBytes.value(199, size: 50))
        try store.put([1], [1], durable: true)
        #expect(try store.get([1]) == [1])
    }

    static func checkpointSemantics(_ h: StoreHarness) throws {
        let path = h.freshPath()
        let store = try h.open(path)
        for i in 0..<500 { try store.put(TestBytes.key(i), TestBytes.value(i, size: 64)) }
        let before = try store.entries()
        let info = try store.createCheckpoint(named: "cp-1")
        #expect(info.name == "cp-1")
        // Heavy changes after the checkpoint never reach it.
        var batch = WriteBatch()
        batch.deleteRange(from: TestBytes.key(0), to: TestBytes.key(250))
        for i in 400..<900 { batch.put(TestBytes.key(i), TestBytes.value(i + 1, size: 64)) }
        try store.write(batch, durable: true)
        let after = try store.entries()
        #expect(try store.listCheckpoints().map(\.name) == ["cp-1"])

        let frozen = try h.factory.openCheckpoint(at: path, named: "cp-1", options: BackendOptions())
        #expect(frozen.isReadOnly)
        #expect(try frozen.entries() == before)
        #expect { try frozen.put([1], [1]) } throws: { ($0 as? KVError)?.code == .readOnly }
        try frozen.close()

        let restoredPath = h.freshPath("restored")
        try h.factory.restoreCheckpoint(at: path, named: "cp-1", to: restoredPath)
        _ = try store.createCheckpoint(named: "cp-2")
        try store.deleteCheckpoint(named: "cp-1")
        #expect(try store.listCheckpoints().map(\.name) == ["cp-2"])
        #expect(throws: KVError.self) { _ = try h.factory.openCheckpoint(at: path, named: "cp-1", options: BackendOptions()) }
        try store.close()

        let restored = try h.open(restoredPath)
        #expect(try restored.entries() == before, "a restored store holds exactly the checkpoint's state")
        try restored.put([0xEE], [1], durable: true)
        #expect(try restored.listCheckpoints().isEmpty)
        try restored.close()

        let reopened = try h.open(path)
        #expect(try reopened.entries() == after, "restoring and writing the copy never touches the original")
        let second = try h.factory.openCheckpoint(at: path, named: "cp-2", options: BackendOptions())
        #expect(try second.entries() == after)
        try second.close()
        try reopened.close()
    }

    static func checkpointErrors(_ h: StoreHarness) throws {
        let path = h.freshPath()
        let store = try h.open(path)
        defer { try? store.close() }
        for bad in ["", ".hidden", "a/b", "white space", String(repeating: "x", count: 65), "ünï"] {
            #expect { _ = try store.createCheckpoint(named: bad) } throws: { ($0 as? KVError)?.code == .invalidArgument }
        }
        _ = try store.createCheckpoint(named: "same")
        #expect { _ = try store.createCheckpoint(named: "same") } throws: { ($0 as? KVError)?.code == .alreadyExists }
        #expect { try store.deleteCheckpoint(named: "missing") } throws: { ($0 as? KVError)?.code == .notFound }
        #expect { try h.factory.restoreCheckpoint(at: path, named: "missing", to: h.freshPath()) } throws: { ($0 as? KVError)?.code == .notFound }
        let occupied = h.freshPath("occupied")
        try h.factory.restoreCheckpoint(at: path, named: "same", to: occupied)
        #expect { try h.factory.restoreCheckpoint(at: path, named: "same", to: occupied) } throws: { ($0 as? KVError)?.code == .alreadyExists }
    }

    static func afterClose(_ h: StoreHarness) throws {
        let store = try h.open(h.freshPath())
        try store.put([1], [1])
        let view = try store.readView()
        let iterator = try store.makeIterator(.all)
        try store.close()
        try store.close()
        func isClosed(_ error: any Error) -> Bool { (error as? KVError)?.code == .closed }
        #expect { _ = try store.get([1]) } throws: { isClosed($0) }
        #expect { try store.put([2], [2]) } throws: { isClosed($0) }
        #expect { _ = try store.makeIterator(.all) } throws: { isClosed($0) }
        #expect { _ = try store.readView() } throws: { isClosed($0) }
        #expect { try store.flush() } throws: { isClosed($0) }
        #expect { _ = try store.createCheckpoint(named: "late") } throws: { isClosed($0) }
        #expect { _ = try view.get([1]) } throws: { isClosed($0) }
        #expect { _ = try iterator.entry() } throws: { isClosed($0) }
        #expect { try iterator.next() } throws: { isClosed($0) }
        view.close()
    }

    /// A remote store: the second opener takes over; the first one's next write is refused
    /// as fenced, and nothing it acknowledged before is lost.
    static func secondOpenerFences(_ h: StoreHarness) throws {
        let path = h.freshPath()
        let first = try h.open(path)
        try first.put([1], [1], durable: true)
        let second = try h.open(path)
        #expect(try second.get([1]) == [1])
        #expect { try first.put([2], [2], durable: true) } throws: { ($0 as? KVError)?.code == .fenced }
        try second.put([3], [3], durable: true)
        try? first.close()
        try second.close()
        let again = try h.open(path)
        #expect(try again.get([1]) == [1])
        #expect(try again.get([2]) == nil)
        #expect(try again.get([3]) == [3])
        try again.close()
    }

    static func secondOpenerLocked(_ h: StoreHarness) throws {
        let path = h.freshPath()
        let store = try h.open(path)
        do {
            _ = try h.open(path)
            Issue.record("a second open of a held store succeeded")
        } catch let error as KVError {
            #expect(error.code == .locked)
            #expect(error.description.contains("\(getpid())"), "the error names the holder: \(error)")
        }
        try store.close()
        let again = try h.open(path)
        try again.close()
    }

    static func badPaths(_ h: StoreHarness) throws {
        let file = h.freshPath("file")
        try FileOps.writeFileAtomically(file, [1, 2, 3])
        #expect { _ = try h.open(file) } throws: { ($0 as? KVError)?.code == .notAStore }

        let folder = h.freshPath("folder")
        try FileOps.makeDirectories(folder)
        try FileOps.writeFileAtomically(folder + "/precious.txt", Array("keep me".utf8))
        #expect { _ = try h.open(folder) } throws: { ($0 as? KVError)?.code == .notAStore }
        #expect(try FileOps.readFile(folder + "/precious.txt") == Array("keep me".utf8), "a refused open touches nothing")

        var options = BackendOptions()
        options.createIfMissing = false
        #expect { _ = try h.open(h.freshPath("absent"), options: options) } throws: { ($0 as? KVError)?.code == .storeNotFound }

        let other = h.freshPath("other")
        try FileOps.makeDirectories(other)
        try StoreDirectory.writeMarker(path: other, backend: h.factory.name == "lmdb" ? "rocksdb" : "lmdb")
        #expect { _ = try h.open(other) } throws: { ($0 as? KVError)?.code == .wrongBackend }

        var tuning = BackendOptions()
        tuning.tuning = ["no_such_option": "1"]
        #expect { _ = try h.open(h.freshPath(), options: tuning) } throws: { ($0 as? KVError)?.code == .invalidArgument }

        let corrupt = h.freshPath("corrupt")
        try FileOps.makeDirectories(corrupt)
        try FileOps.writeFileAtomically(corrupt + "/" + StoreDirectory.markerName, Array("garbage".utf8))
        #expect { _ = try h.open(corrupt) } throws: { ($0 as? KVError)?.code == .corruption }
    }

    static func missingData(_ h: StoreHarness) throws {
        let path = h.freshPath()
        var store = try h.open(path)
        try store.put([1], [1], durable: true)
        try store.close()
        for name in try FileOps.list(path) where name != StoreDirectory.markerName && name != StoreDirectory.lockName {
            try FileOps.removeTree(path + "/" + name)
        }
        #expect { _ = try h.open(path) } throws: { ($0 as? KVError)?.code == .corruption }
        store = try h.open(h.freshPath())
        try store.close()
    }

    static func interruptedCreate(_ h: StoreHarness) throws {
        let path = h.freshPath()
        try FileOps.makeDirectories(path)
        try FileOps.writeFileAtomically(path + "/" + StoreDirectory.lockName, Array("12345\n".utf8))
        try FileOps.writeFileAtomically(path + "/" + StoreDirectory.markerName + ".tmp.999", Array("zerofs-st".utf8))
        let store = try h.open(path)
        try store.put([1], [2], durable: true)
        #expect(try store.get([1]) == [2])
        try store.close()
        #expect(!(try FileOps.list(path)).contains { $0.hasPrefix(StoreDirectory.markerName + ".tmp.") })
    }

    static func symbolicLink(_ h: StoreHarness) throws {
        let real = h.freshPath("real")
        var store = try h.open(real)
        try store.put([7], [7], durable: true)
        try store.close()
        let link = h.freshPath("link")
        guard symlink(real, link) == 0 else { throw KVError.posix("symlink", path: link, errno: errno) }
        store = try h.open(link)
        #expect(try store.get([7]) == [7])
        try store.close()
        #expect { _ = try h.factory.openCheckpoint(at: h.freshPath("absent"), named: "x", options: BackendOptions()) } throws: {
            ($0 as? KVError)?.code == .storeNotFound
        }
        let other = h.freshPath("other")
        try FileOps.makeDirectories(other)
        try StoreDirectory.writeMarker(path: other, backend: "some-other-backend")
        #expect { _ = try h.factory.openCheckpoint(at: other, named: "x", options: BackendOptions()) } throws: {
            ($0 as? KVError)?.code == .wrongBackend
        }
    }

    static func checkpointRace(_ h: StoreHarness) throws {
        let path = h.freshPath()
        let store = try h.open(path)
        defer { try? store.close() }
        for i in 0..<300 { try store.put(TestBytes.key(i), TestBytes.value(i, size: 100)) }
        let expected = try store.entries()
        let wins = Counter()
        let conflicts = Counter()
        let others = Counter()
        runConcurrently(4) { _ in
            do {
                _ = try store.createCheckpoint(named: "contested")
                wins.add()
            } catch let error as KVError where error.code == .alreadyExists {
                conflicts.add()
            } catch {
                others.add()
            }
        }
        #expect(wins.value == 1 && conflicts.value == 3 && others.value == 0)
        let frozen = try h.factory.openCheckpoint(at: path, named: "contested", options: BackendOptions())
        #expect(try frozen.entries() == expected)
        try frozen.close()
        #expect(try store.listCheckpoints().map(\.name) == ["contested"])
    }

    /// A ready marker cut to its first two lines reads like a creation by an older
    /// version; with the backend's files there, the open reports it and removes nothing.
    static func markerWithoutState(_ h: StoreHarness) throws {
        let path = h.freshPath()
        var store = try h.open(path)
        try store.put([7], [7], durable: true)
        try store.close()
        try FileOps.writeFileAtomically(path + "/" + StoreDirectory.markerName, Array("zerofs-store 1\nbackend \(h.factory.name)\n".utf8))
        for create in [false, true] {
            var options = BackendOptions()
            options.createIfMissing = create
            #expect { _ = try h.factory.open(at: path, options: options) } throws: {
                ($0 as? KVError)?.code == .corruption && "\($0)".contains("lost its last line")
            }
        }
        try StoreDirectory.markReady(path: path, backend: h.factory.name)
        store = try h.open(path)
        #expect(try store.get([7]) == [7])
        try store.close()
    }

    static func interruptedBackendCreation(_ h: StoreHarness) throws {
        let path = h.freshPath()
        try FileOps.makeDirectories(path + "/db")
        try FileOps.makeDirectories(path + "/objects/wal")
        try FileOps.writeFileAtomically(path + "/db/half-written", [1, 2, 3])
        try FileOps.writeFileAtomically(path + "/objects/wal/junk", [4, 5])
        try StoreDirectory.writeMarker(path: path, backend: h.factory.name, ready: false)
        var store = try h.open(path)
        try store.put([1], [1], durable: true)
        try store.close()
        #expect(try StoreDirectory.marker(at: path)?.state == .ready)
        store = try h.open(path)
        #expect(try store.get([1]) == [1])
        try store.close()
    }
}
