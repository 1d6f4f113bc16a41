// Opt-in (ZEROFS_S3_CONNECT_STRESS_SECONDS=N): the S3 store's HTTP client under
// connections that fail every way a local test server makes them fail, from several
// threads, with stores made and dropped all the while: refused connections, connections
// reset at once, closed before the reply, or answered. Nothing may trap; every request
// ends in an answer or an error.

import Engine
import Foundation
import KVTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import S3Store

@Suite struct S3ConnectionStressTests {
    static let seconds = Int(ProcessInfo.processInfo.environment["ZEROFS_S3_CONNECT_STRESS_SECONDS"] ?? "") ?? 0

    /// Takes connections on a free port and, by turns, keeps one alive for a few requests
    /// and then closes it, resets one at once, closes one after reading its request, or
    /// answers it with 404 and closes it.
    final class FlakyServer: @unchecked Sendable {
        let listener: LoopbackListener
        private let stopping = Atomic<Bool>(false)
        private let finished = Atomic<Bool>(false)

        init() throws {
            listener = try #require(LoopbackListener(backlog: 64))
            let fd = listener.fd
            Thread.detachNewThread { [self] in
                var turn = 0
                while !stopping.load(ordering: .acquiring) {
                    var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    guard poll(&ready, 1, 50) > 0 else { continue }
                    let client = accept(fd, nil, nil)
                    guard client >= 0 else { continue }
                    _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                    turn += 1
                    if turn % 2 == 0 {
                        // Kept alive for a few requests, then closed after a short while,
                        // perhaps just as the client sends the next one.
                        let requests = turn % 5
                        let pause = UInt32(turn % 7) * 500
                        Thread.detachNewThread {
                            var buffer = [UInt8](repeating: 0, count: 4096)
                            let reply = Array("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".utf8)
                            for _ in 0..<requests {
                                guard recv(client, &buffer, buffer.count, 0) > 0 else { break }
                                _ = send(client, reply, reply.count, Int32(MSG_NOSIGNAL))
                            }
                            usleep(pause)
                            close(client)
                        }
                        continue
                    }
                    switch turn / 2 % 3 {
                    case 0:
                        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                        setsockopt(client, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
                    case 1:
                        var buffer = [UInt8](repeating: 0, count: 4096)
                        _ = recv(client, &buffer, buffer.count, 0)
                    default:
                        var buffer = [UInt8](repeating: 0, count: 4096)
                        _ = recv(client, &buffer, buffer.count, 0)
                        let reply = Array("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
                        _ = send(client, reply, reply.count, Int32(MSG_NOSIGNAL))
                    }
                    close(client)
                }
                finished.store(true, ordering: .releasing)
            }
        }

        func stop() {
            stopping.store(true, ordering: .releasing)
            while !finished.load(ordering: .acquiring) { usleep(1000) }
            listener.close()
        }
    }

    @Test(.enabled(if: seconds > 0, "opt-in: ZEROFS_S3_CONNECT_STRESS_SECONDS=N"))
    func failingConnectionsNeverTrap() throws {
        let server = try FlakyServer()
        defer { server.stop() }
        let refused = try S3TestServer.unusedPort()
        let deadline = ContinuousClock.now + .seconds(Self.seconds)
        let requests = Atomic<Int>(0)
        let calls = (0..<6).map { worker in
            BackgroundCall {
                var round = 0
                while ContinuousClock.now < deadline {
                    round += 1
                    let port = (worker + round) % 4 == 0 ? refused : server.listener.port
                    var settings = S3Settings(
                        bucket: "b", endpoint: "http://127.0.0.1:\(port)",
                        credentials: S3Credentials(accessKey: "k", secretKey: "s"), allowHTTP: true)
                    settings.requestTimeout = 1
                    settings.retries = round % 3
                    settings.initialBackoff = 0.001
                    settings.maxBackoff = 0.01
                    let store = try S3ObjectStore(settings: settings, verifyConditionalPut: false)
                    for _ in 0..<(round % 4) {
                        _ = try? store.get("x")
                        requests.add(1, ordering: .relaxed)
                    }
                    // The last reference sometimes goes with a request still running on
                    // another thread.
                    if round % 5 == 0 {
                        let held = UncheckedSendable(store)
                        Thread.detachNewThread { _ = try? held.value.get("y") }
                    }
                }
            }
        }
        for call in calls { call.wait(until: deadline + .seconds(60)) }
        #expect(calls.allSatisfy { $0.finished && !$0.failed })
        print("[failingConnectionsNeverTrap] \(requests.load(ordering: .relaxed)) requests in \(Self.seconds) s")
    }
}

/// Hands a value to another thread in a test that knows it is safe to.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
