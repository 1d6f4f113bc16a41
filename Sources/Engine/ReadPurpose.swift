// Why a read is made, for a backend that can do less for it: a read-ahead only wants the
// value close at hand for the read that follows (its result is thrown away), so a value
// the backend would copy out of a file (the lsm's values kept in WAL segments) needs only
// the kernel told to have its pages ready (`ReadableObject.willNeed`), not read, copied and
// checksummed, and then all of that again by the read that follows. And where even that
// gains nothing (a local file, which the kernel reads ahead itself for a sequential
// reader), the backend says so, and the read-ahead stops its range.

import Synchronization

public enum ReadPurpose {
    /// Set around reads whose values are not looked at: a backend may pass empty bytes
    /// for a value it would have to read from a file, after asking for it to be read
    /// ahead, and notes in it when reading ahead there gains nothing.
    @TaskLocal public static var prefetch: Prefetch?

    public static var prefetchOnly: Bool { prefetch != nil }

    /// What a backend found while reading ahead.
    public final class Prefetch: Sendable {
        private let gainsNothing = Atomic<Bool>(false)

        public init() {}

        /// A value lies where reading it ahead does nothing the read itself would not
        /// (a local file: the kernel reads ahead for sequential reads): the values after
        /// it most likely do too.
        public func noteNothingToGain() { gainsNothing.store(true, ordering: .relaxed) }

        public var nothingToGain: Bool { gainsNothing.load(ordering: .relaxed) }
    }
}
