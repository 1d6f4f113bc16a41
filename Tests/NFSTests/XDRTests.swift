// XDR: round trips, padding, limits, and no trap on any truncation.

@testable import NFS
import Testing

@Suite struct XDRTests {
    @Test func roundTripAndPadding() throws {
        var w = XDRWriter()
        w.uint32(7)
        w.uint64(0x0102_0304_0506_0708)
        w.opaque([1, 2, 3, 4, 5])
        w.bool(true)
        w.optional(UInt32(9)) { $0.uint32($1) }
        w.optional(UInt32?.none) { $0.uint32($1) }
        #expect(w.bytes.count == 4 + 8 + 4 + 8 + 4 + 8 + 4)
        var r = XDRReader(w.bytes)
        #expect(try r.uint32() == 7)
        #expect(try r.uint64() == 0x0102_0304_0506_0708)
        #expect(try r.opaque(limit: 5) == [1, 2, 3, 4, 5])
        #expect(try r.bool())
        // The same opaque, located in place instead of copied.
        var located = XDRReader(w.bytes, offset: 12)
        #expect(try located.opaqueRange(limit: 5) == 16..<21)
        #expect(located.offset == 24 && Array(w.bytes[16..<21]) == [1, 2, 3, 4, 5])
        #expect(try r.optional { r throws(XDRError) in try r.uint32() } == 9)
        #expect(try r.optional { r throws(XDRError) in try r.uint32() } == nil)
        try r.expectEnd()
    }

    /// The writer keeps spare room past its encoding: growing past it, truncating into it,
    /// appending in place and patching must all leave exactly the bytes written.
    @Test func writerGrowsTruncatesAndPatches() throws {
        var w = XDRWriter(capacity: 16)
        for i in 0..<100 { w.uint32(UInt32(i)) }
        #expect(w.count == 400)
        let mark = w.count
        w.uint64(.max)
        w.opaque([9, 9, 9])
        w.truncate(to: mark)
        w.opaque([1, 2, 3])
        let data = w.count
        let eof = try w.appendInPlace { (bytes: inout [UInt8]) -> Bool in
            bytes += [UInt8](repeating: 7, count: 5000)
            return true
        }
        #expect(eof)
        w.pad()
        w.patch(0, 0xDEAD_BEEF)
        let bytes = w.bytes
        #expect(bytes.count == 400 + 8 + 5000)
        var r = XDRReader(bytes)
        #expect(try r.uint32() == 0xDEAD_BEEF)
        for i in 1..<100 { #expect(try r.uint32() == UInt32(i)) }
        #expect(try r.opaque(limit: 3) == [1, 2, 3])
        #expect(r.offset == data)
        #expect(Array(bytes[data...]) == [UInt8](repeating: 7, count: 5000))
        // Written after `bytes` was taken: the writer goes on where it was.
        w.uint32(5)
        #expect(w.bytes.count == 400 + 8 + 5000 + 4)
    }

    /// A handle written field by field is the opaque of its bytes, and reads back.
    @Test func fileHandlesEncodeAsTheirBytes() throws {
        for kind in [NFSFileHandle.Kind.inode, .snapshotsDirectory] {
            let h = NFSFileHandle(kind: kind, incarnation: 0x0102_0304_0506_0708, dataset: 9, ino: .max, generation: 3)
            var fields = XDRWriter()
            fields.handle(h)
            var whole = XDRWriter()
            whole.opaque(h.bytes)
            #expect(fields.bytes == whole.bytes)
            var r = XDRReader(fields.bytes)
            #expect(NFSFileHandle(try r.opaque(limit: 64)) == h)
        }
        #expect(NFSFileHandle([UInt8](repeating: 0, count: NFSFileHandle.size)) == nil)
    }

    @Test func limitsAndTruncationThrow() {
        var w = XDRWriter()
        w.opaque([UInt8](repeating: 1, count: 10))
        var r = XDRReader(w.bytes)
        #expect(throws: XDRError.self) { try r.opaque(limit: 9) }
        var located = XDRReader(w.bytes)
        #expect(throws: XDRError.self) { try located.opaqueRange(limit: 9) }
        for cut in 0..<w.bytes.count {
            var short = XDRReader(Array(w.bytes[0..<cut]))
            #expect(throws: XDRError.self) { try short.opaque(limit: 100) }
            var shortLocated = XDRReader(Array(w.bytes[0..<cut]))
            #expect(throws: XDRError.self) { try shortLocated.opaqueRange(limit: 100) }
        }
        var bad = XDRReader([0, 0, 0, 2])
        #expect(throws: XDRError.self) { try bad.bool() }
    }

    /// Calls with different AUTH_SYS credentials in turns, many more than the memory has
    /// slots for, each decoded as its own (the memory compares bytes, not only hashes).
    @Test func authSysCredentialsInTurnsDecodeAsTheirOwn() throws {
        for round in 0..<3 {
            for uid in UInt32(0)..<200 {
                let record = Call.record(xid: uid, program: 100003, version: 3, procedure: 0, uid: uid, gid: uid &* 7 &+ UInt32(round))
                guard case .call(let call) = RPCCall.decode(record) else {
                    Issue.record("uid \(uid): not decoded as a call")
                    continue
                }
                #expect(call.credentials.uid == uid && call.credentials.gid == uid &* 7 &+ UInt32(round) && call.machine == "test")
            }
        }
    }

}
