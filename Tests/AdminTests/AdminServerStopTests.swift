// Stopping the AdminService's HTTP/2 server while a client holds a call open: the client
// opened the call (its HEADERS) and never sends the request or its end. `stop` lets the
// call run for the grace time, then closes the connection and returns.

@testable import Admin
import Dispatch
import Engine
import FS
import Foundation
import KVTestSupport
import MemoryBackend
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct AdminServerStopTests {
    /// An HTTP/2 client preface, empty SETTINGS, and the HEADERS of a GetStats call on
    /// stream 1 without END_STREAM (HPACK, no Huffman, nothing indexed).
    static func openCallBytes() -> [UInt8] {
        func frame(type: UInt8, flags: UInt8, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
            let length = UInt32(payload.count)
            return [UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), type, flags,
                    UInt8(stream >> 24 & 0x7F), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)] + payload
        }
        func string(_ text: String) -> [UInt8] { [UInt8(text.utf8.count)] + Array(text.utf8) }
        var headers: [UInt8] = [0x83, 0x86]  // :method POST, :scheme http (static table)
        headers += [0x04] + string("/zerofs.admin.v1.AdminService/GetStats")  // :path, name indexed
        headers += [0x01] + string("127.0.0.1")  // :authority, name indexed
        headers += [0x0F, 0x10] + string("application/grpc")  // content-type (index 31)
        headers += [0x00] + string("te") + string("trailers")
        return Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
            + frame(type: 0x4, flags: 0, stream: 0, [])
            + frame(type: 0x1, flags: 0x4, stream: 1, headers)
    }

    /// Serves `body` a server holding a GetStats call open on a raw HTTP/2 connection;
    /// `answersPings`: the client acknowledges the server's PINGs, as HTTP/2 stacks do.
    func withOpenCall(answersPings: Bool, _ body: (AdminServer, Int32) async throws -> Void) async throws {
        let harness = StoreHarness(MemoryBackendFactory())
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        let store = try harness.open(path)
        var options = FSOptions()
        options.backgroundReclaim = false
        let pool = try Pool.open(store, options: options)
        let service = AdminService(pool: pool, store: store, location: path)
        let server = try await AdminServer.serve(service, host: "127.0.0.1", port: 0, graceTime: .milliseconds(300))

        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(server.port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0)
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let call = Self.openCallBytes()
        #expect(call.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == call.count)
        // The server's SETTINGS: the connection is up and the call's HEADERS are read.
        var first = [UInt8](repeating: 0, count: 9)
        #expect(first.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_WAITALL)) } == 9)
        #expect(first[3] == 0x4, "a SETTINGS frame first")
        _ = Self.skip(fd, Int(first[0]) << 16 | Int(first[1]) << 8 | Int(first[2]))
        usleep(100_000)
        let reader = answersPings ? Thread { Self.answerPingsUntilClosed(fd) } : nil
        reader?.start()
        try await body(server, fd)
        try pool.close()
        try store.close()
    }

    /// Reads and drops `count` bytes; false at the end of the stream.
    static func skip(_ fd: Int32, _ count: Int) -> Bool {
        var buffer = [UInt8](repeating: 0, count: max(count, 1))
        guard count > 0 else { return true }
        return buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count, Int32(MSG_WAITALL)) } == count
    }

    /// Reads frames, acknowledging each PING, until the server closes the connection.
    static func answerPingsUntilClosed(_ fd: Int32) {
        while true {
            var header = [UInt8](repeating: 0, count: 9)
            guard header.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, 9, Int32(MSG_WAITALL)) }) == 9 else { return }
            let length = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
            var payload = [UInt8](repeating: 0, count: max(length, 1))
            if length > 0, payload.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, length, Int32(MSG_WAITALL)) }) != length { return }
            if header[3] == 0x6, header[4] & 0x1 == 0, length == 8 {
                let ack: [UInt8] = [0, 0, 8, 0x6, 0x1, 0, 0, 0, 0] + payload[0..<8]
                _ = ack.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
        }
    }

    /// Stops `server`; whether that ended within 10 minutes. Alone it takes the grace
    /// time, or 2 s more; the margin is for a full test run, whose other tests may hold
    /// every thread of the concurrency pool for minutes, and this wait's timer with them.
    static func stops(_ server: AdminServer) async -> Bool {
        await awaitEnd(of: Task { await server.shutDown() }, within: .seconds(600))
    }

    /// A client whose HTTP/2 stack answers PINGs gets the grace time, then its connection
    /// closes.
    @Test func aCallNeverSentWholeGetsTheGraceTimeThenItsConnectionCloses() async throws {
        try await withOpenCall(answersPings: true) { server, fd in
            #expect(await Self.stops(server), "stop() still waits for the call that was never sent whole")
            // The reader thread ends at the connection's end; then a read here does too.
            var byte: UInt8 = 0
            #expect(recv(fd, &byte, 1, Int32(MSG_PEEK)) <= 0, "the server closed the connection")
        }
    }

    /// One that never answers the shutdown's PING never starts the grace time: the stop
    /// gives up waiting after it all the same.
    @Test func aClientThatNeverAnswersPingsDoesNotHoldTheStop() async throws {
        try await withOpenCall(answersPings: false) { server, _ in
            #expect(await Self.stops(server), "stop() still waits for a client that never answers")
        }
    }
}
