// XDR (RFC 4506), the encoding of every ONC RPC message: big-endian 4-byte units,
// variable-length data padded to a multiple of 4. The reader never traps on bad input:
// every read checks the bytes left and throws `XDRError`, which the dispatcher answers
// with GARBAGE_ARGS.

import Engine

/// A message too short, a length beyond its limit, or a value outside its enum.
public struct XDRError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) { self.message = message }

    public var description: String { "XDR: \(message)" }
}

/// Reads XDR from a byte array, front to back.
public struct XDRReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public var remaining: Int { bytes.count - offset }

    public mutating func uint32() throws(XDRError) -> UInt32 {
        guard remaining >= 4 else { throw XDRError("message ends inside a 4-byte unit at offset \(offset)") }
        let value = bytes.withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
        offset += 4
        return value
    }

    public mutating func int32() throws(XDRError) -> Int32 { Int32(bitPattern: try uint32()) }

    public mutating func uint64() throws(XDRError) -> UInt64 {
        let high = try uint32()
        return UInt64(high) << 32 | UInt64(try uint32())
    }

    public mutating func bool() throws(XDRError) -> Bool {
        switch try uint32() {
        case 0: return false
        case 1: return true
        case let other: throw XDRError("boolean \(other)")
        }
    }

    /// Fixed-length opaque data of `count` bytes (plus padding).
    public mutating func fixed(_ count: Int) throws(XDRError) -> [UInt8] {
        let padded = (count + 3) & ~3
        guard count >= 0, remaining >= padded else { throw XDRError("\(count) bytes of data past the end at offset \(offset)") }
        let value = Array(bytes[offset..<(offset + count)])
        offset += padded
        return value
    }

    /// Where variable-length opaque data of at most `limit` bytes lies in `bytes`, which
    /// the caller reads in place (a WRITE's data is not copied out of the call).
    public mutating func opaqueRange(limit: Int) throws(XDRError) -> Range<Int> {
        let count = try uint32()
        guard count <= UInt32(limit) else { throw XDRError("opaque of \(count) bytes, at most \(limit) allowed") }
        let padded = (Int(count) + 3) & ~3
        guard remaining >= padded else { throw XDRError("\(count) bytes of data past the end at offset \(offset)") }
        defer { offset += padded }
        return offset..<(offset + Int(count))
    }

    /// Variable-length opaque data of at most `limit` bytes.
    public mutating func opaque(limit: Int) throws(XDRError) -> [UInt8] {
        let count = try uint32()
        guard count <= UInt32(limit) else { throw XDRError("opaque of \(count) bytes, at most \(limit) allowed") }
        return try fixed(Int(count))
    }

    /// An optional value (XDR's `*`: a boolean, then the value when true).
    public mutating func optional<T>(_ body: (inout XDRReader) throws(XDRError) -> T) throws(XDRError) -> T? {
        try bool() ? try body(&self) : nil
    }

    /// Fails unless every byte was read: trailing bytes mean the caller and we disagree.
    public func expectEnd() throws(XDRError) {
        guard remaining == 0 else { throw XDRError("\(remaining) unexpected bytes after the arguments") }
    }
}

/// Writes XDR into a growing byte array.
///
/// The encoding is the first `count` bytes of `storage`; the rest is room already
/// allocated, so a number is one store instead of an append per byte (a reply's
/// attributes are some twenty of them).
public struct XDRWriter {
    private var storage: [UInt8]
    /// The current length, for a field to patch later (`patch`).
    public private(set) var count = 0

    public init(capacity: Int = 256) {
        storage = []
        grow(Swift.max(16, capacity))
    }

    /// The encoding so far (the spare room is dropped).
    public var bytes: [UInt8] {
        mutating get {
            if storage.count > count { storage.removeLast(storage.count - count) }
            return storage
        }
    }

    /// Room for `n` more bytes at `count`.
    @inline(__always)
    private mutating func reserve(_ n: Int) {
        if count + n > storage.count { grow(n) }
    }

    private mutating func grow(_ n: Int) {
        // What is needed, and more only up to 4 KiB and to what the array already has room
        // for (a READ's data is appended in place to an array sized for it: its 1-3 bytes
        // of padding must not copy the megabyte before them); past its room the array's own
        // growth keeps appends amortized.
        let needed = count + n - storage.count
        let spare = storage.capacity - storage.count
        storage.appendZeros(Swift.max(needed, Swift.min(spare >= needed ? spare : storage.count, 4096)))
    }

    @inline(__always)
    private mutating func put<T: FixedWidthInteger>(_ value: T) {
        reserve(MemoryLayout<T>.size)
        let at = count
        storage.withUnsafeMutableBytes { $0.storeBytes(of: value.bigEndian, toByteOffset: at, as: T.self) }
        count += MemoryLayout<T>.size
    }

    public mutating func uint32(_ value: UInt32) { put(value) }

    public mutating func int32(_ value: Int32) { put(UInt32(bitPattern: value)) }

    public mutating func uint64(_ value: UInt64) { put(value) }

    public mutating func bool(_ value: Bool) { put(UInt32(value ? 1 : 0)) }

    /// Fixed-length opaque data (padded to 4).
    public mutating func fixed(_ data: some Collection<UInt8>) {
        let n = data.count
        let padded = (n + 3) & ~3
        reserve(padded)
        let at = count
        storage.withUnsafeMutableBufferPointer { out in
            var i = at
            let copied: Void? = data.withContiguousStorageIfAvailable { source in
                if let from = source.baseAddress, n > 0 { UnsafeMutableRawPointer(out.baseAddress! + at).copyMemory(from: from, byteCount: n) }
            }
            if copied == nil {
                for byte in data {
                    out[i] = byte
                    i += 1
                }
            }
            i = at + n
            while i < at + padded {
                out[i] = 0
                i += 1
            }
        }
        count += padded
    }

    /// Variable-length opaque data: its length, then the bytes (padded).
    public mutating func opaque(_ data: some Collection<UInt8>) {
        uint32(UInt32(data.count))
        fixed(data)
    }

    /// An optional value: false, or true then the value.
    public mutating func optional<T>(_ value: T?, _ body: (inout XDRWriter, T) -> Void) {
        if let value {
            bool(true)
            body(&self, value)
        } else {
            bool(false)
        }
    }

    /// Lets `body` append bytes to the encoding in place (a READ's data goes straight into
    /// its reply); the caller writes their length and padding around them.
    public mutating func appendInPlace<T, E: Error>(_ body: (inout [UInt8]) throws(E) -> T) throws(E) -> T {
        if storage.count > count { storage.removeLast(storage.count - count) }
        defer { count = storage.count }
        return try body(&storage)
    }

    /// Drops everything after the first `count` bytes (a result abandoned midway).
    public mutating func truncate(to count: Int) {
        precondition(count >= 0 && count <= self.count, "truncating beyond the encoding")
        self.count = count
    }

    /// Zero bytes up to the next multiple of 4.
    public mutating func pad() {
        let padded = (count + 3) & ~3
        reserve(padded - count)
        while count < padded {
            storage[count] = 0
            count += 1
        }
    }

    /// Overwrites the 4-byte unit at `offset`.
    public mutating func patch(_ offset: Int, _ value: UInt32) {
        precondition(offset >= 0 && offset + 4 <= count, "patching beyond the encoding")
        storage.withUnsafeMutableBytes { $0.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self) }
    }
}
