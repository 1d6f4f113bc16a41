// The server over raw TCP: pipelined calls on one connection all get replies (matched by
// xid), a record over the limit closes that connection only, garbage closes nothing
// else, and a client that stops reading holds up nobody else and still gets every reply
// whole.

@testable import NFS
import FS
import FSTestSupport
import Foundation
import KVTestSupport
import MemoryBackend
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Hands a value to another thread in a test that knows the threads do not share it.
final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// A blocking TCP connection to 127.0.0.1:port.
final class RawConnection {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw XDRError("connect failed: errno \(errno)") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    /// The next record, or nil at end of stream.
    func receiveRecord(decoder: inout RecordDecoder, pending: inout [[UInt8]]) -> [UInt8]? {
        while pending.isEmpty {
            var buffer = [UInt8](repeating: 0, count: 65536)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            guard let records = try? decoder.feed(buffer[0..<n]) else { return nil }
            pending += records
        }
        return pending.removeFirst()
    }
}

@Suite struct ConnectionTests {
    @Test func pipelinedCallsAndAnOversizedRecord() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { try? f.fs.close() }
        var options = NFSServer.Options()
        options.port = 0
        options.maxRecord = 64 << 10
        let server = try NFSServer.start(NFSService(pool: f.fs.pool), options: options)
        defer { server.stop() }

        // 500 calls in one write: 500 replies, every xid once, though the workers answer
        // them at the same time (one writes, the others leave theirs in its queue).
        let pipelined = try RawConnection(port: server.port)
        var stream: [UInt8] = []
        for xid in 1...500 { stream += RecordDecoder.frame(Call.record(xid: UInt32(xid), program: 100_003, version: 3, procedure: 0)) }
        pipelined.send(stream)
        var decoder = RecordDecoder(limit: 1 << 20)
        var pending: [[UInt8]] = []
        var xids: Set<UInt32> = []
        for _ in 1...500 {
            let reply = try Reply(try #require(pipelined.receiveRecord(decoder: &decoder, pending: &pending)))
            #expect(reply.acceptStat == 0)
            xids.insert(reply.xid)
        }
        #expect(xids == Set(1...500))

        // A header announcing 2 GiB: that connection is closed, the other still served.
        let hostile = try RawConnection(port: server.port)
        hostile.send([0xFF, 0xFF, 0xFF, 0xFF])
        var hostileDecoder = RecordDecoder(limit: 1 << 20)
        var hostilePending: [[UInt8]] = []
        #expect(hostile.receiveRecord(decoder: &hostileDecoder, pending: &hostilePending) == nil)
        pipelined.send(RecordDecoder.frame(Call.record(xid: 99, program: 100_003, version: 3, procedure: 0)))
        let after = try Reply(try #require(pipelined.receiveRecord(decoder: &decoder, pending: &pending)))
        #expect(after.xid == 99 && after.acceptStat == 0)

        // Garbage that is not a call (too short for an xid, a reply) gets no answer and
        // leaves the connection open.
        pipelined.send(RecordDecoder.frame([1, 2]))
        pipelined.send(RecordDecoder.frame(Call.record(xid: 100, program: 100_099, version: 1, procedure: 0)))
        let unknown = try Reply(try #require(pipelined.receiveRecord(decoder: &decoder, pending: &pending)))
        #expect(unknown.xid == 100 && unknown.acceptStat == 1)
    }

    @Test func aClientThatStopsReadingHoldsUpNobodyAndGetsEveryReplyWhole() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { try? f.fs.close() }
        let (file, content) = try Self.bigFile(f)

        var options = NFSServer.Options()
        options.port = 0
        options.threads = 2
        options.maxInFlight = 4
        let service = NFSService(pool: f.fs.pool)
        let server = try NFSServer.start(service, options: options)
        defer { server.stop() }

        // 48 reads of 1 MiB in one go, far more than the socket buffers hold, and no
        // reading: the replies that do not fit go on through the event loop, and once 4
        // wait there the server runs no more of this client's calls.
        let slow = try RawConnection(port: server.port)
        // The send blocks once the server stops reading, so it runs on a thread of its own.
        let sending = UncheckedBox((slow, Self.reads(of: file, xids: 1...48)))
        Thread { sending.value.0.send(sending.value.1) }.start()
        Thread.sleep(forTimeInterval: 0.5)

        // Another client is served meanwhile: no worker waits for the slow one.
        let other = try RawConnection(port: server.port)
        other.send(RecordDecoder.frame(Call.record(xid: 7, program: 100_003, version: 3, procedure: 0)))
        var otherDecoder = RecordDecoder(limit: 1 << 20)
        var otherPending: [[UInt8]] = []
        let answer = try Reply(try #require(other.receiveRecord(decoder: &otherDecoder, pending: &otherPending)))
        #expect(answer.xid == 7 && answer.acceptStat == 0)
        // The socket buffers hold a few replies, the event loop 4: not 48 (the server's
        // memory would hold every reply a client never reads).
        let ran = service.callCounts["nfs.READ"] ?? 0
        #expect(ran >= 4 && ran <= 24, "\(ran) reads ran for a client reading no replies")

        // Every reply arrives once, whole and in one piece.
        var decoder = RecordDecoder(limit: 2 << 20)
        var pending: [[UInt8]] = []
        var xids: Set<UInt32> = []
        for _ in 1...48 {
            var reply = try Reply(try #require(slow.receiveRecord(decoder: &decoder, pending: &pending)))
            #expect(reply.acceptStat == 0)
            try Self.expectWholeRead(&reply, content)
            xids.insert(reply.xid)
        }
        #expect(xids == Set(1...48))
    }

    /// READ calls of the first MiB of `file`, framed, one per xid.
    private static func reads(of file: [UInt8], xids: ClosedRange<Int>) -> [UInt8] {
        var stream: [UInt8] = []
        for xid in xids {
            let args = Call.args { w in
                w.opaque(file)
                w.uint64(0)
                w.uint32(1 << 20)
            }
            stream += RecordDecoder.frame(Call.record(xid: UInt32(xid), program: 100_003, version: 3, procedure: 6, args: args))
        }
        return stream
    }

    /// Writes a file "big" of 1 MiB at the top of `f`: its handle and its bytes.
    private static func bigFile(_ f: FSFixture) throws -> (file: [UInt8], content: [UInt8]) {
        let direct = NFSTestClient(NFSService(pool: f.fs.pool))
        let file = try direct.create(try direct.mount("/"), "big")
        let content = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 12) }
        _ = try direct.write(file, 0, content)
        return (file, content)
    }

    /// Checks a READ reply: NFS3_OK, and all of `content`.
    private static func expectWholeRead(_ reply: inout Reply, _ content: [UInt8]) throws {
        #expect(try reply.body.uint32() == 0)
        try NFSTestClient.skipPostOp(&reply.body)
        #expect(try reply.body.uint32() == 1 << 20)
        _ = try reply.body.bool()
        #expect(try reply.body.opaque(limit: 2 << 20) == content)
    }

    /// A NULL call on `connection` answered, or nil when the server closed it.
    private func null(_ connection: RawConnection, xid: UInt32) -> Reply? {
        connection.send(RecordDecoder.frame(Call.record(xid: xid, program: 100_003, version: 3, procedure: 0)))
        var decoder = RecordDecoder(limit: 1 << 20)
        var pending: [[UInt8]] = []
        return connection.receiveRecord(decoder: &decoder, pending: &pending).flatMap { try? Reply($0) }
    }

    @Test func aConnectionBeyondTheLimitIsClosedAtOnce() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { try? f.fs.close() }
        var options = NFSServer.Options()
        options.port = 0
        options.maxConnections = 2
        let server = try NFSServer.start(NFSService(pool: f.fs.pool), options: options)
        defer { server.stop() }
        var first: RawConnection? = try RawConnection(port: server.port)
        let second = try RawConnection(port: server.port)
        #expect(null(try #require(first), xid: 1)?.xid == 1)
        #expect(null(second, xid: 2)?.xid == 2)
        let third = try RawConnection(port: server.port)
        #expect(null(third, xid: 3) == nil, "a third connection was served beyond the limit of 2")
        // Once one ends, a new one is served.
        first = nil
        let deadline = Date().addingTimeInterval(10)
        while server.connections.current > 1, Date() < deadline { usleep(10_000) }
        let fourth = try RawConnection(port: server.port)
        #expect(null(fourth, xid: 4)?.xid == 4)
        #expect(null(second, xid: 5)?.xid == 5)
    }

    /// Clients that pipeline 1 MiB READs on several connections and read no replies: the
    /// server holds their replies within its budget (plus two replies per connection), not
    /// `maxInFlight` per connection, by closing the connection stalled longest when one
    /// would hold more; a client that reads its replies, pipelining them too, is served
    /// all along.
    @Test func repliesNobodyReadsStayWithinTheBudget() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { try? f.fs.close() }
        let (file, content) = try Self.bigFile(f)

        var options = NFSServer.Options()
        options.port = 0
        options.threads = 2
        options.maxUnsentReplyBytes = 4 << 20
        let server = try NFSServer.start(NFSService(pool: f.fs.pool), options: options)
        defer { server.stop() }
        let stuck = try (0..<4).map { _ in try RawConnection(port: server.port) }
        for connection in stuck {
            let sending = UncheckedBox((connection, Self.reads(of: file, xids: 1...32)))
            Thread { sending.value.0.send(sending.value.1) }.start()
        }
        Thread.sleep(forTimeInterval: 1)

        // A client that reads its replies, slowly, two READs at a time (what it holds alone
        // fits in the budget), gets every one, whole.
        let reader = try RawConnection(port: server.port)
        var decoder = RecordDecoder(limit: 2 << 20)
        var pending: [[UInt8]] = []
        for window in 0..<4 {
            reader.send(Self.reads(of: file, xids: (100 + 2 * window)...(101 + 2 * window)))
            for _ in 0..<2 {
                Thread.sleep(forTimeInterval: 0.1)
                var reply = try Reply(try #require(reader.receiveRecord(decoder: &decoder, pending: &pending)))
                try Self.expectWholeRead(&reply, content)
            }
        }
        let bound = options.maxUnsentReplyBytes + 2 * 5 * ((1 << 20) + 4096)
        #expect(server.replyBudget.peakBytesHeld <= bound, "held \(server.replyBudget.peakBytesHeld) bytes of replies nobody read")
        #expect(server.replyBudget.peakBytesHeld >= options.maxUnsentReplyBytes / 2, "the stuck clients never filled the budget: the test proves nothing")
        // Some stuck connection was closed before its 32 replies.
        var closed = 0
        for connection in stuck {
            var decoder = RecordDecoder(limit: 2 << 20)
            var pending: [[UInt8]] = []
            var got = 0
            while got < 32, connection.receiveRecord(decoder: &decoder, pending: &pending) != nil { got += 1 }
            if got < 32 { closed += 1 }
        }
        #expect(closed >= 1)
    }

    /// The connection the budget closes to make room: the one whose socket has taken
    /// nothing for longest, if that was before the one asking; each at most once; one that
    /// holds nothing any more never.
    @Test func theBudgetClosesTheConnectionStalledLongest() {
        final class Holder: Sendable {}
        let budget = ReplyBudget(limit: 10)
        let (a, b, c) = (Holder(), Holder(), Holder())
        let closed = Mutex<[String]>([])
        budget.began(ObjectIdentifier(a), at: 100) { closed.withLock { $0.append("a") } }
        budget.began(ObjectIdentifier(b), at: 200) { closed.withLock { $0.append("b") } }
        budget.began(ObjectIdentifier(c), at: 300) { closed.withLock { $0.append("c") } }
        budget.progressed(ObjectIdentifier(a), at: 400)
        budget.stalest(before: 350, excluding: ObjectIdentifier(c))?()
        #expect(closed.withLock { $0 } == ["b"])
        #expect(budget.stalest(before: 350, excluding: ObjectIdentifier(c)) == nil, "b was chosen twice, or a though it got a reply out since")
        #expect(budget.stalest(before: 250, excluding: ObjectIdentifier(a)) == nil, "c began holding after the asker's last progress")
        budget.released(ObjectIdentifier(a))
        #expect(budget.stalest(before: 1000, excluding: ObjectIdentifier(b)).map { $0(); return true } == true)
        #expect(closed.withLock { $0 } == ["b", "c"])
        #expect(budget.stalest(before: 1000, excluding: ObjectIdentifier(b)) == nil, "a holds nothing any more")
    }
}
