// Why a read is made, for a backend that can do less for it: a read-ahead only wants the
// value close at hand for the read that follows (its result is thrown away), so a value
// the backend would copy out of a file (the lsm's values kept in WAL segments) needs only
// the kernel told to have its pages ready (`ReadableObject.willNeed`), not read, copied and
// checksummed, and then all of that again by the read that follows.

public enum ReadPurpose {
    /// True around reads whose values are not looked at: a backend may pass empty bytes
    /// for a value it would have to read from a file, after asking for it to be read ahead.
    @TaskLocal public static var prefetchOnly = false
}
