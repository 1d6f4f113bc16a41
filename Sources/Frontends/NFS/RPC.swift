// ONC RPC version 2 messages (RFC 5531): the call header with its credentials, and the
// replies: accepted (SUCCESS, PROG_UNAVAIL, PROG_MISMATCH, PROC_UNAVAIL, GARBAGE_ARGS,
// SYSTEM_ERR) or denied (RPC_MISMATCH, AUTH_ERROR). AUTH_SYS and AUTH_NONE are accepted;
// AUTH_NONE calls run as nobody.

import Engine
import FS

enum RPC {
    static let version: UInt32 = 2
    static let call: UInt32 = 0
    static let reply: UInt32 = 1
    static let maxAuthBytes = 400

    enum Flavor: UInt32 {
        case authNone = 0
        case authSys = 1
    }

    enum AcceptStat: UInt32 {
        case success = 0
        case progUnavail = 1
        case progMismatch = 2
        case procUnavail = 3
        case garbageArgs = 4
        case systemErr = 5
    }

    enum AuthStat: UInt32 {
        case badCred = 1
        case tooWeak = 5
    }

    /// The user an AUTH_NONE call runs as.
    static let nobody = Credentials(uid: 65534, gid: 65534, statelessIO: true)
}

/// A decoded call: the header, who calls, and a reader positioned at the arguments.
struct RPCCall: Sendable {
    var xid: UInt32
    var program: UInt32
    var version: UInt32
    var procedure: UInt32
    var credentials: Credentials
    /// The AUTH_SYS machine name (for MOUNT's DUMP), empty for AUTH_NONE.
    var machine: String
    var arguments: XDRReader
}

/// What a record turned out to be.
enum RPCDecoded {
    /// A call to dispatch.
    case call(RPCCall)
    /// A call refused before dispatch; the reply is ready.
    case refused([UInt8])
    /// Not a call at all, or too short to answer (no xid): dropped.
    case dropped
}

extension RPCCall {
    static func decode(_ record: [UInt8]) -> RPCDecoded {
        var reader = XDRReader(record)
        guard let xid = try? reader.uint32(), let type = try? reader.uint32(), type == RPC.call else { return .dropped }
        do {
            let rpcVersion = try reader.uint32()
            guard rpcVersion == RPC.version else {
                return .refused(RPCReply.denied(xid) { w in
                    w.uint32(0)  // RPC_MISMATCH
                    w.uint32(RPC.version)
                    w.uint32(RPC.version)
                })
            }
            let program = try reader.uint32()
            let version = try reader.uint32()
            let procedure = try reader.uint32()
            let flavor = try reader.uint32()
            let body = try reader.opaqueRange(limit: RPC.maxAuthBytes)
            _ = try reader.uint32()  // verifier flavor: ignored, as for AUTH_SYS it is AUTH_NONE
            _ = try reader.opaqueRange(limit: RPC.maxAuthBytes)
            var credentials = RPC.nobody
            var machine = ""
            switch RPC.Flavor(rawValue: flavor) {
            case .authNone:
                break
            case .authSys:
                guard let (cred, name) = try? authSys(record, body) else { return .refused(RPCReply.authError(xid, .badCred)) }
                credentials = cred
                machine = name
            case nil:
                return .refused(RPCReply.authError(xid, .tooWeak))
            }
            return .call(RPCCall(xid: xid, program: program, version: version, procedure: procedure,
                                 credentials: credentials, machine: machine, arguments: reader))
        } catch {
            return .refused(RPCReply.accepted(xid, .garbageArgs))
        }
    }

    /// AUTH_SYS credentials decoded lately, with their bytes, by a hash of those: a client
    /// sends the same ones call after call, so most calls compare bytes instead of decoding
    /// (five allocations: the body, the name, its string, the groups). Direct-mapped, so
    /// clients with different credentials (up to about `authSysSlots`) keep theirs.
    private static let authSysSlots = 64
    private static let authSysMemory = Locked<[(body: [UInt8], credentials: Credentials, machine: String)?]>(
        Array(repeating: nil, count: authSysSlots))

    /// AUTH_SYS credentials from `record[range]`, as remembered when they were seen lately.
    private static func authSys(_ record: [UInt8], _ range: Range<Int>) throws(XDRError) -> (Credentials, String) {
        let (slot, remembered) = record.withUnsafeBytes { raw -> (Int, (Credentials, String)?) in
            let body = UnsafeRawBufferPointer(rebasing: raw[range])
            // FNV-1a: the body is a few dozen bytes.
            var hash: UInt64 = 0xCBF2_9CE4_8422_2325
            for byte in body { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
            let slot = Int(hash % UInt64(authSysSlots))
            return (slot, authSysMemory.withLock { memory in
                guard let known = memory[slot], known.body.count == body.count,
                      known.body.withUnsafeBytes({ Bytes.compare($0, body) == 0 }) else { return nil }
                return (known.credentials, known.machine)
            })
        }
        if let remembered { return remembered }
        let body = Array(record[range])
        let decoded = try authSys(body)
        authSysMemory.withLock { $0[slot] = (body, decoded.0, decoded.1) }
        return decoded
    }

    /// AUTH_SYS: stamp, machine name (at most 255 bytes), uid, gid, up to 16 groups.
    private static func authSys(_ body: [UInt8]) throws(XDRError) -> (Credentials, String) {
        var reader = XDRReader(body)
        _ = try reader.uint32()
        let machine = try reader.opaque(limit: 255)
        let uid = try reader.uint32()
        let gid = try reader.uint32()
        let count = try reader.uint32()
        guard count <= 16 else { throw XDRError("\(count) groups, at most 16 allowed") }
        var groups: [UInt32] = []
        for _ in 0..<count { groups.append(try reader.uint32()) }
        try reader.expectEnd()
        return (Credentials(uid: uid, gid: gid, groups: groups, statelessIO: true), String(decoding: machine, as: UTF8.self))
    }
}

/// Reply messages.
enum RPCReply {
    /// An accepted reply: the header with a null verifier, `stat`, then `body` (the
    /// results for SUCCESS, the version range for PROG_MISMATCH).
    static func accepted(_ xid: UInt32, _ stat: RPC.AcceptStat, _ body: (inout XDRWriter) -> Void = { _ in }) -> [UInt8] {
        var w = acceptedHeader(xid, stat)
        body(&w)
        return w.bytes
    }

    /// A writer holding an accepted reply's header, for the results to follow.
    static func acceptedHeader(_ xid: UInt32, _ stat: RPC.AcceptStat) -> XDRWriter {
        var w = XDRWriter(capacity: 256)
        w.uint32(xid)
        w.uint32(RPC.reply)
        w.uint32(0)  // MSG_ACCEPTED
        w.uint32(RPC.Flavor.authNone.rawValue)
        w.uint32(0)
        w.uint32(stat.rawValue)
        return w
    }

    static func progMismatch(_ xid: UInt32, low: UInt32, high: UInt32) -> [UInt8] {
        accepted(xid, .progMismatch) { w in
            w.uint32(low)
            w.uint32(high)
        }
    }

    static func denied(_ xid: UInt32, _ body: (inout XDRWriter) -> Void) -> [UInt8] {
        var w = XDRWriter()
        w.uint32(xid)
        w.uint32(RPC.reply)
        w.uint32(1)  // MSG_DENIED
        body(&w)
        return w.bytes
    }

    static func authError(_ xid: UInt32, _ stat: RPC.AuthStat) -> [UInt8] {
        denied(xid) { w in
            w.uint32(1)  // AUTH_ERROR
            w.uint32(stat.rawValue)
        }
    }
}
