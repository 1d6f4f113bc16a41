// A harness gives a test fresh store paths for one backend and cleans them up.

import Engine
import MemoryBackend

#if canImport(Glibc)
import Glibc
#endif

public final class StoreHarness: @unchecked Sendable {
    // `counter` is only used by the single test that owns this harness.
    public let factory: any KVBackendFactory
    public let root: String
    private var counter = 0

    public init(_ factory: any KVBackendFactory) {
        self.factory = factory
        var template = Array("/tmp/zerofs-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        root = made.map { String(cString: $0) } ?? "/tmp/zerofs-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileOps.makeDirectories(root)
    }

    /// A path where no store exists yet.
    public func freshPath(_ label: String = "store") -> String {
        counter += 1
        return "\(root)/\(label)-\(counter)"
    }

    public func open(_ path: String, options: BackendOptions = BackendOptions()) throws -> any KVBackend {
        try factory.open(at: path, options: options)
    }

    /// Removes every store the harness made.
    public func cleanUp() {
        try? FileOps.removeTree(root)
        MemoryBackendFactory.discardStores(under: root)
    }

    deinit { cleanUp() }
}

/// Small helpers for building test data.
public enum TestBytes {
    public static func key(_ n: Int, width: Int = 8) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: width)
        var v = UInt64(n)
        for i in stride(from: width - 1, through: 0, by: -1) {
            bytes[i] = UInt8(truncatingIfNeeded: v)
            v >>= 8
        }
        return bytes
    }

    public static func value(_ n: Int, size: Int) -> [UInt8] {
        var generator = SeededGenerator(seed: UInt64(n) &+ 0x5EED)
        var bytes = [UInt8](repeating: 0, count: size)
        var i = 0
        while i < size {
            var word = generator.next()
            for _ in 0..<8 where i < size {
                bytes[i] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                i += 1
            }
        }
        return bytes
    }

    public static func text(_ s: String) -> [UInt8] { Array(s.utf8) }
}
