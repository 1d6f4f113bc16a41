// Record marking: records fed whole, byte by byte and split at every position come out
// the same; fragments join; a record over the limit is refused as soon as its header says so.

@testable import NFS
import Testing

@Suite struct RecordMarkingTests {
    /// Three records: one fragment, three fragments (one empty), and an empty record.
    static func stream() -> (bytes: [UInt8], records: [[UInt8]]) {
        let a: [UInt8] = Array(0..<13)
        let b1: [UInt8] = [1, 2, 3, 4]
        let b2: [UInt8] = []
        let b3: [UInt8] = Array(repeating: 9, count: 7)
        func fragment(_ data: [UInt8], last: Bool) -> [UInt8] {
            let header = UInt32(data.count) | (last ? 0x8000_0000 : 0)
            return [UInt8(header >> 24), UInt8(header >> 16 & 0xFF), UInt8(header >> 8 & 0xFF), UInt8(header & 0xFF)] + data
        }
        let bytes = fragment(a, last: true) + fragment(b1, last: false) + fragment(b2, last: false) + fragment(b3, last: true)
            + fragment([], last: true)
        return (bytes, [a, b1 + b2 + b3, []])
    }

    @Test func wholeByteByByteAndEverySplit() throws {
        let (bytes, records) = Self.stream()
        var whole = RecordDecoder(limit: 100)
        #expect(try whole.feed(bytes) == records)
        #expect(whole.buffered == 0)

        var single = RecordDecoder(limit: 100)
        var out: [[UInt8]] = []
        for byte in bytes { out += try single.feed([byte]) }
        #expect(out == records)

        for split in 0...bytes.count {
            var decoder = RecordDecoder(limit: 100)
            let first = try decoder.feed(bytes[0..<split])
            let second = try decoder.feed(bytes[split...])
            #expect(first + second == records, "split at \(split)")
        }
    }

    @Test func framedRecordsDecode() throws {
        var decoder = RecordDecoder(limit: 1 << 20)
        let payload = (0..<1000).map { UInt8($0 % 251) }
        #expect(try decoder.feed(RecordDecoder.frame(payload) + RecordDecoder.frame([])) == [payload, []])
    }

    @Test func aRecordOverTheLimitIsRefusedByItsHeader() {
        var decoder = RecordDecoder(limit: 64)
        // Only the header of a 2 GiB fragment: refused before any of it arrives.
        #expect(throws: RecordTooLong.self) { try decoder.feed([0xFF, 0xFF, 0xFF, 0xFF]) }
        // Fragments that together pass the limit.
        var joined = RecordDecoder(limit: 64)
        let part = [UInt8](repeating: 1, count: 40)
        #expect(throws: RecordTooLong.self) {
            _ = try joined.feed([0, 0, 0, 40] + part + [0, 0, 0, 40])
        }
    }
}
