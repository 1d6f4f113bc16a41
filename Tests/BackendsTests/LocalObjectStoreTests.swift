// Appendable objects in a local folder (WAL segments): what appends of every size and
// alignment leave in the file, written through the page cache and with direct I/O.

import Engine
import Foundation
import KVTestSupport
@testable import ObjectStore
import Testing
import Workloads

@Suite struct LocalObjectStoreTests {
    @Test(arguments: [false, true])
    func appendsLeaveTheirBytesThenZerosAndSealCutsTheZeros(direct: Bool) throws {
        let seed = TestSeed.resolve("appendsLeaveTheirBytesThenZerosAndSealCutsTheZeros")
        var random = SeededGenerator(seed: seed)
        let root = try temporaryRoot()
        defer { try? FileOps.removeTree(root) }
        let store = try LocalObjectStore(root: root, directAppends: direct)
        let header: [UInt8] = Array("ZWALtest".utf8)
        let object = try #require(try store.createAppendable("wal/1.wal", header: header))
        let file = root + "/wal/1.wal"
        var expected = header
        // Appends take slices of this pool at random offsets.
        let pool = (0..<(3 << 17)).flatMap { _ in withUnsafeBytes(of: random.next()) { Array($0) } }
        // Sizes around the 4 KiB block, the 64 KiB gathering limit and the 1 MiB stage.
        let sizes = [0, 1, 7, 100, 4088, 4095, 4096, 4097, 65535, 65536, 70000, 1 << 20, (1 << 20) + 3, 2_500_000]
        for step in 0..<48 {
            let size = sizes[Int.random(in: 0..<sizes.count, using: &random)]
            let from = Int.random(in: 0...(pool.count - size), using: &random)
            let bytes = Array(pool[from..<(from + size)])
            let sync = Bool.random(using: &random)
            if Bool.random(using: &random) {
                try bytes.withUnsafeBytes { try object.append($0, sync: sync) }
            } else {
                // The same bytes as up to four pieces.
                var cuts = (0..<3).map { _ in Int.random(in: 0...size, using: &random) }.sorted()
                cuts = [0] + cuts + [size]
                try object.append(pieces: (0..<4).map { Array(bytes[cuts[$0]..<cuts[$0 + 1]]) }, sync: sync)
            }
            expected += bytes
            if step % 8 == 7 {
                let content = try FileOps.readFile(file)
                #expect(content.count >= expected.count, "seed \(seed)")
                #expect(Array(content.prefix(expected.count)) == expected, "seed \(seed), step \(step)")
                #expect(content.dropFirst(expected.count).allSatisfy { $0 == 0 }, "seed \(seed), step \(step)")
            }
        }
        object.seal()
        #expect(try FileOps.readFile(file) == expected, "seed \(seed)")
        #expect(throws: KVError.self) { try object.append(pieces: [[1]], sync: false) }
    }

    /// A table block the page cache holds is read without telling the worker pool (which
    /// would wake a thread): `readIfReady` reads it at once, with the bytes `read` gives;
    /// a range past the end is refused as `read` refuses it.
    @Test func readIfReadyReadsWhatThePageCacheHolds() throws {
        let seed = TestSeed.resolve("readIfReadyReadsWhatThePageCacheHolds")
        var random = SeededGenerator(seed: seed)
        let root = try temporaryRoot()
        defer { try? FileOps.removeTree(root) }
        let store = try LocalObjectStore(root: root)
        let bytes = (0..<40_000).map { _ in UInt8.random(in: 0...255, using: &random) }
        try store.put("sst/1.sst", bytes)
        let object = try #require(try store.open("sst/1.sst"))
        for (offset, length) in [(0, 4096), (4093, 9000), (39_000, 1000), (12_345, 0)] {
            var ready = [UInt8](repeating: 0, count: length)
            // Just written, so in the page cache: ready on any file system that takes RWF_NOWAIT.
            #expect(try ready.withUnsafeMutableBytes { try object.readIfReady(offset: offset, into: $0) }, "seed \(seed)")
            let same = ready == Array(bytes[offset..<(offset + length)])
            #expect(same, "seed \(seed), offset \(offset): other bytes than the object's")
        }
        var past = [UInt8](repeating: 0, count: 10)
        #expect(throws: KVError.self) { try past.withUnsafeMutableBytes { try object.readIfReady(offset: 39_995, into: $0) } }
        // Memory objects are always ready.
        let memory = BytesObject(name: "m", bytes: bytes)
        var copy = [UInt8](repeating: 0, count: 100)
        #expect(try copy.withUnsafeMutableBytes { try memory.readIfReady(offset: 7, into: $0) })
        let same = copy == Array(bytes[7..<107])
        #expect(same, "seed \(seed): other bytes than the memory object's")
    }

    /// A vectored read fills its parts in order with the object's bytes from its offset:
    /// empty parts, more parts than one `preadv` takes (1,024), and the default of other
    /// objects (a read per part); a read past the end is refused and fills nothing.
    @Test func aVectoredReadFillsItsPartsInOrder() throws {
        let seed = TestSeed.resolve("aVectoredReadFillsItsPartsInOrder")
        var random = SeededGenerator(seed: seed)
        let root = try temporaryRoot()
        defer { try? FileOps.removeTree(root) }
        let store = try LocalObjectStore(root: root)
        let bytes = (0..<200_000).map { _ in UInt8.random(in: 0...255, using: &random) }
        try store.put("wal/1.wal", bytes)
        let file = try #require(try store.open("wal/1.wal"))
        let memory = BytesObject(name: "m", bytes: bytes)
        for parts in [1, 3, 40, 1500] {
            let sizes = (0..<parts).map { _ in Bool.random(using: &random) ? 0 : Int.random(in: 1...100, using: &random) }
            let offset = Int.random(in: 0...(bytes.count - sizes.reduce(0, +)), using: &random)
            for object in [file, memory] as [any ReadableObject] {
                var room = [UInt8](repeating: 0, count: sizes.reduce(0, +))
                try room.withUnsafeMutableBytes { raw in
                    var at = 0
                    var buffers: [UnsafeMutableRawBufferPointer] = []
                    for size in sizes {
                        buffers.append(UnsafeMutableRawBufferPointer(rebasing: raw[at..<(at + size)]))
                        at += size
                    }
                    try object.read(offset: offset, into: buffers)
                }
                let same = room == Array(bytes[offset..<(offset + room.count)])
                #expect(same, "seed \(seed), \(parts) parts at \(offset) from \(object.name)")
            }
        }
        var past = [UInt8](repeating: 7, count: 20)
        #expect(throws: KVError.self) {
            try past.withUnsafeMutableBytes { raw in
                try file.read(offset: bytes.count - 10, into: [UnsafeMutableRawBufferPointer(rebasing: raw[..<10]), UnsafeMutableRawBufferPointer(rebasing: raw[10...])])
            }
        }
        #expect(past.allSatisfy { $0 == 7 })
    }

    /// Garbage collection may delete a WAL segment as soon as it is named (its records are
    /// in a committed table); the writer must not fail on it.
    @Test(arguments: [false, true])
    func anAppendableWhoseNameIsDeletedAtOnceStillTakesAppends(direct: Bool) throws {
        let root = try temporaryRoot()
        defer { try? FileOps.removeTree(root) }
        let store = try LocalObjectStore(root: root, directAppends: direct)
        let object = try #require(try store.createAppendable("wal/2.wal", header: [1, 2, 3, 4]))
        try store.delete("wal/2.wal")
        try object.append(pieces: [[5, 6], [7]], sync: true)
        object.seal()
        #expect(try store.get("wal/2.wal") == nil)
        #expect(try store.createAppendable("wal/2.wal", header: [9]) != nil)
        #expect(try store.createAppendable("wal/2.wal", header: [9]) == nil)
    }

    /// Writers committed together (a memtable flush's tables): every object in place with
    /// its bytes, no temporary file left, and objects of other names untouched.
    @Test func writersCommittedTogetherAreAllInPlace() throws {
        let root = try temporaryRoot()
        defer { try? FileOps.removeTree(root) }
        let store = try LocalObjectStore(root: root)
        try store.put("sst/9.sst", [9])
        let names = ["sst/1.sst", "sst/2.sst", "other/3.sst"]
        // Sizes below and above the 1 MiB at which a writer starts its writeback.
        let contents = names.indices.map { i in (0..<((i + 1) * 700_000)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) } }
        let writers = try names.map { try store.makeWriter($0) }
        for (writer, bytes) in zip(writers, contents) {
            try bytes.withUnsafeBytes { try writer.append(UnsafeRawBufferPointer(rebasing: $0[..<1000])) }
            try bytes.withUnsafeBytes { try writer.append(UnsafeRawBufferPointer(rebasing: $0[1000...])) }
        }
        for name in names { #expect(try store.get(name) == nil) }
        try store.commit(writers)
        for (name, bytes) in zip(names, contents) { #expect(try store.get(name) == bytes) }
        #expect(try store.get("sst/9.sst") == [9])
        let left = try FileOps.list(root + "/sst") + FileOps.list(root + "/other")
        #expect(left.filter { $0.contains(".tmp.") }.isEmpty)
        // Committed writers are closed: a second commit is an error, not a second rename.
        #expect(throws: KVError.self) { try store.commit(writers) }
    }

    /// A segment is readable whole at once, and its first sync (which also makes its name
    /// durable, `createAppendable`) leaves its bytes as they were.
    @Test func aNewSegmentIsWholeBeforeAndAfterItsFirstSync() throws {
        let root = try temporaryRoot()
        defer { try? FileOps.removeTree(root) }
        let store = try LocalObjectStore(root: root)
        let object = try #require(try store.createAppendable("wal/5.wal", header: [1, 2, 3]))
        #expect(try store.get("wal/5.wal") == [1, 2, 3])
        try object.append(pieces: [[4, 5]], sync: false)
        #expect(try store.get("wal/5.wal") == [1, 2, 3, 4, 5])
        try object.sync()
        try object.sync()
        try store.syncObject("wal/5.wal")
        object.seal()
        #expect(try store.get("wal/5.wal") == [1, 2, 3, 4, 5])
    }

    /// What decides the order of a segment's first sync: whether a segment linked before
    /// it (a lower id) is still not covered by a sync of the folder.
    @Test func aFirstSyncKnowsWhetherAnEarlierNameIsNotDurableYet() throws {
        let root = try temporaryRoot()
        defer { try? FileOps.removeTree(root) }
        let store = try LocalObjectStore(root: root)
        let first = try #require(try store.createAppendable("wal/01.wal", header: [1]))
        let second = try #require(try store.createAppendable("wal/02.wal", header: [2]))
        let third = try #require(try store.createAppendable("wal/03.wal", header: [3]))
        #expect(!store.hasUnsyncedLink(before: root + "/wal/01.wal"))
        #expect(store.hasUnsyncedLink(before: root + "/wal/02.wal"))
        // The second's first sync syncs the folder, which covers every name linked so far.
        try second.sync()
        #expect(!store.hasUnsyncedLink(before: root + "/wal/03.wal"))
        let fourth = try #require(try store.createAppendable("wal/04.wal", header: [4]))
        #expect(store.hasUnsyncedLink(before: root + "/wal/05.wal"))
        // A deleted name needs no sync.
        try store.delete("wal/04.wal")
        #expect(!store.hasUnsyncedLink(before: root + "/wal/05.wal"))
        try first.sync()
        try third.sync()
        for object in [first, second, third, fourth] { object.seal() }
        #expect(try store.get("wal/03.wal") == [3])
    }

    /// A new empty folder under /tmp; the test removes it.
    private func temporaryRoot() throws -> String {
        var template = Array("/tmp/zerofs-test-XXXXXX".utf8CString)
        return try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
    }
}
