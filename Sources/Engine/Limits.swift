// The size limits every backend enforces identically, so a caller sees one contract.

public enum KVLimits {
    /// Keys are 0 to 500 bytes.
    public static let maxKeySize = 500
    /// Values are 0 bytes to 64 MiB.
    public static let maxValueSize = 64 << 20
    /// A batch's encoding (`WriteBatch.byteSize`) is at most 1 GiB: logs frame a batch
    /// with a 32-bit length, and a batch is held in memory whole.
    public static let maxBatchSize = 1 << 30
}
