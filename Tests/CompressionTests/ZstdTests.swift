import Testing
@testable import Compression

@Suite struct ZstdTests {
    @Test func roundTripsCompressibleAndRandomData() throws {
        let text = Array(String(repeating: "zerofs keeps every byte in a key-value store. ", count: 200).utf8)
        let packed = try Zstd.compress(text)
        #expect(packed.count < text.count / 4)
        #expect(try Zstd.decompress(packed, expectedSize: text.count) == text)

        var generator = SystemRandomNumberGenerator()
        let noise = (0..<10_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        #expect(try Zstd.decompress(try Zstd.compress(noise), expectedSize: noise.count) == noise)
        #expect(try Zstd.decompress(try Zstd.compress([UInt8]()), expectedSize: 0) == [])
    }

    @Test func rejectsCorruptInputAndWrongSizes() throws {
        let data = Array(repeating: UInt8(7), count: 4096)
        var packed = try Zstd.compress(data)
        #expect(throws: CompressionError.self) { try Zstd.decompress(packed, expectedSize: 100) }
        packed[packed.count / 2] ^= 0xFF
        packed.removeLast()
        #expect(throws: CompressionError.self) { try Zstd.decompress(packed, expectedSize: data.count) }
    }
}
