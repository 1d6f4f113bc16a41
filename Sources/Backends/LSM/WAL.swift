// The write-ahead log (Docs/format-wal.md): a series of objects "wal/<id>.wal". On an
// object store that can append (a local folder) each is a segment grown by appends (synced
// only for durable writes), sealed at memtable rotation or 64 MiB; elsewhere each group
// commit writes a new object with put-if-absent. An object is:
//
//   magic "ZWAL" (fixed32 0x4C41575A) | format version (fixed32 3) | record* | zero bytes
//   record: length (fixed32, of seq + batch) | masked CRC-32C (fixed32, of seq + batch) |
//           seq (fixed64, the first operation's sequence number) | batch (WriteBatch.rep)
//
// An object holding only the header is a fence: a newer writer writes one at the next id
// so that an older writer's next WAL write fails.
//
// A segment may end in zero bytes: space reserved ahead of its appends, so that a sync
// does not also have to write the file's new size (format version 2; version 1 objects
// are read as before). A zero length word with only zeros after it ends the records.
//
// A sync marker is a record with seq 0 and an empty batch: every WAL object below the
// one holding it (at or above the replay start) was durable when it was written (format
// version 3). An open uses it to tell a sealed segment a machine crash cut short from
// damage (LSMStore.init).

import Engine

/// "<folder>/<id as 20 zero-padded digits><suffix>": names that sort as their ids do.
func objectName(_ folder: String, _ id: UInt64, _ suffix: String) -> String {
    let digits = String(id)
    return folder + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + suffix
}

enum WALFormat {
    static let magic: UInt32 = 0x4C41_575A
    static let version: UInt32 = 3
    /// Versions this code reads: 1 never holds reserved space and 2 never a sync marker,
    /// so they read as 3 does.
    static let readableVersions: ClosedRange<UInt32> = 1...3
    /// The first version whose writers leave sync markers (format-wal.md): where none
    /// follows an object, no durable write was acknowledged after it.
    static let markingVersion: UInt32 = 3
    static let headerSize = 8
    /// A record's bytes before its batch: length u32, CRC u32, seq u64.
    static let recordHeaderSize = 16

    static func name(_ id: UInt64) -> String { objectName("wal/", id, ".wal") }

    static func id(of name: String) -> UInt64? {
        guard name.hasPrefix("wal/"), name.hasSuffix(".wal") else { return nil }
        return UInt64(name.dropFirst(4).dropLast(4))
    }

    static func header() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendFixed32(magic)
        bytes.appendFixed32(version)
        return bytes
    }

    /// A sync marker: a record of seq 0 with an empty batch (16 bytes).
    static let syncMarker: [UInt8] = recordHeader(seq: 0, batch: WriteBatch())

    /// Appends one record to a WAL buffer.
    static func appendRecord(_ buffer: inout [UInt8], seq: UInt64, batch: WriteBatch) {
        buffer.append(contentsOf: recordHeader(seq: seq, batch: batch))
        buffer.append(contentsOf: batch.rep)
    }

    /// A record's bytes before its batch: length, masked CRC, seq.
    static func recordHeader(seq: UInt64, batch: WriteBatch) -> [UInt8] {
        var unused: [(offset: Int, crc: UInt32)] = []
        return recordHeader(seq: seq, batch: batch, valuesFrom: Int.max, crcs: &unused)
    }

    /// The same, and the CRC-32C (unmasked) of each put's value of at least `minBytes`,
    /// by its offset in the batch, in the same pass over the bytes: the record's CRC is
    /// put together from the CRCs of its parts (`CRC32C.combine`), so a table that later
    /// points at such a value need not read it again for its own checksum.
    static func recordHeader(seq: UInt64, batch: WriteBatch, valuesFrom minBytes: Int, crcs: inout [(offset: Int, crc: UInt32)]) -> [UInt8] {
        var header: [UInt8] = []
        header.reserveCapacity(16)
        header.appendFixed32(UInt32(8 + batch.rep.count))
        header.appendFixed32(0)
        header.appendFixed64(seq)
        var crc = header.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[8...])) }
        crc = batch.rep.withUnsafeBytes { rep -> UInt32 in
            var crc = crc
            var done = 0
            if rep.count >= minBytes, let base = rep.baseAddress {
                batch.forEach { op, _, value in
                    guard op == .put, value.count >= minBytes, let start = value.baseAddress else { return }
                    let offset = start - base
                    crc = CRC32C.extend(crc, UnsafeRawBufferPointer(rebasing: rep[done..<offset]))
                    let own = CRC32C.checksum(value)
                    crc = CRC32C.combine(crc, own, length: value.count)
                    crcs.append((offset, own))
                    done = offset + value.count
                }
            }
            return CRC32C.extend(crc, UnsafeRawBufferPointer(rebasing: rep[done...]))
        }
        header.withUnsafeMutableBytes { $0.storeBytes(of: CRC32C.mask(crc).littleEndian, toByteOffset: 4, as: UInt32.self) }
        return header
    }

    /// Whether everything from `start` on is zero: space a segment reserved ahead of its
    /// appends, not a record (a record's length word is never zero).
    static func isReserved(_ bytes: [UInt8], from start: Int) -> Bool {
        guard bytes[start] == 0 else { return false }
        return bytes.withUnsafeBytes { raw in
            var at = start
            // Eight bytes at a time, then the rest.
            while at + 8 <= raw.count {
                if raw.loadUnaligned(fromByteOffset: at, as: UInt64.self) != 0 { return false }
                at += 8
            }
            while at < raw.count {
                if raw[at] != 0 { return false }
                at += 1
            }
            return true
        }
    }

    /// How a WAL object's records end before its bytes do.
    enum Tear {
        /// The bytes stop inside a record (or its header): what an interrupted append or
        /// upload leaves.
        case cut
        /// A whole record fails its checksum, or a length is impossible: no interrupted
        /// write leaves that in an object written whole (it can in a local segment, whose
        /// blocks a machine crash may leave unwritten).
        case damage
    }

    /// One WAL object's contents: its records (sync markers left out), whether something
    /// after them is cut short or damaged, whether it holds a sync marker, and whether its
    /// writer put markers in (version `markingVersion` on).
    struct Contents {
        var records: [(seq: UInt64, batch: WriteBatch)]
        var tear: Tear?
        var marked = false
        var marking = false
        /// Fewer bytes than the header: on a local folder, a segment a machine crash caught
        /// before its first sync, which makes the header durable (`createAppendable`), so it
        /// never held anything acknowledged, a sync marker least of all.
        var headerless = false

        var torn: Bool { tear != nil }
    }

    /// The records of one WAL object. A record that is cut short or fails its checksum ends
    /// the object: `tear` reports how (the caller decides whether a torn object may be the
    /// tail of the log).
    static func decode(_ bytes: [UInt8], name: String) throws -> Contents {
        guard bytes.count >= headerSize else { return Contents(records: [], tear: .cut, headerless: true) }
        let (magicFound, versionFound) = bytes.withUnsafeBytes {
            (UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)), UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        }
        guard magicFound == magic else { throw KVError(.corruption, "not a WAL object (bad magic number)", path: name) }
        guard readableVersions.contains(versionFound) else {
            throw KVError(.unsupportedFormat, "WAL format \(versionFound) is not one this version reads (\(readableVersions))", path: name)
        }
        let found = try decodeRecords(bytes, from: headerSize, name: name)
        return Contents(records: found.records, tear: found.tear, marked: found.marked, marking: versionFound >= markingVersion)
    }

    /// The whole records in `bytes` from offset `from` on (no header there; sync markers
    /// left out), the offset just past the last of them, whether something after it is cut
    /// short or damaged (a replica reading a segment that is still growing meets a cut at
    /// its end), and whether a sync marker came.
    static func decodeRecords(_ bytes: [UInt8], from start: Int, name: String) throws -> (records: [(seq: UInt64, batch: WriteBatch)], end: Int, tear: Tear?, marked: Bool) {
        var records: [(UInt64, WriteBatch)] = []
        var marked = false
        var at = start
        while at < bytes.count {
            if isReserved(bytes, from: at) { return (records, at, nil, marked) }
            guard at + 16 <= bytes.count else { return (records, at, .cut, marked) }
            let (length, crc) = bytes.withUnsafeBytes {
                (Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt32.self))),
                 UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: at + 4, as: UInt32.self)))
            }
            guard length >= 8 else { return (records, at, .damage, marked) }
            guard at + 8 + length <= bytes.count else { return (records, at, .cut, marked) }
            let actual = bytes.withUnsafeBytes { CRC32C.mask(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[(at + 8)..<(at + 8 + length)]))) }
            guard actual == crc else { return (records, at, .damage, marked) }
            let seq = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self)) }
            if seq == 0 && length == 8 {
                marked = true
                at += 8 + length
                continue
            }
            let batch: WriteBatch
            do { batch = try WriteBatch(rep: Array(bytes[(at + 16)..<(at + 8 + length)])) } catch {
                throw KVError(.corruption, "WAL record holds a malformed batch", path: name)
            }
            records.append((seq, batch))
            at += 8 + length
        }
        return (records, at, nil, marked)
    }
}
