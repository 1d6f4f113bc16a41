// Checkpoints: named, durable, point-in-time images of a whole store (disaster recovery).

/// What a store says about one of its checkpoints.
public struct CheckpointInfo: Sendable, Equatable {
    public var name: String
    /// Creation time in nanoseconds since the Unix epoch.
    public var createdAtNanos: UInt64

    public init(name: String, createdAtNanos: UInt64) {
        self.name = name
        self.createdAtNanos = createdAtNanos
    }
}

public enum CheckpointName {
    /// Checks the naming rule: 1 to 64 characters of [A-Za-z0-9._-], not starting with '.'.
    public static func validate(_ name: String) throws(KVError) {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= 64 else {
            throw KVError(.invalidArgument, "checkpoint name must be 1 to 64 characters, got \(bytes.count)")
        }
        guard bytes[0] != UInt8(ascii: ".") else {
            throw KVError(.invalidArgument, "checkpoint name '\(name)' must not start with '.'")
        }
        for byte in bytes {
            let ok = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            guard ok else {
                throw KVError(.invalidArgument, "checkpoint name '\(name)' may hold only letters, digits, '.', '_' and '-'")
            }
        }
    }
}
