// zstd compression of whole buffers (file chunks, table blocks), through the CZstd shim.
// The one place that turns zstd error codes into Swift errors.

import CZstd

public struct CompressionError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

public enum Zstd {
    /// Compresses `input` at `level` (1 fast .. 19 small; 3 is zstd's default).
    public static func compress(_ input: UnsafeRawBufferPointer, level: Int32 = 3) throws(CompressionError) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var output = [UInt8](repeating: 0, count: bound)
        let written = output.withUnsafeMutableBytes { out in
            ZSTD_compress(out.baseAddress, bound, input.baseAddress, input.count, level)
        }
        if ZSTD_isError(written) != 0 {
            throw CompressionError(message: "zstd compress: " + String(cString: ZSTD_getErrorName(written)))
        }
        output.removeSubrange(written...)
        return output
    }

    public static func compress(_ input: [UInt8], level: Int32 = 3) throws -> [UInt8] {
        try input.withUnsafeBytes { try compress($0, level: level) }
    }

    /// Decompresses a frame that must expand to exactly `expectedSize` bytes; anything else
    /// (corrupt input, a wrong size) is an error, never garbage.
    public static func decompress(_ input: UnsafeRawBufferPointer, expectedSize: Int) throws(CompressionError) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: expectedSize)
        let written = output.withUnsafeMutableBytes { out in
            ZSTD_decompress(out.baseAddress, expectedSize, input.baseAddress, input.count)
        }
        if ZSTD_isError(written) != 0 {
            throw CompressionError(message: "zstd decompress: " + String(cString: ZSTD_getErrorName(written)))
        }
        guard written == expectedSize else {
            throw CompressionError(message: "zstd decompress: got \(written) bytes, expected \(expectedSize)")
        }
        return output
    }

    public static func decompress(_ input: [UInt8], expectedSize: Int) throws -> [UInt8] {
        try input.withUnsafeBytes { try decompress($0, expectedSize: expectedSize) }
    }
}
