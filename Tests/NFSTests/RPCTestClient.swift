// A small RPC client for the tests: encodes calls of every MOUNT and NFS procedure and
// decodes the reply header, talking either straight to an NFSService (no sockets) or to
// a server over TCP.

@testable import NFS
import FS
import Foundation
import Testing

/// Builds call records.
enum Call {
    static func record(xid: UInt32, program: UInt32, version: UInt32, procedure: UInt32,
                       uid: UInt32 = 0, gid: UInt32 = 0, args: [UInt8] = []) -> [UInt8] {
        var w = XDRWriter()
        w.uint32(xid)
        w.uint32(0)  // CALL
        w.uint32(2)
        w.uint32(program)
        w.uint32(version)
        w.uint32(procedure)
        var auth = XDRWriter()
        auth.uint32(0)
        auth.opaque(Array("test".utf8))
        auth.uint32(uid)
        auth.uint32(gid)
        auth.uint32(0)
        w.uint32(1)  // AUTH_SYS
        w.opaque(auth.bytes)
        w.uint32(0)
        w.uint32(0)
        return w.bytes + args
    }

    static func args(_ body: (inout XDRWriter) -> Void) -> [UInt8] {
        var w = XDRWriter()
        body(&w)
        return w.bytes
    }
}

/// A decoded accepted reply.
struct Reply {
    var xid: UInt32
    /// 0 accepted, 1 denied.
    var replyStat: UInt32
    var acceptStat: UInt32
    var body: XDRReader

    init(_ bytes: [UInt8]) throws {
        var r = XDRReader(bytes)
        xid = try r.uint32()
        guard try r.uint32() == 1 else { throw XDRError("not a reply") }
        replyStat = try r.uint32()
        if replyStat == 0 {
            _ = try r.uint32()
            _ = try r.opaque(limit: 400)
            acceptStat = try r.uint32()
        } else {
            acceptStat = UInt32.max
        }
        body = r
    }
}

/// Calls MOUNT and NFS procedures against `send`.
final class NFSTestClient {
    let send: ([UInt8]) throws -> [UInt8]?
    var xid: UInt32 = 1
    var uid: UInt32 = 0
    var gid: UInt32 = 0

    init(send: @escaping ([UInt8]) throws -> [UInt8]?) {
        self.send = send
    }

    convenience init(_ service: NFSService) {
        self.init { service.handle($0, client: "127.0.0.1") }
    }

    /// The reply body of a successful call (accept_stat SUCCESS).
    func call(_ program: UInt32, _ procedure: UInt32, version: UInt32 = 3, _ body: (inout XDRWriter) -> Void = { _ in }) throws -> XDRReader {
        xid += 1
        let record = Call.record(xid: xid, program: program, version: version, procedure: procedure, uid: uid, gid: gid, args: Call.args(body))
        guard let bytes = try send(record) else { throw XDRError("no reply") }
        let reply = try Reply(bytes)
        #expect(reply.xid == xid)
        guard reply.replyStat == 0, reply.acceptStat == 0 else {
            throw XDRError("call refused: reply_stat \(reply.replyStat) accept_stat \(reply.acceptStat)")
        }
        return reply.body
    }

    func nfs(_ procedure: UInt32, _ body: (inout XDRWriter) -> Void = { _ in }) throws -> (status: UInt32, body: XDRReader) {
        var r = try call(100_003, procedure, body)
        return (try r.uint32(), r)
    }

    // MARK: typed calls

    func mount(_ path: String) throws -> [UInt8] {
        var r = try call(100_005, 1) { $0.opaque(Array(path.utf8)) }
        let status = try r.uint32()
        guard status == 0 else { throw NFSCallError(status: status, what: "MNT \(path)") }
        return try r.opaque(limit: 64)
    }

    func getattr(_ fh: [UInt8]) throws -> Attributes {
        var (status, r) = try nfs(1) { $0.opaque(fh) }
        try check(status, "GETATTR")
        return try Attributes(&r)
    }

    func lookup(_ dir: [UInt8], _ name: String) throws -> [UInt8] {
        var (status, r) = try nfs(3) { w in
            w.opaque(dir)
            w.opaque(Array(name.utf8))
        }
        try check(status, "LOOKUP \(name)")
        return try r.opaque(limit: 64)
    }

    /// CREATE (UNCHECKED, or GUARDED), the new handle.
    func create(_ dir: [UInt8], _ name: String, mode: UInt32 = 0o644, guarded: Bool = false) throws -> [UInt8] {
        var (status, r) = try nfs(8) { w in
            w.opaque(dir)
            w.opaque(Array(name.utf8))
            w.uint32(guarded ? 1 : 0)
            Self.sattr(&w, mode: mode)
        }
        try check(status, "CREATE \(name)")
        return try Self.createdHandle(&r)
    }

    func mkdir(_ dir: [UInt8], _ name: String, mode: UInt32 = 0o755) throws -> [UInt8] {
        var (status, r) = try nfs(9) { w in
            w.opaque(dir)
            w.opaque(Array(name.utf8))
            Self.sattr(&w, mode: mode)
        }
        try check(status, "MKDIR \(name)")
        return try Self.createdHandle(&r)
    }

    func write(_ fh: [UInt8], _ offset: UInt64, _ data: [UInt8], stable: UInt32 = 2) throws -> (count: UInt32, committed: UInt32, verifier: UInt64) {
        var (status, r) = try nfs(7) { w in
            w.opaque(fh)
            w.uint64(offset)
            w.uint32(UInt32(data.count))
            w.uint32(stable)
            w.opaque(data)
        }
        try check(status, "WRITE")
        try Self.skipWcc(&r)
        return (try r.uint32(), try r.uint32(), try r.uint64())
    }

    func read(_ fh: [UInt8], _ offset: UInt64, _ count: UInt32) throws -> (data: [UInt8], eof: Bool) {
        var (status, r) = try nfs(6) { w in
            w.opaque(fh)
            w.uint64(offset)
            w.uint32(count)
        }
        try check(status, "READ")
        try Self.skipPostOp(&r)
        _ = try r.uint32()
        let eof = try r.bool()
        return (try r.opaque(limit: 1 << 21), eof)
    }

    func commit(_ fh: [UInt8]) throws -> UInt64 {
        var (status, r) = try nfs(21) { w in
            w.opaque(fh)
            w.uint64(0)
            w.uint32(0)
        }
        try check(status, "COMMIT")
        try Self.skipWcc(&r)
        return try r.uint64()
    }

    /// READDIR or READDIRPLUS of the whole directory: names in order.
    func list(_ dir: [UInt8], plus: Bool = false, count: UInt32 = 4096) throws -> [String] {
        try listEntries(dir, plus: plus, count: count).map(\.name)
    }

    /// Every entry of `dir`, page by page (each `count` bytes, READDIRPLUS maxcount 4x).
    func listEntries(_ dir: [UInt8], plus: Bool = false, count: UInt32 = 4096) throws -> [(name: String, fileid: UInt64, cookie: UInt64, handle: [UInt8]?)] {
        var entries: [(name: String, fileid: UInt64, cookie: UInt64, handle: [UInt8]?)] = []
        var cookie: UInt64 = 0
        while true {
            var (status, r) = try nfs(plus ? 17 : 16) { w in
                w.opaque(dir)
                w.uint64(cookie)
                w.uint64(0)
                w.uint32(count)
                if plus { w.uint32(count * 4) }
            }
            try check(status, "READDIR")
            try Self.skipPostOp(&r)
            _ = try r.uint64()
            while try r.bool() {
                let fileid = try r.uint64()
                let name = String(decoding: try r.opaque(limit: 255), as: UTF8.self)
                cookie = try r.uint64()
                var handle: [UInt8]?
                if plus {
                    try Self.skipPostOp(&r)
                    if try r.bool() { handle = try r.opaque(limit: 64) }
                }
                entries.append((name, fileid, cookie, handle))
            }
            if try r.bool() { return entries }
        }
    }

    func check(_ status: UInt32, _ what: String) throws {
        guard status == 0 else { throw NFSCallError(status: status, what: what) }
    }

    // MARK: encoding helpers

    static func sattr(_ w: inout XDRWriter, mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, size: UInt64? = nil) {
        w.optional(mode) { $0.uint32($1) }
        w.optional(uid) { $0.uint32($1) }
        w.optional(gid) { $0.uint32($1) }
        w.optional(size) { $0.uint64($1) }
        w.uint32(0)
        w.uint32(0)
    }

    static func createdHandle(_ r: inout XDRReader) throws -> [UInt8] {
        guard try r.bool() else { throw XDRError("no handle in the reply") }
        return try r.opaque(limit: 64)
    }

    static func skipPostOp(_ r: inout XDRReader) throws {
        if try r.bool() { _ = try Attributes(&r) }
    }

    static func skipWcc(_ r: inout XDRReader) throws {
        if try r.bool() { _ = try r.fixed(24) }
        try skipPostOp(&r)
    }
}

struct NFSCallError: Error, CustomStringConvertible {
    var status: UInt32
    var what: String
    var description: String { "\(what): NFS status \(status)" }
}

/// fattr3, decoded.
struct Attributes {
    var type: UInt32
    var mode: UInt32
    var nlink: UInt32
    var uid: UInt32
    var gid: UInt32
    var size: UInt64
    var fsid: UInt64
    var fileid: UInt64
    /// ctime as (seconds, nanoseconds).
    var ctime: (UInt32, UInt32) = (0, 0)

    init(_ r: inout XDRReader) throws {
        type = try r.uint32()
        mode = try r.uint32()
        nlink = try r.uint32()
        uid = try r.uint32()
        gid = try r.uint32()
        size = try r.uint64()
        _ = try r.uint64()
        _ = try r.uint64()
        fsid = try r.uint64()
        fileid = try r.uint64()
        _ = try r.fixed(16)  // atime, mtime
        ctime = (try r.uint32(), try r.uint32())
    }
}
