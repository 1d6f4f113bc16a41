// CRC-32C (Castagnoli), slicing-by-8 in software: the checksum of every block, WAL
// record and manifest. Stored values are masked (as leveldb does) so that a CRC of data
// that itself holds CRCs stays well distributed.

enum CRC32C {
    private static let tables: [[UInt32]] = {
        var tables = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for i in 0..<256 {
            var crc = UInt32(i)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            tables[0][i] = crc
        }
        for i in 0..<256 {
            for t in 1..<8 { tables[t][i] = (tables[t - 1][i] >> 8) ^ tables[0][Int(tables[t - 1][i] & 0xFF)] }
        }
        return tables
    }()
    private static let flat: [UInt32] = tables.flatMap { $0 }

    static func checksum(_ data: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        var crc = ~seed
        flat.withUnsafeBufferPointer { t in
            var p = data.baseAddress
            var n = data.count
            guard var q = p else { return }
            while n >= 8 {
                let lo = UInt32(littleEndian: q.loadUnaligned(as: UInt32.self)) ^ crc
                let hi = UInt32(littleEndian: (q + 4).loadUnaligned(as: UInt32.self))
                crc = t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                q += 8
                n -= 8
            }
            while n > 0 {
                crc = t[Int((crc ^ UInt32(q.load(as: UInt8.self))) & 0xFF)] ^ (crc >> 8)
                q += 1
                n -= 1
            }
            p = q
            _ = p
        }
        return ~crc
    }

    static func checksum(_ data: [UInt8]) -> UInt32 { data.withUnsafeBytes { checksum($0) } }

    /// The stored form of a CRC.
    static func mask(_ crc: UInt32) -> UInt32 { ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8 }
}
