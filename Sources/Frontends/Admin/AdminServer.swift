// Serving the AdminService over gRPC's HTTP/2 transport (plaintext), and reaching it:
// over the network, or in this process when the command line opened the store itself.

import Dispatch
import Engine
import GRPCCore
import GRPCInProcessTransport
import GRPCNIOTransportHTTP2
import Synchronization

/// Runs `body` to completion from synchronous code (the command line, `zerofs run`),
/// blocking this thread; never call it from an async context.
///
/// With `timeout`, gives up waiting after it (`.deadlineExceeded`); `body` then runs on
/// unwatched, so only for a caller about to end the process.
public func runBlocking<T: Sendable>(within timeout: Duration? = nil, _ body: @escaping @Sendable () async throws -> T) throws -> T {
    let outcome = Locked<Result<T, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        let result: Result<T, any Error>
        do { result = .success(try await body()) } catch { result = .failure(error) }
        outcome.withLock { $0 = result }
        done.signal()
    }
    if let timeout {
        let (seconds, attoseconds) = timeout.components
        let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
        guard done.wait(timeout: .now() + .nanoseconds(nanoseconds)) == .success else {
            throw RPCError(code: .deadlineExceeded, message: "no answer within \(timeout)")
        }
    } else {
        done.wait()
    }
    return try outcome.withLock { $0! }.get()
}

/// One listening AdminService.
public final class AdminServer: Sendable {
    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let serving: Task<Void, any Error>
    public let host: String
    public let port: Int
    let graceTime: Duration

    private init(server: GRPCServer<HTTP2ServerTransport.Posix>, serving: Task<Void, any Error>, host: String, port: Int, graceTime: Duration) {
        self.server = server
        self.serving = serving
        self.host = host
        self.port = port
        self.graceTime = graceTime
    }

    /// How long `stop` lets running calls finish before it closes their connections: a
    /// client that opened a call and never finished sending it (or stopped reading its
    /// reply) would otherwise hold `zerofs run` from stopping.
    public static let defaultGraceTime = Duration.seconds(5)

    /// Starts serving `service` on host:port (port 0: any free port) and returns once the
    /// socket listens. Throws when the address cannot be bound. Blocks this thread: for
    /// synchronous callers (`zerofs run`); tasks use `serve`.
    public static func start(_ service: AdminService, host: String, port: Int, graceTime: Duration = defaultGraceTime) throws -> AdminServer {
        try runBlocking { try await serve(service, host: host, port: port, graceTime: graceTime) }
    }

    /// `start` for tasks.
    public static func serve(_ service: AdminService, host: String, port: Int, graceTime: Duration = defaultGraceTime) async throws -> AdminServer {
        let address: GRPCNIOTransportCore.SocketAddress = host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port)
        let config = HTTP2ServerTransport.Posix.Config.defaults { $0.connection.maxGraceTime = graceTime }
        let transport = HTTP2ServerTransport.Posix(address: address, transportSecurity: .plaintext, config: config)
        let server = GRPCServer(transport: transport, services: [service])
        let serving = Task { try await server.serve() }
        do {
            let bound = try await transport.listeningAddress
            let port = bound.ipv4?.port ?? bound.ipv6?.port ?? port
            return AdminServer(server: server, serving: serving, host: host, port: port, graceTime: graceTime)
        } catch {
            server.beginGracefulShutdown()
            throw KVError(.io, "cannot serve gRPC on \(host):\(port): \(error)")
        }
    }

    /// Stops taking calls, lets running ones finish (for the grace time at most: then their
    /// connections close), and returns when the server is down. A client whose HTTP/2
    /// stack does not answer the shutdown's PING never starts that grace time: after it
    /// and two seconds more the server is cancelled, and `stop` returns a second later
    /// at most (its calls may run on; the caller is about to close what they use).
    /// Blocks this thread: for synchronous callers; tasks use `shutDown`.
    public func stop() {
        _ = try? runBlocking { await self.shutDown() }
    }

    /// `stop` for tasks.
    public func shutDown() async {
        server.beginGracefulShutdown()
        if await awaitEnd(of: serving, within: graceTime + .seconds(2)) { return }
        serving.cancel()
        _ = await awaitEnd(of: serving, within: .seconds(1))
    }
}

/// Waits for `task` to end, for `limit` at most: whether it ended. (Awaiting a task's
/// value is deaf to cancellation, so the wait is a race between two tasks; the losing
/// one runs on to its end.)
func awaitEnd<T: Sendable, F: Error>(of task: Task<T, F>, within limit: Duration) async -> Bool {
    let answered = Locked(false)
    return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
        let answer: @Sendable (Bool) -> Void = { ended in
            if answered.withLock({ done in defer { done = true }; return !done }) { continuation.resume(returning: ended) }
        }
        Task {
            _ = await task.result
            answer(true)
        }
        Task {
            try? await Task.sleep(for: limit)
            answer(false)
        }
    }
}

/// Where the command line finds the AdminService.
public enum AdminEndpoint: Sendable {
    /// A running server.
    case remote(host: String, port: Int)
    /// A service over a store this process opened.
    case local(AdminService)
}

public enum AdminClient {
    /// Calls `body` with a client of the service at `endpoint`, blocking this thread until
    /// it returns: for synchronous callers only (never from a task: a blocked thread of the
    /// cooperative pool may be the one the call needs).
    /// With `timeout`, an answer that does not come in time is `.deadlineExceeded`.
    public static func with<T: Sendable>(
        _ endpoint: AdminEndpoint, within timeout: Duration? = nil,
        _ body: @escaping @Sendable (any Zerofs_Admin_V1_AdminService.ClientProtocol) async throws -> T
    ) throws -> T {
        try runBlocking(within: timeout) { try await connect(endpoint, body) }
    }

    /// Calls `body` with a client of the service at `endpoint`.
    public static func connect<T: Sendable>(
        _ endpoint: AdminEndpoint, _ body: @escaping @Sendable (any Zerofs_Admin_V1_AdminService.ClientProtocol) async throws -> T
    ) async throws -> T {
        switch endpoint {
        case .remote(let host, let port):
            let target: any ResolvableTarget = host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port)
            let transport = try HTTP2ClientTransport.Posix(target: target, transportSecurity: .plaintext)
            return try await withGRPCClient(transport: transport) { client in
                try await body(Zerofs_Admin_V1_AdminService.Client(wrapping: client))
            }
        case .local(let service):
            let transport = InProcessTransport()
            return try await withGRPCServer(transport: transport.server, services: [service]) { _ in
                try await withGRPCClient(transport: transport.client) { client in
                    try await body(Zerofs_Admin_V1_AdminService.Client(wrapping: client))
                }
            }
        }
    }
}
