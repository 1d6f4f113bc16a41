// The size limits every backend enforces identically, so a caller sees one contract.

public enum KVLimits {
    /// Keys are 0 to 500 bytes.
    public static let maxKeySize = 500
    /// Values are 0 bytes to 64 MiB.
    public static let maxValueSize = 64 << 20
}
