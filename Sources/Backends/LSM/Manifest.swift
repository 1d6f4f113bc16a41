// The manifest (Docs/format-manifest.md): the complete state of the store in one
// immutable object "manifest/<id>", committed with put-if-absent at id + 1:
//
//   magic "ZMAN" (fixed32 0x4E414D5A) | format version (fixed32 1, 2 or 3) | body length (fixed32) |
//   masked CRC-32C of the body (fixed32) | body
//   body: writer epoch, next table id, next WAL id, WAL replay start, last sequence number
//         (varints) | level count, then per level: table count, then per table: id, size,
//         smallest key, largest key, entries, tombstones, largest-is-exclusive (0/1) |
//         checkpoint count, then per checkpoint: name, pinned manifest id, created (ns),
//         expires (ns, 0 = never) | fence count, then fence WAL ids (never collected) |
//         torn count, then ids of WAL objects found torn at an open (replay accepts them) |
//         (versions 2 and 3) per table, in the order above: value reference count, then
//         per reference: WAL segment id, bytes pointed at. Version 3: table ids may be 2^24
//         or more

import Engine

struct CheckpointRecord: Sendable, Equatable {
    var name: String
    var manifestID: UInt64
    var createdNanos: UInt64
    var expiresNanos: UInt64
}

struct Manifest: Sendable, Equatable {
    static let magic: UInt32 = 0x4E41_4D5A
    /// Version 2 adds the tables' value references. A manifest without any is written as
    /// version 1, as before they existed. Version 3 has version 2's layout and says table
    /// ids may be 2^24 or more (each writer epoch hands out ids from epoch × 2^40): a
    /// binary from before it keyed its block cache by 24 bits of the table id and would
    /// serve one table's blocks for another's, so it must refuse the store. All three are
    /// read.
    static let version: UInt32 = 3
    /// Table ids from here on need version 3.
    static let wideTableIDs: UInt64 = 1 << 24

    var writerEpoch: UInt64 = 0
    var nextTableID: UInt64 = 1
    var nextWALID: UInt64 = 1
    /// WAL objects from this id on hold writes not yet in tables.
    var walReplayFrom: UInt64 = 1
    var lastSeq: UInt64 = 0
    /// levels[0] is L0, newest table first; deeper levels sorted by smallest key.
    var levels: [[TableMeta]] = [[]]
    var checkpoints: [CheckpointRecord] = []
    /// WAL ids of the fences written by recent writers at open; GC keeps these objects so
    /// an older writer's next WAL write always meets one.
    var fences: [UInt64] = []
    static let maxFences = 32
    /// WAL objects at or after the replay start that an open found torn (cut short by a
    /// crash); replay accepts them even when newer WAL objects follow.
    var tornWAL: [UInt64] = []

    static func name(_ id: UInt64) -> String { objectName("manifest/", id, ".manifest") }

    static func id(of name: String) -> UInt64? {
        guard name.hasPrefix("manifest/"), name.hasSuffix(".manifest") else { return nil }
        return UInt64(name.dropFirst(9).dropLast(9))
    }

    var tableIDs: Set<UInt64> { Set(levels.flatMap { $0.map(\.id) }) }

    /// The WAL segments the tables point into.
    var valueSegments: Set<UInt64> { Set(levels.flatMap { $0.flatMap { $0.valueRefs.map(\.segment) } }) }

    func encode() -> [UInt8] {
        var body: [UInt8] = []
        body.appendVarint(writerEpoch)
        body.appendVarint(nextTableID)
        body.appendVarint(nextWALID)
        body.appendVarint(walReplayFrom)
        body.appendVarint(lastSeq)
        body.appendVarint(levels.count)
        for level in levels {
            body.appendVarint(level.count)
            for t in level {
                body.appendVarint(t.id)
                body.appendVarint(t.size)
                body.appendBytes(t.smallest)
                body.appendBytes(t.largest)
                body.appendVarint(t.entries)
                body.appendVarint(t.tombstones)
                body.appendVarint(t.largestExclusive ? 1 : 0)
            }
        }
        body.appendVarint(checkpoints.count)
        for c in checkpoints {
            body.appendString(c.name)
            body.appendVarint(c.manifestID)
            body.appendVarint(c.createdNanos)
            body.appendVarint(c.expiresNanos)
        }
        body.appendVarint(fences.count)
        for f in fences { body.appendVarint(f) }
        body.appendVarint(tornWAL.count)
        for t in tornWAL { body.appendVarint(t) }
        let wide = nextTableID >= Self.wideTableIDs || levels.contains { $0.contains { $0.id >= Self.wideTableIDs } }
        let pointing = wide || levels.contains { $0.contains { !$0.valueRefs.isEmpty } }
        for level in levels where pointing {
            for t in level {
                body.appendVarint(t.valueRefs.count)
                for ref in t.valueRefs {
                    body.appendVarint(ref.segment)
                    body.appendVarint(ref.bytes)
                }
            }
        }
        var bytes: [UInt8] = []
        bytes.appendFixed32(Self.magic)
        bytes.appendFixed32(wide ? 3 : pointing ? 2 : 1)
        bytes.appendFixed32(UInt32(body.count))
        bytes.appendFixed32(CRC32C.mask(CRC32C.checksum(body)))
        bytes.append(contentsOf: body)
        return bytes
    }

    static func decode(_ bytes: [UInt8], name: String) throws -> Manifest {
        try bytes.withUnsafeBytes { raw in
            var header = ByteReader(raw, what: name)
            guard try header.fixed32() == magic else { throw KVError(.corruption, "not a manifest (bad magic number)", path: name) }
            let found = try header.fixed32()
            guard (1...version).contains(found) else { throw KVError(.unsupportedFormat, "manifest format \(found) is not 1 to \(version)", path: name) }
            let length = Int(try header.fixed32())
            let crc = try header.fixed32()
            guard 16 + length == raw.count else { throw KVError(.corruption, "manifest length does not match", path: name) }
            let body = UnsafeRawBufferPointer(rebasing: raw[16...])
            guard CRC32C.mask(CRC32C.checksum(body)) == crc else { throw KVError(.corruption, "manifest checksum mismatch", path: name) }
            var r = ByteReader(body, what: name)
            var m = Manifest()
            m.writerEpoch = try r.varint()
            m.nextTableID = try r.varint()
            m.nextWALID = try r.varint()
            m.walReplayFrom = try r.varint()
            m.lastSeq = try r.varint()
            let levelCount = try r.int()
            guard levelCount >= 1, levelCount <= 64 else { throw KVError(.corruption, "manifest holds \(levelCount) levels", path: name) }
            m.levels = []
            for _ in 0..<levelCount {
                var level: [TableMeta] = []
                for _ in 0..<(try r.int()) {
                    level.append(TableMeta(id: try r.varint(), size: try r.int(), smallest: try r.byteArray(), largest: try r.byteArray(),
                                           entries: try r.int(), tombstones: try r.int(), largestExclusive: try r.varint() == 1))
                }
                m.levels.append(level)
            }
            for _ in 0..<(try r.int()) {
                m.checkpoints.append(CheckpointRecord(name: try r.string(), manifestID: try r.varint(),
                                                      createdNanos: try r.varint(), expiresNanos: try r.varint()))
            }
            for _ in 0..<(try r.int()) { m.fences.append(try r.varint()) }
            for _ in 0..<(try r.int()) { m.tornWAL.append(try r.varint()) }
            if found >= 2 {
                for level in m.levels.indices {
                    for t in m.levels[level].indices {
                        let count = try r.int()
                        guard count <= 1 << 20 else { throw KVError(.corruption, "manifest lists \(count) value references for one table", path: name) }
                        for _ in 0..<count {
                            m.levels[level][t].valueRefs.append(ValueRef(segment: try r.varint(), bytes: try r.int()))
                        }
                    }
                }
            }
            guard r.isAtEnd else { throw KVError(.corruption, "manifest has trailing bytes", path: name) }
            return m
        }
    }
}
