// Byte-string helpers shared by every layer: the one comparison that defines key order.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum Bytes {
    /// Lower-case hexadecimal, two digits per byte.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Unsigned lexicographic comparison; a proper prefix sorts first. Negative, zero or
    /// positive like memcmp.
    @inlinable
    public static func compare(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
        let n = min(a.count, b.count)
        if n > 0 {
            // Whole 8-byte words first, compared as big-endian numbers (short keys need no
            // call into memcmp), then the remaining bytes.
            let pa = a.baseAddress!
            let pb = b.baseAddress!
            var i = 0
            while i + 8 <= n {
                let x = UInt64(bigEndian: pa.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                let y = UInt64(bigEndian: pb.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                if x != y { return x < y ? -1 : 1 }
                i += 8
            }
            while i < n {
                let x = pa.load(fromByteOffset: i, as: UInt8.self)
                let y = pb.load(fromByteOffset: i, as: UInt8.self)
                if x != y { return x < y ? -1 : 1 }
                i += 1
            }
        }
        return a.count - b.count
    }

    @inlinable
    public static func compare(_ a: [UInt8], _ b: [UInt8]) -> Int {
        a.withUnsafeBytes { x in b.withUnsafeBytes { y in compare(x, y) } }
    }

    @inlinable
    public static func compare(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Int {
        b.withUnsafeBytes { compare(a, $0) }
    }

    @inlinable
    public static func compare(_ a: [UInt8], _ b: UnsafeRawBufferPointer) -> Int {
        a.withUnsafeBytes { compare($0, b) }
    }

    /// The smallest key greater than every key that starts with `prefix`, or nil when
    /// there is none (the prefix is empty or all 0xFF).
    public static func prefixSuccessor(_ prefix: [UInt8]) -> [UInt8]? {
        var end = prefix
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return nil
    }

    /// A well-mixed 64-bit hash of `data` (FNV-1a over 8-byte words, then the murmur3
    /// finalizer); the same on every platform, for bloom filters and treap priorities.
    public static func hash64(_ data: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(data.count)
        var i = 0
        let n = data.count
        if let base = data.baseAddress {
            while i + 8 <= n {
                h = (h ^ UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self))) &* 0x100_0000_01b3
                h ^= h >> 29
                i += 8
            }
            while i < n {
                h = (h ^ UInt64(base.load(fromByteOffset: i, as: UInt8.self))) &* 0x100_0000_01b3
                i += 1
            }
        }
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        h = h &* 0xc4ce_b9fe_1a85_ec53
        h ^= h >> 33
        return h
    }

    /// Whether `bytes` starts with `prefix`.
    @inlinable
    public static func hasPrefix(_ bytes: UnsafeRawBufferPointer, _ prefix: [UInt8]) -> Bool {
        guard bytes.count >= prefix.count else { return false }
        return prefix.withUnsafeBytes { p in
            p.count == 0 || memcmp(bytes.baseAddress!, p.baseAddress!, p.count) == 0
        }
    }
}

/// A block of zeros to append from (`Array.appendZeros`).
@usableFromInline let zeroBlock = [UInt8](repeating: 0, count: 4096)

extension Array where Element == UInt8 {
    /// Appends `count` zeros, copied from a shared block: building them with
    /// `Array(repeating:count:)` or `Array(unsafeUninitializedCapacity:)` looks the array's
    /// storage type up in the runtime at every call, some 500 instructions.
    @inlinable
    public mutating func appendZeros(_ count: Int) {
        var left = count
        while left > 0 {
            let step = Swift.min(left, zeroBlock.count)
            append(contentsOf: zeroBlock[..<step])
            left -= step
        }
    }

    /// Appends raw bytes with one copy (`append(contentsOf:)` copies a raw buffer a byte
    /// at a time).
    @inlinable
    public mutating func appendRaw(_ bytes: UnsafeRawBufferPointer) {
        bytes.withMemoryRebound(to: UInt8.self) { append(contentsOf: $0) }
    }
}
