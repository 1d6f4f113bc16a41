// Objects in memory, for tests and as the base of the crash-simulating store.

import Engine
import Synchronization

public final class MemoryObjectStore: ObjectStore {
    private let objects = Locked<[String: [UInt8]]>([:])
    public let location = "memory"

    public init() {}

    public func get(_ name: String) throws -> [UInt8]? { objects.withLock { $0[name] } }

    public func open(_ name: String) throws -> (any ReadableObject)? {
        guard let bytes = try get(name) else { return nil }
        return BytesObject(name: name, bytes: bytes)
    }

    public func put(_ name: String, _ bytes: [UInt8]) throws { objects.withLock { $0[name] = bytes } }

    public func putIfAbsent(_ name: String, _ bytes: [UInt8]) throws -> Bool {
        objects.withLock { objects in
            if objects[name] != nil { return false }
            objects[name] = bytes
            return true
        }
    }

    public func list(prefix: String) throws -> [String] {
        objects.withLock { $0.keys.filter { $0.hasPrefix(prefix) }.sorted() }
    }

    public func delete(_ name: String) throws { objects.withLock { _ = $0.removeValue(forKey: name) } }

    public func makeWriter(_ name: String) throws -> any ObjectWriter { BufferedObjectWriter(store: self, name: name) }

    /// Replaces an object's bytes without any checks (corruption tests).
    public func tamper(_ name: String, _ change: (inout [UInt8]) -> Void) {
        objects.withLock { objects in
            if var bytes = objects[name] {
                change(&bytes)
                objects[name] = bytes
            }
        }
    }
}

/// An object held in memory.
public final class BytesObject: ReadableObject {
    public let name: String
    private let bytes: [UInt8]
    public var size: Int { bytes.count }

    public init(name: String, bytes: [UInt8]) {
        self.name = name
        self.bytes = bytes
    }

    public func read(offset: Int, length: Int) throws -> [UInt8] {
        guard offset >= 0, length >= 0, offset + length <= bytes.count else {
            throw KVError(.corruption, "read of \(length) bytes at \(offset) is past the end (\(bytes.count) bytes)", path: name)
        }
        return Array(bytes[offset..<(offset + length)])
    }

    /// Always ready: the bytes are in memory.
    public func readIfReady(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Bool {
        try read(offset: offset, into: buffer)
        return true
    }
}
