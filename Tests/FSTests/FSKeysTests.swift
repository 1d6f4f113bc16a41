// The key codec: round trips, sort order (names with 0xFF bytes included), the worked
// examples of Docs/format-fs-keys.md, value formats, and the versioned lookup rule.

@testable import FS
import Engine
import FSTestSupport
import MemoryBackend
import KVTestSupport
import Testing

@Suite struct FSKeysTests {
    func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    @Test func workedExamples() {
        #expect(hex(FSKeys.versioned(FSKeys.inode(2), 1)) == "010000000000000002fffffffffffffffe")
        #expect(hex(FSKeys.versioned(FSKeys.dirEntry(1, Array("a\u{FF}".utf8)), 1))
            == "020000000000000001" + "61c3bf" + "00" + "fffffffffffffffe")
        #expect(hex(FSKeys.versioned(FSKeys.dirScan(1, 3), 1)) == "030000000000000001" + "0000000000000003" + "fffffffffffffffe")
        #expect(hex(FSKeys.cookieCounter(1)) == "040000000000000001")
        #expect(hex(FSKeys.stats(0)) == "050000000000000000")
        #expect(hex(FSKeys.system("format")) == "06" + "666f726d6174")
        #expect(hex(FSKeys.reclaim(7, 1)) == "07" + "0000000000000007" + "0000000000000001")
        #expect(hex(FSKeys.changeIndex(1, 7)) == "0b" + "0000000000000001" + "0000000000000007")
        #expect(hex(FSKeys.versioned(FSKeys.chunk(7, 2), 1)) == "fe0000000000000007" + "0000000000000002" + "fffffffffffffffe")
    }

    @Test func versionSuffixRoundTripsAndNewestSortsFirst() throws {
        for version: UInt64 in [0, 1, 2, 1 << 40, UInt64.max - 1] {
            let key = FSKeys.versioned(FSKeys.inode(42), version)
            let split = try #require(FSKeys.splitVersion(key))
            #expect(split.logical == FSKeys.inode(42) && split.version == version)
        }
        #expect(Bytes.compare(FSKeys.versioned(FSKeys.inode(9), 5), FSKeys.versioned(FSKeys.inode(9), 3)) < 0)
        #expect(Bytes.compare(FSKeys.versioned(FSKeys.inode(9), 1), FSKeys.versioned(FSKeys.inode(10), 9)) < 0)
    }

    @Test func versionsOfOneNameSitTogether() throws {
        let names: [[UInt8]] = [[0x61], [0x61, 0xFF], [0x61, 0x01], [0xFF], [0xFF, 0xFF, 0xFF], [0x61, 0x62], [0x01]]
        var keys: [([UInt8], [UInt8])] = []
        for name in names {
            for version: UInt64 in [1, 2, 9, 1 << 33] { keys.append((name, FSKeys.versioned(FSKeys.dirEntry(5, name), version))) }
            let parsed = try #require(FSKeys.parseDirEntry(FSKeys.dirEntry(5, name)))
            #expect(parsed.parent == 5 && parsed.name == name)
        }
        keys.sort { Bytes.compare($0.1, $1.1) < 0 }
        var finished: Set<[UInt8]> = []
        var current: [UInt8]? = nil
        for (name, _) in keys where name != current {
            #expect(!finished.contains(name), "versions of \(name) are split")
            if let current { finished.insert(current) }
            current = name
        }
        // Entries of one directory never interleave with the next directory's.
        #expect(Bytes.compare(FSKeys.versioned(FSKeys.dirEntry(5, [0xFF, 0xFF]), 1), FSKeys.dirEntryPrefix(6)) < 0)
    }

    @Test func inodeValueRoundTrips() throws {
        var inode = Inode(ino: 77, type: .symlink, mode: 0o4755, uid: 5, gid: 6, now: Timestamp(seconds: -3, nanoseconds: 999_999_999))
        inode.size = 1 << 40
        inode.target = Array("target\u{FF}".utf8)
        inode.shrinkMarks = [ShrinkMark(epoch: 2, size: 100), ShrinkMark(epoch: 3, size: 1 << 33)]
        inode.rdev = 0xABCD
        inode.generation = 99
        let encoded = inode.encode()
        #expect(encoded.first == ValueTag.live.rawValue)
        let decoded = try encoded.withUnsafeBytes { try Inode.decode(ino: 77, $0) }
        #expect(decoded == inode)
        for cut in 0..<encoded.count {
            #expect(throws: FSError.self) { try Array(encoded[0..<cut]).withUnsafeBytes { try Inode.decode(ino: 77, $0) } }
        }
    }

    @Test func chunkValuesCompressOnlyWhenSmaller() throws {
        let zeros = ChunkRecord(epoch: 4, data: [UInt8](repeating: 7, count: 32768))
        let packed = zeros.encode(compress: true)
        #expect(packed[1] == ChunkEncoding.zstd.rawValue && packed.count < 1000)
        #expect(try packed.withUnsafeBytes { try ChunkRecord.decode($0, chunkSize: 32768) }.data == zeros.data)
        let noise = ChunkRecord(epoch: 1, data: TestBytes.value(3, size: 32768))
        let raw = noise.encode(compress: true)
        #expect(raw[1] == ChunkEncoding.raw.rawValue && raw.count == 32768 + 14)
        let back = try raw.withUnsafeBytes { try ChunkRecord.decode($0, chunkSize: 32768) }
        #expect(back.data == noise.data && back.epoch == 1)
        // The probe looks at the first 4 KiB only: a compressible head is enough.
        let mixed = ChunkRecord(epoch: 2, data: [UInt8](repeating: 1, count: 4096) + TestBytes.value(4, size: 4096) + [UInt8](repeating: 2, count: 8192))
        let mixedValue = mixed.encode(compress: true)
        #expect(mixedValue[1] == ChunkEncoding.zstd.rawValue && mixedValue.count < 4096 + 200)
        #expect(try mixedValue.withUnsafeBytes { try ChunkRecord.decode($0, chunkSize: 32768) }.data == mixed.data)
    }

    /// Within one write, the three chunks after one that did not compress are stored raw
    /// without a try; the next is tried again, and a new write starts trying at once.
    @Test func aWriteStoresTheThreeChunksAfterAnIncompressibleOneRaw() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        let file = try f.fs.create(.root, FileSystem.rootInode, n("mixed"), mode: 0o644)
        let text = [UInt8](repeating: 0, count: 32768).indices.map { UInt8(truncatingIfNeeded: $0 % 61 + 32) }
        let first = TestBytes.value(1, size: 32768) + Array(repeatElement(text, count: 7).joined())
        _ = try f.fs.write(.root, file.ino, offset: 0, first)
        _ = try f.fs.write(.root, file.ino, offset: 8 * 32768, Array(repeatElement(text, count: 2).joined()))
        // A chunk of zeros is not a verdict of zstd's: the chunks after it are tried.
        let zeros = [UInt8](repeating: 0, count: 32768)
        _ = try f.fs.write(.root, file.ino, offset: 10 * 32768, zeros + text + text)
        var encodings: [UInt8] = []
        try f.store.scan(.prefix([KeyKind.chunk.rawValue])) { _, value in
            encodings.append(value[1])
            return true
        }
        let (raw, zstd) = (ChunkEncoding.raw.rawValue, ChunkEncoding.zstd.rawValue)
        #expect(encodings == [raw, raw, raw, raw, zstd, zstd, zstd, zstd, zstd, zstd, raw, zstd, zstd])
        #expect(try f.fs.read(.root, file.ino, offset: 0, count: 13 * 32768).data == first + text + text + zeros + text + text)
    }

    /// Versions 1 -> 3 and a sibling 2 (1 -> 2): reads at 3 skip 2's entries; a whiteout hides.
    @Test func versionedLookupRule() throws {
        let harness = StoreHarness(MemoryBackendFactory())
        defer { harness.cleanUp() }
        let store = try harness.open(harness.freshPath())
        let key = FSKeys.inode(10)
        try store.put(FSKeys.versioned(key, 1), [ValueTag.live.rawValue, 1])
        try store.put(FSKeys.versioned(key, 2), [ValueTag.live.rawValue, 2])
        let at3 = VersionedStore(store: store, view: VersionView(head: 3, ancestors: [1]))
        #expect(try at3.get(key) == [ValueTag.live.rawValue, 1], "the sibling's entry is skipped")
        #expect(try VersionedStore(store: store, view: VersionView(head: 2, ancestors: [1])).get(key) == [ValueTag.live.rawValue, 2])
        var batch = FSBatch(view: VersionView(head: 3, ancestors: [1]))
        batch.remove(key)
        try store.write(batch.batch, durable: false)
        #expect(try at3.get(key) == nil, "a whiteout at the head hides the ancestor's entry")
        #expect(try VersionedStore(store: store, view: VersionView(head: 4, ancestors: [1])).get(key) == [ValueTag.live.rawValue, 1])
        #expect(try VersionedStore(store: store, view: VersionView(head: 1)).get(key) == [ValueTag.live.rawValue, 1])
        // Scans see the same answers.
        var seen: [[UInt8]] = []
        try at3.scan(prefix: [KeyKind.inode.rawValue]) { _, value in
            seen.append(Array(value))
            return true
        }
        #expect(seen.isEmpty)
        try VersionedStore(store: store, view: VersionView(head: 2, ancestors: [1])).scan(prefix: [KeyKind.inode.rawValue]) { _, value in
            seen.append(Array(value))
            return true
        }
        #expect(seen == [[ValueTag.live.rawValue, 2]])
    }
}
