// CRC-32C (Castagnoli): the checksum of every block, WAL record and manifest, computed by
// the CCRC32C shim (the SSE4.2 instruction where the processor has it). Stored values are
// masked (as leveldb does) so that a CRC of data that itself holds CRCs stays well
// distributed.

import CCRC32C

enum CRC32C {
    @inline(__always)
    static func checksum(_ data: UnsafeRawBufferPointer) -> UInt32 {
        zerofs_crc32c(0, data.baseAddress, data.count)
    }

    static func checksum(_ data: [UInt8]) -> UInt32 { data.withUnsafeBytes { checksum($0) } }

    /// The checksum of the bytes `crc` covered followed by `data`.
    @inline(__always)
    static func extend(_ crc: UInt32, _ data: UnsafeRawBufferPointer) -> UInt32 {
        zerofs_crc32c(crc, data.baseAddress, data.count)
    }

    /// The checksum of A followed by B, from A's checksum, B's and B's length.
    @inline(__always)
    static func combine(_ a: UInt32, _ b: UInt32, length: Int) -> UInt32 {
        zerofs_crc32c_combine(a, b, length)
    }

    /// The stored form of a CRC.
    static func mask(_ crc: UInt32) -> UInt32 { ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8 }
}
