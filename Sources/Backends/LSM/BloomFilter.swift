// Bloom filters for tables: about 10 bits per key and 6 probes (about 1% false
// positives), by double hashing one 64-bit hash. Optional prefix entries (the hash of
// each key's first N bytes, for configured N) let firstEntry(from:prefix:) skip tables.
//
// Layout: bit array (m bytes), then 1 byte: the number of probes.

import Engine

enum BloomHash {
    /// The filter's hash: Engine's portable 64-bit hash (words read little-endian, so a
    /// table's filter means the same on every machine).
    @inline(__always)
    static func hash(_ data: UnsafeRawBufferPointer) -> UInt64 { Bytes.hash64(data) }

    /// Mixed into the hash of a key entered without its version suffix.
    static let versionSeed: UInt64 = 0x5645_5253  // "VERS"
}

struct BloomBuilder {
    private(set) var hashes: [UInt64] = []
    let bitsPerKey: Int

    init(bitsPerKey: Int) { self.bitsPerKey = bitsPerKey }

    mutating func add(_ hash: UInt64) { hashes.append(hash) }

    func finish() -> [UInt8] {
        let probes = max(1, min(30, Int(Double(bitsPerKey) * 0.69)))
        let bits = max(64, hashes.count * bitsPerKey)
        let bytes = (bits + 7) / 8
        var array = [UInt8](repeating: 0, count: bytes + 1)
        let m = UInt64(bytes * 8)
        array.withUnsafeMutableBufferPointer { a in
            for hash in hashes {
                var h = hash
                let delta = (h >> 33) | (h << 31)
                for _ in 0..<probes {
                    let bit = Int(h % m)
                    a[bit >> 3] |= UInt8(1 << (bit & 7))
                    h &+= delta
                }
            }
        }
        array[bytes] = UInt8(probes)
        return array
    }
}

enum BloomFilter {
    /// Whether the filter may hold `hash` (false means certainly not).
    @inline(__always)
    static func mayContain(_ filter: UnsafeRawBufferPointer, _ hash: UInt64) -> Bool {
        guard filter.count >= 2 else { return true }
        let bytes = filter.count - 1
        let probes = Int(filter[bytes])
        guard probes >= 1, probes <= 30 else { return true }
        let m = UInt64(bytes * 8)
        var h = hash
        let delta = (h >> 33) | (h << 31)
        for _ in 0..<probes {
            let bit = Int(h % m)
            if filter[bit >> 3] & UInt8(1 << (bit & 7)) == 0 { return false }
            h &+= delta
        }
        return true
    }
}
