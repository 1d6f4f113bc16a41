// Little-endian fixed-width integers and LEB128 varints: the encodings of every LSM
// file format (Docs/format-sstable.md, format-wal.md, format-manifest.md).

import Engine

extension Array where Element == UInt8 {
    mutating func appendFixed32(_ v: UInt32) {
        append(UInt8(truncatingIfNeeded: v))
        append(UInt8(truncatingIfNeeded: v >> 8))
        append(UInt8(truncatingIfNeeded: v >> 16))
        append(UInt8(truncatingIfNeeded: v >> 24))
    }

    mutating func appendFixed64(_ v: UInt64) {
        appendFixed32(UInt32(truncatingIfNeeded: v))
        appendFixed32(UInt32(truncatingIfNeeded: v >> 32))
    }

    mutating func appendVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        append(UInt8(v))
    }

    mutating func appendVarint(_ value: Int) { appendVarint(UInt64(value)) }

    /// A length-prefixed byte string.
    mutating func appendBytes(_ bytes: [UInt8]) {
        appendVarint(bytes.count)
        append(contentsOf: bytes)
    }

    mutating func appendString(_ s: String) { appendBytes(Array(s.utf8)) }
}

/// Reads the encodings back from a buffer; every read throws `.corruption` past the end.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var at = 0
    let what: String

    init(_ bytes: UnsafeRawBufferPointer, what: String) {
        self.bytes = bytes
        self.what = what
    }

    var isAtEnd: Bool { at >= bytes.count }

    private func truncated() -> KVError { KVError(.corruption, "\(what) is truncated at byte \(at)") }

    mutating func fixed32() throws -> UInt32 {
        guard at + 4 <= bytes.count else { throw truncated() }
        defer { at += 4 }
        return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self))
    }

    mutating func fixed64() throws -> UInt64 {
        guard at + 8 <= bytes.count else { throw truncated() }
        defer { at += 8 }
        return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self))
    }

    mutating func byte() throws -> UInt8 {
        guard at < bytes.count else { throw truncated() }
        defer { at += 1 }
        return bytes[at]
    }

    mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard at < bytes.count, shift < 64 else { throw truncated() }
            let b = bytes[at]
            at += 1
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
        }
    }

    mutating func int() throws -> Int {
        let v = try varint()
        guard v <= UInt64(Int.max) else { throw KVError(.corruption, "\(what) holds an impossible number") }
        return Int(v)
    }

    mutating func slice(_ count: Int) throws -> UnsafeRawBufferPointer {
        guard count >= 0, at + count <= bytes.count else { throw truncated() }
        defer { at += count }
        return UnsafeRawBufferPointer(rebasing: bytes[at..<(at + count)])
    }

    mutating func byteArray() throws -> [UInt8] { Array(try slice(try int())) }

    mutating func string() throws -> String { String(decoding: try byteArray(), as: UTF8.self) }
}

/// Decodes one varint at `p` (no bounds beyond `end`); returns nil if it runs past.
@inline(__always)
func decodeVarint32(_ p: inout UnsafeRawPointer, _ end: UnsafeRawPointer) -> UInt32? {
    var result: UInt32 = 0
    var shift: UInt32 = 0
    while p < end, shift < 35 {
        let b = p.load(as: UInt8.self)
        p += 1
        result |= UInt32(b & 0x7F) << shift
        if b & 0x80 == 0 { return result }
        shift += 7
    }
    return nil
}
