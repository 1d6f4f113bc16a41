// A wrapper for tests that simulates a machine crash at a chosen moment: after `crash()`
// (or once a countdown of operations runs out) every call fails, and the store underneath
// holds the puts that had returned, and perhaps the one in flight at the crash: whole
// (the store took it and the reply was lost) or, for objects the caller may tear (logs:
// SeaweedFS keeps an empty object for an upload cut off before its body), cut short.

import Engine
import Synchronization

public final class CrashingObjectStore: ObjectStore {
    public let inner: MemoryObjectStore
    private struct State {
        var crashed = false
        var countdown: Int?
        var tornPrefix: String?
        var random: UInt64
    }
    private let state: Locked<State>

    public var location: String { "crash-simulating memory" }

    /// `seed` drives whether the put in flight at the crash lands, and where it is cut.
    public init(inner: MemoryObjectStore = MemoryObjectStore(), seed: UInt64) {
        self.inner = inner
        state = Locked(State(random: seed | 1))
    }

    /// Crash after `operations` more mutating calls. A put that meets the crash fails, and
    /// half the time lands anyway: whole, or cut short if its name starts with `tearing`.
    public func crash(afterOperations operations: Int, tearing: String? = nil) {
        state.withLock {
            $0.countdown = operations
            $0.tornPrefix = tearing
        }
    }

    public func crash() { state.withLock { $0.crashed = true } }

    public var hasCrashed: Bool { state.withLock { $0.crashed } }

    /// A new store over the same objects, as a machine restarted after the crash sees them.
    public func restarted(seed: UInt64) -> CrashingObjectStore { CrashingObjectStore(inner: inner, seed: seed) }

    private func check() throws {
        if state.withLock({ $0.crashed }) { throw KVError(.io, "simulated crash", path: location) }
    }

    /// Counts a mutating call; returns how it meets the crash (nil: it does not; then how
    /// many bytes of a put land, -1 for none).
    private func tick(_ name: String) throws -> Int? {
        try state.withLock { s -> Int? in
            if s.crashed { throw KVError(.io, "simulated crash", path: location) }
            guard let left = s.countdown else { return nil }
            if left > 0 {
                s.countdown = left - 1
                return nil
            }
            s.crashed = true
            s.random = s.random &* 6364136223846793005 &+ 1442695040888963407
            guard s.random >> 63 == 1 else { return -1 }
            if let torn = s.tornPrefix, name.hasPrefix(torn) { return Int(truncatingIfNeeded: s.random >> 33 & 0x3FFF_FFFF) }
            return Int.max
        }
    }

    public func get(_ name: String) throws -> [UInt8]? {
        try check()
        return try inner.get(name)
    }

    public func open(_ name: String) throws -> (any ReadableObject)? {
        try check()
        return try inner.open(name)
    }

    public func put(_ name: String, _ bytes: [UInt8]) throws {
        if let landing = try tick(name) {
            if let landed = Self.landed(bytes, landing) { try inner.put(name, landed) }
            throw KVError(.io, "simulated crash during put", path: name)
        }
        try inner.put(name, bytes)
    }

    public func putIfAbsent(_ name: String, _ bytes: [UInt8]) throws -> Bool {
        if let landing = try tick(name) {
            if let landed = Self.landed(bytes, landing) { _ = try inner.putIfAbsent(name, landed) }
            throw KVError(.io, "simulated crash during put", path: name)
        }
        return try inner.putIfAbsent(name, bytes)
    }

    /// What of a put's `bytes` lands at the crash (`tick`'s answer), nil for nothing.
    private static func landed(_ bytes: [UInt8], _ landing: Int) -> [UInt8]? {
        if landing < 0 { return nil }
        if landing == Int.max || bytes.isEmpty { return bytes }
        return Array(bytes.prefix(landing % bytes.count))
    }

    public func list(prefix: String) throws -> [String] {
        try check()
        return try inner.list(prefix: prefix)
    }

    public func makeWriter(_ name: String) throws -> any ObjectWriter {
        try check()
        return BufferedObjectWriter(store: self, name: name)
    }

    public func delete(_ name: String) throws {
        if try tick(name) != nil { throw KVError(.io, "simulated crash during delete", path: name) }
        try inner.delete(name)
    }
}
