// zstd compression of whole buffers (file chunks, table blocks), through the CZstd shim.
// The one place that turns zstd error codes into Swift errors. Compression and
// decompression contexts are pooled: creating one per call cost more than the work.

import CZstd
import Synchronization

public struct CompressionError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

public enum Zstd {
    /// A small pool of reusable contexts (zstd contexts are not thread-safe, so each call
    /// takes one out and puts it back).
    private final class Pool: Sendable {
        private let free = Mutex<[UInt]>([])
        private let make: @Sendable () -> UInt
        private let destroy: @Sendable (UInt) -> Void
        init(make: @escaping @Sendable () -> UInt, destroy: @escaping @Sendable (UInt) -> Void) {
            self.make = make
            self.destroy = destroy
        }
        func with<R>(_ body: (UInt) throws -> R) rethrows -> R {
            let context = free.withLock { $0.popLast() } ?? make()
            defer {
                let kept = free.withLock { pool -> Bool in
                    guard pool.count < 16 else { return false }
                    pool.append(context)
                    return true
                }
                if !kept { destroy(context) }
            }
            return try body(context)
        }
    }

    // Contexts travel as integers (their addresses) so the pool stays Sendable.
    private static let compressors = Pool(
        make: { UInt(bitPattern: ZSTD_createCCtx()) },
        destroy: { ZSTD_freeCCtx(OpaquePointer(bitPattern: $0)) })
    private static let decompressors = Pool(
        make: { UInt(bitPattern: ZSTD_createDCtx()) },
        destroy: { ZSTD_freeDCtx(OpaquePointer(bitPattern: $0)) })

    /// Compresses `input` at `level` (1 fast .. 19 small; 3 is zstd's default).
    public static func compress(_ input: UnsafeRawBufferPointer, level: Int32 = 3) throws(CompressionError) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var output = [UInt8](repeating: 0, count: bound)
        let written = compressors.with { context in
            output.withUnsafeMutableBytes { out in
                ZSTD_compressCCtx(OpaquePointer(bitPattern: context), out.baseAddress, bound, input.baseAddress, input.count, level)
            }
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
        let written = decompressors.with { context in
            output.withUnsafeMutableBytes { out in
                ZSTD_decompressDCtx(OpaquePointer(bitPattern: context), out.baseAddress, expectedSize, input.baseAddress, input.count)
            }
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
