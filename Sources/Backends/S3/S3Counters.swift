// Counts of the requests an S3 store sends, by the classes S3 bills them in, and of the
// bytes in request and reply bodies. Every attempt counts, retries included: each costs.
// Multipart uploads count as PUTs (create, each part, complete), aborting one as a DELETE,
// a batch delete as one DELETE.

import Engine
import Synchronization

/// The kinds of request, for the counters.
enum S3RequestKind: Sendable {
    case get, put, list, delete, head
}

public final class S3Counters: Sendable {
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

    /// The counts so far (each read on its own: a reading taken during traffic may be a
    /// request or two apart between fields).
    public func snapshot() -> ObjectOperations {
        var s = ObjectOperations()
        s.puts = puts.load(ordering: .relaxed)
        s.gets = gets.load(ordering: .relaxed)
        s.lists = lists.load(ordering: .relaxed)
        s.deletes = deletes.load(ordering: .relaxed)
        s.heads = heads.load(ordering: .relaxed)
        s.bytesReceived = bytesIn.load(ordering: .relaxed)
        s.bytesSent = bytesOut.load(ordering: .relaxed)
        return s
    }
}
