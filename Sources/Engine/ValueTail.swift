// Room a read may put the tail of a value in, instead of passing it. A reader that copies
// a value's bytes somewhere (the filesystem's read-ahead, into the range it keeps) binds
// `ValueTail.current` around `KVReader.withValue`. A store that would otherwise read the
// value from a file into memory of its own first (the lsm's values kept in WAL segments)
// may read the bytes past the first `head` straight into `buffer`, checksum them there,
// pass only the first `head` bytes to the body and note how many it put (`placed`). That
// saves a copy of every byte and an allocation per value. Other stores, and values kept
// elsewhere, ignore it: the body then gets the whole value, and `placed` stays nil.

public final class ValueTail: @unchecked Sendable {
    /// How many of the value's first bytes the body gets.
    public let head: Int
    /// Where the bytes after them may go (a value with more than fits is passed whole).
    public let buffer: UnsafeMutableRawBufferPointer
    /// How many bytes a store put in `buffer` for the value just read, or nil.
    public private(set) var placed: Int?

    @TaskLocal public static var current: ValueTail?

    /// Used by the one thread reading; `buffer` must stay valid through the read.
    public init(head: Int, buffer: UnsafeMutableRawBufferPointer) {
        self.head = head
        self.buffer = buffer
    }

    /// For the store: it put `count` bytes, the value's bytes after `head`, in `buffer`.
    public func place(_ count: Int) { placed = count }
}
