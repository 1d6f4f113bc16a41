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

    private init(server: GRPCServer<HTTP2ServerTransport.Posix>, serving: Task<Void, any Error>, host: String, port: Int) {
        self.server = server
        self.serving = serving
        self.host = host
        self.port = port
    }

    /// Starts serving `service` on host:port (port 0: any free port) and returns once the
    /// socket listens. Throws when the address cannot be bound.
    public static func start(_ service: AdminService, host: String, port: Int) throws -> AdminServer {
        let address: GRPCNIOTransportCore.SocketAddress = host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port)
        let transport = HTTP2ServerTransport.Posix(address: address, transportSecurity: .plaintext)
        let server = GRPCServer(transport: transport, services: [service])
        let serving = Task { try await server.serve() }
        do {
            let bound = try runBlocking { try await transport.listeningAddress }
            let port = bound.ipv4?.port ?? bound.ipv6?.port ?? port
            return AdminServer(server: server, serving: serving, host: host, port: port)
        } catch {
            server.beginGracefulShutdown()
            throw KVError(.io, "cannot serve gRPC on \(host):\(port): \(error)")
        }
    }

    /// Stops taking calls, lets running ones finish, and returns when the server is down.
    public func stop() {
        server.beginGracefulShutdown()
        _ = try? runBlocking { [serving] in try await serving.value }
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
