// Golden-byte tests of the lsm file formats (Docs/format-sstable.md, format-wal.md,
// format-manifest.md): a format change that breaks these breaks existing stores.

import CCRC32C
import Engine
import KVTestSupport
import ObjectStore
import Testing
@testable import LSMBackend

@Suite struct LSMFormatTests {
    @Test func crc32cMatchesTheStandardVector() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.mask(0) == 0xA282_EAD8)
    }

    /// The fast CRC (folded where the processor can) and the three-lane one against the
    /// byte table: every length around the fold's and the lanes' thresholds, random
    /// lengths, offsets (alignment) and starting CRCs, and chaining.
    @Test func fastCRC32CMatchesTheTable() {
        let seed = TestSeed.resolve("fastCRC32CMatchesTheTable")
        // Where the processor cannot fold, the fast CRC is the three lanes: say so.
        print("[fastCRC32CMatchesTheTable] folding on this processor: \(zerofs_crc32c_folds() != 0 ? "yes" : "no, the three lanes are tested twice")")
        var random = SeededGenerator(seed: seed)
        let data = (0..<200_000).map { _ in UInt8.random(in: 0...255, using: &random) }
        var lengths = Array(0..<70) + Array(240..<600) + Array(760..<780) + Array(24_570..<24_590) + [3 * 768, 3 * 24_576, 100_000, 199_990]
        for _ in 0..<300 { lengths.append(Int.random(in: 0..<199_000, using: &random)) }
        data.withUnsafeBytes { raw in
            for length in lengths {
                let offset = Int.random(in: 0..<8, using: &random)
                let start = UInt32.random(in: 0...UInt32.max, using: &random)
                let fast = zerofs_crc32c(start, raw.baseAddress! + offset, length)
                let table = zerofs_crc32c_portable(start, raw.baseAddress! + offset, length)
                #expect(fast == table, "length \(length) offset \(offset) start \(start); ZEROFS_SEED=\(seed)")
                let lanes = zerofs_crc32c_lanes(start, raw.baseAddress! + offset, length)
                #expect(lanes == table, "lanes: length \(length) offset \(offset) start \(start); ZEROFS_SEED=\(seed)")
                let cut = length / 3
                let chained = zerofs_crc32c(zerofs_crc32c(start, raw.baseAddress! + offset, cut), raw.baseAddress! + offset + cut, length - cut)
                #expect(chained == fast, "chained at \(cut) of \(length); ZEROFS_SEED=\(seed)")
                // Combined from the CRCs of the two parts, each started afresh.
                let first = zerofs_crc32c(0, raw.baseAddress! + offset, cut)
                let second = zerofs_crc32c(0, raw.baseAddress! + offset + cut, length - cut)
                let whole = zerofs_crc32c(0, raw.baseAddress! + offset, length)
                #expect(CRC32C.combine(first, second, length: length - cut) == whole, "combined at \(cut) of \(length); ZEROFS_SEED=\(seed)")
            }
        }
    }

    /// A record's header is the same whether or not the CRCs of its large values are
    /// taken in the same pass, and those CRCs are the values' own.
    @Test func recordCRCsAssembledFromValueCRCsMatch() {
        let seed = TestSeed.resolve("recordCRCsAssembledFromValueCRCsMatch")
        var random = SeededGenerator(seed: seed)
        for _ in 0..<50 {
            var batch = WriteBatch()
            for i in 0..<Int.random(in: 1...12, using: &random) {
                let size = Int.random(in: 0..<3, using: &random) == 0 ? Int.random(in: 0...40, using: &random) : Int.random(in: 1000...40_000, using: &random)
                switch Int.random(in: 0..<6, using: &random) {
                case 0: batch.delete(TestBytes.key(i))
                case 1: batch.deleteRange(from: TestBytes.key(i), to: TestBytes.key(i + 1))
                default: batch.put(TestBytes.key(i), (0..<size).map { _ in UInt8.random(in: 0...255, using: &random) })
                }
            }
            let seq = UInt64.random(in: 1...1 << 40, using: &random)
            let minBytes = Int.random(in: 1...20_000, using: &random)
            var crcs: [(offset: Int, crc: UInt32)] = []
            let assembled = WALFormat.recordHeader(seq: seq, batch: batch, valuesFrom: minBytes, crcs: &crcs)
            #expect(assembled == WALFormat.recordHeader(seq: seq, batch: batch), "ZEROFS_SEED=\(seed)")
            var expected: [(offset: Int, crc: UInt32)] = []
            batch.rep.withUnsafeBytes { rep in
                batch.forEach { op, _, value in
                    if op == .put, value.count >= minBytes { expected.append((value.baseAddress! - rep.baseAddress!, CRC32C.checksum(value))) }
                }
            }
            #expect(crcs.map(\.offset) == expected.map(\.offset) && crcs.map(\.crc) == expected.map(\.crc), "ZEROFS_SEED=\(seed)")
        }
    }

    @Test func walRecordBytes() throws {
        var batch = WriteBatch()
        batch.put(Array("a".utf8), Array("xy".utf8))
        var buffer = WALFormat.header()
        WALFormat.appendRecord(&buffer, seq: 7, batch: batch)
        // header: "ZWAL" magic, version 3
        #expect(Array(buffer[0..<8]) == [0x5A, 0x57, 0x41, 0x4C, 0x03, 0x00, 0x00, 0x00])
        // length 14 (8 seq + 6 batch), then the masked CRC of seq + batch
        #expect(Array(buffer[8..<12]) == [0x0E, 0x00, 0x00, 0x00])
        let crc = CRC32C.mask(CRC32C.checksum(Array(buffer[16...])))
        #expect(Array(buffer[12..<16]) == [UInt8(crc & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 24)])
        #expect(Array(buffer[16..<24]) == [7, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(buffer[24...]) == [0x01, 0x01, 0x61, 0x02, 0x78, 0x79])
        let one = try WALFormat.decode(buffer, name: "wal/x")
        #expect(!one.torn && one.records.count == 1 && one.records[0].seq == 7 && one.records[0].batch == batch)
        #expect(!one.marked && one.marking)
        // A cut-off tail is torn, not an error; what came before survives.
        WALFormat.appendRecord(&buffer, seq: 8, batch: batch)
        let kept = try WALFormat.decode(Array(buffer.dropLast(3)), name: "wal/x")
        #expect(kept.torn && kept.records.count == 1)
        // Zeros after the records are reserved space, not a tear; a version 1 or 2 object
        // reads the same way (and its writer put no sync markers in).
        let reserved = try WALFormat.decode(buffer + [UInt8](repeating: 0, count: 4099), name: "wal/x")
        #expect(!reserved.torn && reserved.records.count == 2)
        for old: UInt8 in [1, 2] {
            var earlier = buffer
            earlier[4] = old
            let contents = try WALFormat.decode(earlier, name: "wal/x")
            #expect(contents.records.count == 2 && !contents.marking)
        }
        // A zero length word with something after it is damage: torn, as a cut-off tail is.
        var damaged = buffer + [UInt8](repeating: 0, count: 64)
        damaged[damaged.count - 5] = 9
        let before = try WALFormat.decode(damaged, name: "wal/x")
        #expect(before.torn && before.records.count == 2)
        // A version this code does not know is refused by name.
        var future = buffer
        future[4] = 4
        #expect(throws: KVError.self) { try WALFormat.decode(future, name: "wal/x") }
    }

    @Test func syncMarkerBytes() throws {
        // length 8 (the seq alone), the masked CRC-32C of eight zero bytes, seq 0
        #expect(WALFormat.syncMarker == [0x08, 0, 0, 0, 0x29, 0x03, 0x98, 0x07, 0, 0, 0, 0, 0, 0, 0, 0])
        var batch = WriteBatch()
        batch.put(Array("a".utf8), Array("xy".utf8))
        var buffer = WALFormat.header()
        WALFormat.appendRecord(&buffer, seq: 7, batch: batch)
        buffer += WALFormat.syncMarker
        WALFormat.appendRecord(&buffer, seq: 8, batch: batch)
        // The marker is no record; the records around it are read as ever.
        let contents = try WALFormat.decode(buffer, name: "wal/x")
        #expect(contents.marked && !contents.torn && contents.records.map(\.seq) == [7, 8])
        // A reader of version 2 sees an empty batch at seq 0: nothing to replay.
        #expect(try WriteBatch(rep: []).count == 0)
    }

    @Test func blockBytesUsePrefixCompressionAndRestarts() {
        var block = BlockBuilder()
        let entries: [(String, String)] = [("apple", "1"), ("apply", "22")]
        for (k, v) in entries {
            Array(k.utf8).withUnsafeBytes { key in Array(v.utf8).withUnsafeBytes { block.add(key, $0, isDelete: false) } }
        }
        Array("apt".utf8).withUnsafeBytes { key in block.add(key, UnsafeRawBufferPointer(start: nil, count: 0), isDelete: true) }
        let bytes = block.finish()
        #expect(bytes == [
            0x00, 0x05, 0x02, 0x61, 0x70, 0x70, 0x6C, 0x65, 0x31,  // shared 0, "apple", value "1"
            0x04, 0x01, 0x04, 0x79, 0x32, 0x32,  // shared 4 "appl", "y", value "22"
            0x02, 0x01, 0x01, 0x74,  // shared 2 "ap", "t", deletion (tag 1)
            0x00, 0x00, 0x00, 0x00,  // restart offset 0
            0x01, 0x00, 0x00, 0x00,  // one restart
        ])
    }

    /// The worked examples of format-sstable.md and format-manifest.md, every byte: a
    /// flush of apple = 1, apply = 22 and a deletion of apt with the default options.
    @Test func workedExampleTableBytes() throws {
        var builder = TableBuilder(options: TableOptions())
        for (key, value, delete) in [("apple", "1", false), ("apply", "22", false), ("apt", "", true)] {
            try Array(key.utf8).withUnsafeBytes { k in try Array(value.utf8).withUnsafeBytes { try builder.add(k, $0, isDelete: delete) } }
        }
        let (bytes, meta) = try builder.finish(id: 1)
        #expect(bytes == [
            0x00, 0x05, 0x02, 0x61, 0x70, 0x70, 0x6C, 0x65, 0x31, 0x04, 0x01, 0x04, 0x79, 0x32, 0x32, 0x02,
            0x01, 0x01, 0x74, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x78, 0x8A, 0xA1, 0xA0,
            0x98, 0x44, 0x05, 0x12, 0x85, 0x4C, 0x30, 0x10, 0x06, 0x00, 0x75, 0x05, 0xCF, 0x1B, 0x00, 0x00,
            0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0xC0, 0xF2, 0xA1, 0xB0, 0x00, 0x03, 0x04, 0x61, 0x70,
            0x74, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x3D, 0x7F, 0xE9, 0x37,
            0x03, 0x00, 0x05, 0x61, 0x70, 0x70, 0x6C, 0x65, 0x03, 0x61, 0x70, 0x74, 0x00, 0x08, 0x00, 0x26,
            0xDF, 0x63, 0x75, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0E, 0x00, 0x00, 0x00, 0x2E,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0D, 0x00, 0x00, 0x00, 0x3B, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x15, 0x00, 0x00, 0x00, 0x50, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x13,
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x54, 0x53, 0x53, 0x46, 0x4F, 0x52, 0x45, 0x5A,
        ])
        #expect(meta.size == 159)
        // The manifest of format-manifest.md's example, recording this table after a flush.
        var m = Manifest()
        m.writerEpoch = 1
        m.nextTableID = 2
        m.nextWALID = 3
        m.walReplayFrom = 3
        m.lastSeq = 3
        m.levels = [[meta]]
        m.fences = [1]
        #expect(m.encode() == [
            0x5A, 0x4D, 0x41, 0x4E, 0x01, 0x00, 0x00, 0x00, 0x1B, 0x00, 0x00, 0x00, 0x2C, 0x04, 0x7F, 0xFA,
            0x01, 0x02, 0x03, 0x03, 0x03, 0x01, 0x01, 0x01, 0x9F, 0x01, 0x05, 0x61, 0x70, 0x70, 0x6C, 0x65,
            0x03, 0x61, 0x70, 0x74, 0x03, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00,
        ])
    }

    @Test func tableFooterAndRoundTrip() throws {
        var builder = TableBuilder(options: TableOptions())
        for i in 0..<1000 {
            let key = Array(String(format: "key%05d", i).utf8)
            try key.withUnsafeBytes { k in try Array("v\(i)".utf8).withUnsafeBytes { try builder.add(k, $0, isDelete: i % 100 == 0) } }
        }
        builder.addTombstone(Array("key00500".utf8), Array("key00510".utf8))
        let (bytes, meta) = try builder.finish(id: 9)
        // footer ends with format version 1 and the magic "ZEROFSST" (little-endian)
        #expect(Array(bytes.suffix(12)) == [0x01, 0x00, 0x00, 0x00, 0x54, 0x53, 0x53, 0x46, 0x4F, 0x52, 0x45, 0x5A])
        #expect(meta.entries == 1000 && meta.tombstones == 1 && meta.smallest == Array("key00000".utf8))
        let table = try TableReader(meta: meta, object: BytesObject(name: "sst/9", bytes: bytes), cache: BlockCache(capacity: 1 << 20))
        for i in [1, 250, 505, 999] {
            let found = try Array(String(format: "key%05d", i).utf8).withUnsafeBytes { try table.get($0) }
            guard case .value(let v) = found else {
                Issue.record("key \(i) not found")
                continue
            }
            #expect(v == Array("v\(i)".utf8))
        }
        if case .deleted = try Array("key00100".utf8).withUnsafeBytes({ try table.get($0) }) {} else { Issue.record("deletion lost") }
        // The table's own entries win over its own tombstone; the tombstone covers
        // [key00500, key00510) for older tables.
        #expect(Array("key00505".utf8).withUnsafeBytes { table.tombstoneCovers($0) })
        #expect(!Array("key00510".utf8).withUnsafeBytes { table.tombstoneCovers($0) })
        // A footer whose block offsets are damaged (beyond Int.max, or just past the end)
        // is corruption, not a trap.
        let footerStart = bytes.count - TableFormat.footerSize
        for offset: UInt64 in [UInt64.max, UInt64(1) << 63, UInt64(Int.max), UInt64(bytes.count)] {
            var damaged = bytes
            withUnsafeBytes(of: offset.littleEndian) { for (i, byte) in $0.enumerated() { damaged[footerStart + i] = byte } }
            do {
                _ = try TableReader(meta: meta, object: BytesObject(name: "sst/9", bytes: damaged), cache: BlockCache(capacity: 1 << 20))
                Issue.record("a footer pointing at \(offset) was taken")
            } catch {
                #expect((error as? KVError)?.code == .corruption, "\(error)")
            }
        }
    }

    /// Point reads answered again from the table's row cache give what the blocks give:
    /// every key read twice (values, deletes, absent keys, a value too large to remember),
    /// across enough keys that slots collide and replace one another.
    @Test func rowCacheAnswersAsTheBlocksDo() throws {
        var builder = TableBuilder(options: TableOptions())
        let large = [UInt8](repeating: 7, count: RowCache.largestValue + 1)
        for i in 0..<2000 {
            let key = Array(String(format: "key%05d", i).utf8)
            let value = i == 1234 ? large : Array("v\(i)".utf8)
            try key.withUnsafeBytes { k in try value.withUnsafeBytes { try builder.add(k, $0, isDelete: i % 7 == 0) } }
        }
        let (bytes, meta) = try builder.finish(id: 3)
        let table = try TableReader(meta: meta, object: BytesObject(name: "sst/3", bytes: bytes), cache: BlockCache(capacity: 1 << 20))
        func describe(_ found: Lookup<[UInt8]>) -> String {
            switch found {
            case .absent: "absent"
            case .deleted: "deleted"
            case .value(let v): "value \(v.count) \(v.prefix(8))"
            }
        }
        for round in 0..<2 {
            for i in stride(from: 0, to: 2100, by: 1) {
                let key = Array(String(format: "key%05d", i).utf8)
                let found = describe(try key.withUnsafeBytes { try table.get($0) })
                let expected = i >= 2000 ? "absent" : i % 7 == 0 ? "deleted"
                    : describe(.value(i == 1234 ? large : Array("v\(i)".utf8)))
                #expect(found == expected, "round \(round), key \(i)")
            }
        }
    }

    /// The store's row caches share one budget: what passes it is not remembered, a
    /// replaced entry gives its bytes back, and so does a table that goes.
    @Test func rowCachesStayWithinTheirStoresBudget() throws {
        let budget = RowBudget(limit: RowCache.slotsBytes + 10 * (8 + 2 + RowCache.entryOverhead))
        func key(_ i: Int) -> [UInt8] { Array(String(format: "key%05d", i).utf8) }
        func remember(_ cache: RowCache, _ i: Int, _ value: [UInt8]) {
            key(i).withUnsafeBytes { k in value.withUnsafeBytes { cache.remember(k, hash: UInt64(i), value: $0) } }
        }
        func found(_ cache: RowCache, _ i: Int) -> Bool { key(i).withUnsafeBytes { cache.find($0, hash: UInt64(i)) } != nil }
        var first: RowCache? = RowCache(budget: budget)
        for i in 0..<20 { remember(first!, i, [1, 2]) }
        #expect(budget.bytes <= budget.limit)
        #expect((0..<10).allSatisfy { found(first!, $0) } && !(10..<20).contains { found(first!, $0) })
        // A second table: no room for its slots.
        let second = RowCache(budget: budget)
        remember(second, 0, [1, 2])
        #expect(!found(second, 0))
        // A smaller value in a slot already charged fits; the difference comes back.
        let before = budget.bytes
        remember(first!, 3, [1])
        #expect(found(first!, 3) && budget.bytes == before - 1)
        // The first table goes: everything it held comes back, and the second has room.
        first = nil
        #expect(budget.bytes == 0)
        remember(second, 0, [1, 2])
        #expect(found(second, 0))
    }

    @Test func manifestRoundTripsAndIsChecked() throws {
        var m = Manifest()
        m.writerEpoch = 3
        m.levels = [[TableMeta(id: 5, size: 100, smallest: [1], largest: [9], entries: 4, tombstones: 1, largestExclusive: true)], []]
        m.checkpoints = [CheckpointRecord(name: "daily", manifestID: 12, createdNanos: 42, expiresNanos: 0)]
        m.fences = [17]
        let bytes = m.encode()
        #expect(Array(bytes[0..<8]) == [0x5A, 0x4D, 0x41, 0x4E, 0x01, 0x00, 0x00, 0x00])
        #expect(try Manifest.decode(bytes, name: "m") == m)
        var damaged = bytes
        damaged[damaged.count - 2] ^= 0x40
        #expect { _ = try Manifest.decode(damaged, name: "manifest/x") } throws: {
            ($0 as? KVError)?.code == .corruption && ($0 as? KVError)?.path == "manifest/x"
        }
    }
}
