// Random and mutated messages never crash the server or break the filesystem: valid calls
// of all 28 procedures (22 NFS, 6 MOUNT) mutated byte-wise (at least half of the
// messages, so they reach the procedure decoders), plus random bytes, go to the
// dispatcher, and some through the record decoder; afterwards the server still answers
// and fsck finds the store clean. ZEROFS_FUZZ_MESSAGES runs more.

@testable import NFS
import FS
import FSTestSupport
import KVTestSupport
import MemoryBackend
import Testing

@Suite struct FuzzTests {
    /// One valid call of every procedure, with real handles.
    static func corpus(_ c: NFSTestClient) throws -> [[UInt8]] {
        let root = try c.mount("/")
        let dir = try c.mkdir(root, "fuzz")
        let file = try c.create(dir, "f")
        _ = try c.write(file, 0, Array(repeating: 7, count: 100))
        func nfs(_ procedure: UInt32, _ body: (inout XDRWriter) -> Void) -> [UInt8] {
            Call.record(xid: procedure, program: 100_003, version: 3, procedure: procedure, args: Call.args(body))
        }
        func dirop(_ w: inout XDRWriter, _ name: String) {
            w.opaque(dir)
            w.opaque(Array(name.utf8))
        }
        var calls: [[UInt8]] = [
            nfs(0) { _ in },
            nfs(1) { $0.opaque(file) },
            nfs(2) { w in w.opaque(file); NFSTestClient.sattr(&w, mode: 0o640, size: 50); w.bool(false) },
            nfs(3) { dirop(&$0, "f") },
            nfs(4) { w in w.opaque(file); w.uint32(0x3F) },
            nfs(5) { $0.opaque(file) },
            nfs(6) { w in w.opaque(file); w.uint64(0); w.uint32(64) },
            nfs(7) { w in w.opaque(file); w.uint64(10); w.uint32(4); w.uint32(0); w.opaque([1, 2, 3, 4]) },
            nfs(8) { w in dirop(&w, "c"); w.uint32(0); NFSTestClient.sattr(&w, mode: 0o644) },
            nfs(9) { w in dirop(&w, "m"); NFSTestClient.sattr(&w, mode: 0o755) },
            nfs(10) { w in dirop(&w, "s"); NFSTestClient.sattr(&w); w.opaque(Array("f".utf8)) },
            nfs(11) { w in dirop(&w, "p"); w.uint32(7); NFSTestClient.sattr(&w, mode: 0o644) },
            nfs(12) { dirop(&$0, "c") },
            nfs(13) { dirop(&$0, "m") },
            nfs(14) { w in dirop(&w, "f"); dirop(&w, "g") },
            nfs(15) { w in w.opaque(file); dirop(&w, "h") },
            nfs(16) { w in w.opaque(dir); w.uint64(0); w.uint64(0); w.uint32(1024) },
            nfs(17) { w in w.opaque(dir); w.uint64(0); w.uint64(0); w.uint32(512); w.uint32(4096) },
            nfs(18) { $0.opaque(root) },
            nfs(19) { $0.opaque(root) },
            nfs(20) { $0.opaque(root) },
            nfs(21) { w in w.opaque(file); w.uint64(0); w.uint32(0) },
        ]
        for procedure: UInt32 in 0...5 {
            calls.append(Call.record(xid: 100 + procedure, program: 100_005, version: 3, procedure: procedure, args: Call.args { w in
                if procedure == 1 || procedure == 3 { w.opaque(Array("/fuzz".utf8)) }
            }))
        }
        return calls
    }

    static func mutate(_ call: [UInt8], _ random: inout SeededGenerator) -> [UInt8] {
        var bytes = call
        for _ in 0..<Int.random(in: 1...4, using: &random) {
            switch Int.random(in: 0..<6, using: &random) {
            case 0, 1:
                // A byte of the arguments (past the fixed 40-byte header and credentials)
                // most of the time, so the procedure decoders see it.
                let low = Int.random(in: 0..<4, using: &random) == 0 ? 0 : min(bytes.count, 60)
                if low < bytes.count { bytes[Int.random(in: low..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random) }
            case 2:
                bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &random)))
            case 3:
                bytes += (0..<Int.random(in: 1...16, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            case 4:
                // A length or count field set to something large.
                if bytes.count >= 64 {
                    let at = Int.random(in: 40..<(bytes.count - 4), using: &random) & ~3
                    let value = [UInt32.max, 0x8000_0000, 1 << 20, 65, 4097].randomElement(using: &random)!
                    for i in 0..<4 { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (24 - 8 * UInt32(i))) }
                }
            default:
                if !bytes.isEmpty { bytes.remove(at: Int.random(in: 0..<bytes.count, using: &random)) }
            }
        }
        return bytes
    }

    @Test func randomAndMutatedMessages() throws {
        let seed = TestSeed.resolve("randomAndMutatedMessages")
        var random = SeededGenerator(seed: seed)
        let f = try FSFixture(MemoryBackendFactory())
        defer { try? f.fs.close() }
        let service = NFSService(pool: f.fs.pool)
        let client = NFSTestClient(service)
        let corpus = try Self.corpus(client)
        #expect(corpus.count == 28)
        let messages = TestSeed.environmentInt("ZEROFS_FUZZ_MESSAGES", default: 100_000)
        var mutated = 0
        var answered = 0
        var reachedProcedures = 0
        var decoder = RecordDecoder(limit: 1 << 16)
        for i in 0..<messages {
            let message: [UInt8]
            if i % 3 != 0 {
                message = Self.mutate(corpus[i % corpus.count], &random)
                mutated += 1
            } else {
                message = (0..<Int.random(in: 0...120, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            }
            if i % 10 == 0 {
                // Through the record decoder too, framed or not.
                let framed = Bool.random(using: &random) ? RecordDecoder.frame(message) : message
                do {
                    for record in try decoder.feed(framed) where service.handle(record, client: "fuzz") != nil { answered += 1 }
                } catch {
                    decoder = RecordDecoder(limit: 1 << 16)
                }
            } else if let reply = service.handle(message, client: "fuzz") {
                answered += 1
                // SUCCESS or GARBAGE_ARGS: the call got past the RPC header to a procedure.
                if i % 3 != 0, let decoded = try? Reply(reply), decoded.replyStat == 0, [0, 4].contains(decoded.acceptStat) {
                    reachedProcedures += 1
                }
            }
        }
        #expect(mutated * 2 >= messages)
        #expect(answered > 0)
        // Most mutations keep the header intact and reach a procedure's decoder.
        #expect(reachedProcedures * 2 > mutated, "\(reachedProcedures) of \(mutated) mutated calls reached a procedure")
        // Still serving, and nothing broken.
        let root = try client.mount("/")
        #expect(try client.getattr(root).type == 2)
        try f.expectClean("after \(messages) messages, seed \(seed)")
    }
}
