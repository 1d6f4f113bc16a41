// Counts of the requests an S3 store sends, by the classes S3 bills them in, and of the
// bytes in request and reply bodies. Every attempt counts, retries included: each costs.
// Multipart uploads count as PUTs (create, each part, complete), aborting one as a DELETE,
// a batch delete as one DELETE.

import Synchronization

/// The kinds of request, for the counters.
enum S3RequestKind: Sendable {
    case get, put, list, delete, head
}

public final class S3Counters: Sendable {
    public struct Snapshot: Sendable, Equatable, CustomStringConvertible {
        public var puts = 0
        public var gets = 0
        public var lists = 0
        public var deletes = 0
        public var heads = 0
        /// Bytes of reply bodies received.
        public var bytesIn = 0
        /// Bytes of request bodies sent.
        public var bytesOut = 0

        public init() {}

        public var description: String {
            "PUT \(puts), GET \(gets), LIST \(lists), DELETE \(deletes), HEAD \(heads), \(bytesIn) bytes in, \(bytesOut) bytes out"
        }

        /// What happened between two snapshots.
        public static func - (later: Snapshot, earlier: Snapshot) -> Snapshot {
            var d = Snapshot()
            d.puts = later.puts - earlier.puts
            d.gets = later.gets - earlier.gets
            d.lists = later.lists - earlier.lists
            d.deletes = later.deletes - earlier.deletes
            d.heads = later.heads - earlier.heads
            d.bytesIn = later.bytesIn - earlier.bytesIn
            d.bytesOut = later.bytesOut - earlier.bytesOut
            return d
        }
    }

    private let puts = Atomic<Int>(0)
    private let gets = Atomic<Int>(0)
    private let lists = Atomic<Int>(0)
    private let deletes = Atomic<Int>(0)
    private let heads = Atomic<Int>(0)
    private let bytesIn = Atomic<Int>(0)
    private let bytesOut = Atomic<Int>(0)

    public init() {}

    /// Counts one request about to be sent with a body of `bodyBytes`.
    func sent(_ kind: S3RequestKind, bodyBytes: Int) {
        switch kind {
        case .get: _ = gets.wrappingAdd(1, ordering: .relaxed)
        case .put: _ = puts.wrappingAdd(1, ordering: .relaxed)
        case .list: _ = lists.wrappingAdd(1, ordering: .relaxed)
        case .delete: _ = deletes.wrappingAdd(1, ordering: .relaxed)
        case .head: _ = heads.wrappingAdd(1, ordering: .relaxed)
        }
        _ = bytesOut.wrappingAdd(bodyBytes, ordering: .relaxed)
    }

    func received(bodyBytes: Int) { _ = bytesIn.wrappingAdd(bodyBytes, ordering: .relaxed) }

    /// The counts so far (each read on its own: a snapshot taken during traffic may be a
    /// request or two apart between fields).
    public func snapshot() -> Snapshot {
        var s = Snapshot()
        s.puts = puts.load(ordering: .relaxed)
        s.gets = gets.load(ordering: .relaxed)
        s.lists = lists.load(ordering: .relaxed)
        s.deletes = deletes.load(ordering: .relaxed)
        s.heads = heads.load(ordering: .relaxed)
        s.bytesIn = bytesIn.load(ordering: .relaxed)
        s.bytesOut = bytesOut.load(ordering: .relaxed)
        return s
    }
}
