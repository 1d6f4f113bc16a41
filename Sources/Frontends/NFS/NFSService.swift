// The RPC dispatcher shared by every connection: decodes a record's call header, routes
// it to MOUNT or NFS, answers PROG_UNAVAIL, PROG_MISMATCH, PROC_UNAVAIL and GARBAGE_ARGS
// as RFC 5531 says, and keeps a duplicate-request cache so that a retransmitted
// non-idempotent call gets the reply of the first instead of running twice. Pure with
// respect to I/O: a record in, a reply out (NFSServer does the sockets).

import FS
import Engine
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

public final class NFSService: Sendable {
    let nfs: NFSProgram
    let mount: MountProgram
    private let replies = DuplicateRequestCache(capacity: 4096)
    /// Calls answered, by program and procedure (NFS 0...21, then MOUNT 0...5).
    private let calls = Locked([UInt64](repeating: 0, count: 28))

    static let nfsProcedures = [
        "NULL", "GETATTR", "SETATTR", "LOOKUP", "ACCESS", "READLINK", "READ", "WRITE", "CREATE", "MKDIR", "SYMLINK",
        "MKNOD", "REMOVE", "RMDIR", "RENAME", "LINK", "READDIR", "READDIRPLUS", "FSSTAT", "FSINFO", "PATHCONF", "COMMIT",
    ]
    static let mountProcedures = ["NULL", "MNT", "DUMP", "UMNT", "UMNTALL", "EXPORT"]

    /// Calls answered since the service started, by name ("nfs.READ", "mount.MNT").
    public var callCounts: [String: UInt64] {
        let counts = calls.withLock { $0 }
        var out: [String: UInt64] = [:]
        for (i, name) in Self.nfsProcedures.enumerated() where counts[i] > 0 { out["nfs.\(name)"] = counts[i] }
        for (i, name) in Self.mountProcedures.enumerated() where counts[22 + i] > 0 { out["mount.\(name)"] = counts[22 + i] }
        return out
    }

    /// `writeVerifier`: a value that differs between server starts (the default is the
    /// clock's nanoseconds).
    public init(pool: Pool, writeVerifier: UInt64? = nil) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let verifier = writeVerifier ?? (UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec))
        nfs = NFSProgram(pool: pool, writeVerifier: verifier)
        mount = MountProgram(nfs: nfs)
    }

    public var writeVerifier: UInt64 { nfs.writeVerifier }

    /// ZEROFS_NFS_TRACE=1: one line per call on standard error (program, procedure, the
    /// accept status and the first word of the result, which is the NFS or MOUNT status).
    private let trace = getenv("ZEROFS_NFS_TRACE").map { String(cString: $0) == "1" } ?? false

    private static func trace(_ call: RPCCall, _ reply: [UInt8]) {
        var r = XDRReader(reply, offset: 20)
        let accept = (try? r.uint32()).map(String.init) ?? "-"
        let status = (try? r.uint32()).map(String.init) ?? "-"
        printError("nfs trace: xid \(call.xid) program \(call.program) v\(call.version) procedure \(call.procedure) accept \(accept) status \(status)")
    }

    private static let connections = Atomic<UInt64>(0)

    /// A new connection's id for `handle` (never 0).
    public static func newConnectionID() -> UInt64 { connections.add(1, ordering: .relaxed).newValue }

    /// NFS procedures whose repetition would fail or do something else (RFC 1813 2.3.3),
    /// SETATTR included (a guarded one fails once its own change moved ctime).
    static let nonIdempotent: Set<UInt32> = [2, 8, 9, 10, 11, 12, 13, 14, 15]
    /// Calls of those procedures are a few KiB at most; longer ones are not cached, so the
    /// cache cannot be filled with junk.
    static let cachedRecordLimit = 16 << 10

    /// NFS procedures whose reply follows the sync of what they changed: the changes, a
    /// stable WRITE, and COMMIT.
    static let syncing: Set<UInt32> = [2, 7, 8, 9, 10, 11, 12, 13, 14, 15, 21]

    /// The reply to `record` from `client` (its address without the port), or nil to send
    /// nothing (not a call, or a retransmission of a call still running: this form does
    /// not wait for that call's reply). The call's
    /// changes are durable on return.
    public func handle(_ record: [UInt8], client: String) -> [UInt8]? {
        switch begin(record, client: client) {
        case .answered(let reply): reply
        case .waiting: nil
        case .run(let call, let key): finish(call, key, dispatch(call))
        }
    }

    /// Answers `record` through `respond`, called once, with nil when nothing is to be
    /// sent. A change is answered once a sync has made it durable: by this thread when
    /// it runs that sync, else by the thread that does, while this one goes on to other
    /// calls (SyncGate). `connection` names the connection the record came on (0: not
    /// known; `NFSService.newConnectionID`): a retransmission of a call still running
    /// waits for its reply only when it came on another.
    public func handle(_ record: [UInt8], client: String, connection: UInt64 = 0, respond: @escaping @Sendable ([UInt8]?) -> Void) {
        switch begin(record, client: client, connection: connection, respond: respond) {
        case .answered(let reply):
            respond(reply)
        case .waiting:
            // Answered with the first call's reply when it is done (a retransmission,
            // perhaps on a new connection).
            break
        case .run(let call, let key):
            guard call.program == NFSProgram.program, Self.syncing.contains(call.procedure) else {
                return respond(finish(call, key, dispatch(call)))
            }
            let (result, pending) = DurabilityDeferral.deferring { dispatch(call) }
            let reply = result.get()
            nfs.pool.whenDurable(pending) { error in
                respond(self.finish(call, key, error == nil ? reply : Self.unsynced(call)))
            }
        }
    }

    /// The reply to a change whose sync failed: NFS3ERR_IO, and empty attributes in the
    /// failure arm of its result (wcc_data, or for LINK post_op_attr and wcc_data, or for
    /// RENAME two wcc_data: two, three or four FALSE words).
    static func unsynced(_ call: RPCCall) -> [UInt8] {
        var w = RPCReply.acceptedHeader(call.xid, .success)
        w.status(.io)
        let empty = switch call.procedure {
        case 14: 4
        case 15: 3
        default: 2
        }
        for _ in 0..<empty { w.bool(false) }
        return w.bytes
    }

    private enum Begun {
        /// Nothing to run: the reply (nil for none).
        case answered([UInt8]?)
        /// A retransmission of a call still running: `respond` gets its reply.
        case waiting
        /// A call to run, and its key in the duplicate-request cache.
        case run(RPCCall, DuplicateRequestCache.Key?)
    }

    private func begin(
        _ record: [UInt8], client: String, connection: UInt64 = 0, respond: (@Sendable ([UInt8]?) -> Void)? = nil
    ) -> Begun {
        let call: RPCCall
        switch RPCCall.decode(record) {
        case .dropped: return .answered(nil)
        case .refused(let reply): return .answered(reply)
        case .call(let decoded): call = decoded
        }
        let cached = call.program == NFSProgram.program && call.version == NFSProgram.version
            && Self.nonIdempotent.contains(call.procedure) && record.count <= Self.cachedRecordLimit
        // Only cached calls are digested: a WRITE carries up to 1 MiB.
        let key = cached ? DuplicateRequestCache.Key(client: client, xid: call.xid, record: record) : nil
        if let key {
            // The waiter is made here, for cached calls only: not for every read.
            var waiter: DuplicateRequestCache.Waiter?
            if let respond { waiter = { reply in respond(reply) } }
            switch replies.begin(key, connection: connection, waiter: waiter) {
            case .new: break
            case .running(let waiting): return waiting ? .waiting : .answered(nil)
            case .done(let reply): return .answered(reply)
            }
        }
        return .run(call, key)
    }

    private func finish(_ call: RPCCall, _ key: DuplicateRequestCache.Key?, _ reply: [UInt8]) -> [UInt8] {
        if let key { replies.finish(key, reply) }
        if trace { Self.trace(call, reply) }
        return reply
    }

    private func dispatch(_ call: RPCCall) -> [UInt8] {
        var args = call.arguments
        // The results go straight after the reply header, in one array (a READ reply
        // carries up to 1 MiB: it is not copied again).
        var w = RPCReply.acceptedHeader(call.xid, .success)
        let known: Bool
        do throws(XDRError) {
            switch call.program {
            case NFSProgram.program:
                guard call.version == NFSProgram.version else {
                    return RPCReply.progMismatch(call.xid, low: NFSProgram.version, high: NFSProgram.version)
                }
                known = try nfs.call(call.procedure, &args, call.credentials, into: &w)
                if known, call.procedure < 22 { calls.withLock { $0[Int(call.procedure)] += 1 } }
            case MountProgram.program:
                guard call.version == MountProgram.version else {
                    return RPCReply.progMismatch(call.xid, low: MountProgram.version, high: MountProgram.version)
                }
                known = try mount.call(call.procedure, &args, call.credentials, machine: call.machine, into: &w)
                if known, call.procedure < 6 { calls.withLock { $0[22 + Int(call.procedure)] += 1 } }
            default:
                return RPCReply.accepted(call.xid, .progUnavail)
            }
        } catch {
            return RPCReply.accepted(call.xid, .garbageArgs)
        }
        return known ? w.bytes : RPCReply.accepted(call.xid, .procUnavail)
    }
}

/// Replies of recent non-idempotent calls by (client, xid), checked against a digest of
/// the whole call so a reused xid with other arguments runs as new. Oldest entries go
/// first, but never one whose call is still running: its retransmission would run the call
/// a second time beside the first (the cache then holds more than `capacity` entries until
/// those calls end; at most the calls in flight on every connection). A retransmission
/// that arrives while its call runs waits for the call's reply (`Waiter`): the client may
/// have sent it on a new connection, the old one gone with the reply it would have got.
final class DuplicateRequestCache: Sendable {
    /// Where a retransmission's reply goes, once its call is done.
    typealias Waiter = @Sendable ([UInt8]) -> Void

    /// A call: who sent it, its xid, and its length and digest (not its bytes).
    struct Key: Hashable, Sendable {
        var client: String
        var xid: UInt32
        var length: Int
        var digest: Int

        init(client: String, xid: UInt32, record: [UInt8]) {
            self.client = client
            self.xid = xid
            length = record.count
            var hasher = Hasher()
            record.withUnsafeBytes { hasher.combine(bytes: $0) }
            digest = hasher.finalize()
        }
    }

    enum Begin {
        case new
        /// Running; `waiting`: the waiter given gets the reply.
        case running(waiting: Bool)
        case done([UInt8])
    }

    private enum Entry {
        /// The call runs; it came on connection `origin` (0: not known).
        case running(origin: UInt64, waiters: [Waiter])
        case done([UInt8])
    }

    /// Retransmissions waiting for one running call, at most: more are dropped (the
    /// client sends again).
    static let waitersPerCall = 4

    private struct State {
        var entries: [Key: Entry] = [:]
        var order: [Key] = []
        var head = 0
    }

    private let state = Locked(State())
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// `.new` when the call is to run (then `finish` it); a retransmission of a running
    /// call gets `.running`, and `waiter`, when given, gets the call's reply, unless it
    /// came on the call's own `connection` (0: not known), which gets that reply anyway.
    func begin(_ key: Key, connection: UInt64 = 0, waiter: Waiter? = nil) -> Begin {
        state.withLock { s in
            switch s.entries[key] {
            case .done(let reply): return .done(reply)
            case .running(let origin, var waiters):
                guard let waiter, waiters.count < Self.waitersPerCall, connection == 0 || connection != origin else {
                    return .running(waiting: false)
                }
                waiters.append(waiter)
                s.entries[key] = .running(origin: origin, waiters: waiters)
                return .running(waiting: true)
            case nil: break
            }
            s.entries[key] = .running(origin: connection, waiters: [])
            s.order.append(key)
            // Running entries met on the way go to the back, each at most once per call.
            var running = 0
            while s.order.count - s.head > capacity, running < s.order.count - s.head {
                let oldest = s.order[s.head]
                s.head += 1
                if case .running = s.entries[oldest] {
                    s.order.append(oldest)
                    running += 1
                } else {
                    s.entries[oldest] = nil
                }
            }
            if s.head > capacity {
                s.order.removeFirst(s.head)
                s.head = 0
            }
            return .new
        }
    }

    /// Keeps the reply of a call `begin` answered `.new` to, and sends it to the
    /// retransmissions that waited.
    func finish(_ key: Key, _ reply: [UInt8]) {
        let waiters = state.withLock { s -> [Waiter] in
            guard case .running(_, let waiters) = s.entries[key] else { return [] }
            s.entries[key] = .done(reply)
            return waiters
        }
        for waiter in waiters { waiter(reply) }
    }
}
