// A wrapper for tests that simulates a machine crash at a chosen moment: after `crash()`
// (or once a countdown of operations runs out) every call fails, and the store underneath
// holds exactly the puts that had returned. A put in flight at the crash can be left out,
// whole, or (for objects the caller may tear, such as logs) cut short.

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

    /// `seed` drives where a torn object is cut.
    public init(inner: MemoryObjectStore = MemoryObjectStore(), seed: UInt64) {
        self.inner = inner
        state = Locked(State(random: seed | 1))
    }

    /// Crash after `operations` more mutating calls; a put of a name starting with
    /// `tearing` that meets the crash is stored cut short instead of left out.
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

    /// Counts a mutating call; returns how it meets the crash (nil: it does not).
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
            if let torn = s.tornPrefix, name.hasPrefix(torn) { return Int(truncatingIfNeeded: s.random >> 33) }
            return -1
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
        if let cut = try tick(name) {
            if cut >= 0, !bytes.isEmpty { try inner.put(name, Array(bytes.prefix(cut % bytes.count))) }
            throw KVError(.io, "simulated crash during put", path: name)
        }
        try inner.put(name, bytes)
    }

    public func putIfAbsent(_ name: String, _ bytes: [UInt8]) throws -> Bool {
        if let cut = try tick(name) {
            if cut >= 0, !bytes.isEmpty { _ = try inner.putIfAbsent(name, Array(bytes.prefix(cut % bytes.count))) }
            throw KVError(.io, "simulated crash during put", path: name)
        }
        return try inner.putIfAbsent(name, bytes)
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
