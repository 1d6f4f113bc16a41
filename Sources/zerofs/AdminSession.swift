// How an admin command reaches the filesystem: over gRPC when a server for this store
// answers at the config's address; otherwise by opening the store itself (only if it gets
// the store's lock), saying so on stderr. Errors end the command with one line on stderr.

import Admin
import ArgumentParser
import BackendCatalog
import Config
import Engine
import FS
import GRPCCore
import Workloads

#if canImport(Glibc)
import Glibc
#endif

/// -c, and overrides of what the config file says.
struct StoreOptions: ParsableArguments {
    @Option(name: [.customShort("c"), .customLong("config")], help: "The TOML config file (default: ./zerofs.toml when it exists, else built-in defaults).")
    var config: String?
    @Option(help: "Backend of the store (lsm, rocksdb, lmdb), overriding the config.") var backend: String?
    @Option(help: "Folder of the store, overriding the config.") var path: String?
    @Option(name: .customLong("rpc-address"), help: "HOST:PORT of the AdminService, overriding the config.") var rpcAddress: String?

    /// The configuration with the overrides applied, or a one-line error.
    func load(_ command: String) -> ZeroFSConfig {
        var config = ZeroFSConfig()
        let file = self.config ?? (FileOps.kind(of: "zerofs.toml", followingLinks: true) == .file ? "zerofs.toml" : nil)
        if let file {
            do {
                config = try ZeroFSConfig.load(file, environment: currentEnvironment()) { name, options in
                    try BackendCatalog.standard.factory(named: name).validate(options)
                }
            } catch {
                fail(command, error.description)
            }
        }
        if let backend {
            guard ZeroFSConfig.backends.contains(backend) else { fail(command, "--backend must be lsm, rocksdb or lmdb, got '\(backend)'") }
            config.backend = backend
            config.backendNamed = true
        }
        if let path {
            guard !path.isEmpty else { fail(command, "--path must name a folder, got ''") }
            // Taken for a remote store it would bypass the refusals below and open the
            // store in S3 here, fencing the server that serves it.
            guard !path.contains("://") else {
                fail(command, "--path names a local folder, got '\(path)'; a store in S3 is storage.url = \"s3://bucket/prefix\" in the config (-c)")
            }
            config.path = path
        }
        // The config's own checks, again with the overrides.
        if let url = config.url, config.backend != "lsm" {
            fail(command, "--backend \(config.backend): only the lsm backend keeps a store in S3, and the config's storage.url is \(url)")
        }
        if let rpcAddress {
            guard let address = ServerAddress(rpcAddress) else { fail(command, "--rpc-address must be HOST:PORT, got '\(rpcAddress)'") }
            config.rpcAddresses = [address]
        }
        return config
    }
}

struct OutputOptions: ParsableArguments {
    @Flag(help: "Print JSON (the proto3 JSON of the AdminService reply) instead of a table.") var json = false
}

/// Ends the process with one line on stderr and status 1.
func fail(_ command: String, _ message: String) -> Never {
    printError("\(command): \(message)")
    exit(1)
}

func currentEnvironment() -> [String: String] {
    var out: [String: String] = [:]
    var pointer = environ
    while let entry = pointer.pointee {
        let text = String(cString: entry)
        if let equals = text.firstIndex(of: "=") { out[String(text[..<equals])] = String(text[text.index(after: equals)...]) }
        pointer += 1
    }
    return out
}

/// Whether something accepts TCP connections at host:port (a refused or unreachable
/// address answers false at once; an address that does not answer, after 2 seconds).
func listening(_ address: ServerAddress) -> Bool {
    acceptsTCPConnections(host: address.host, port: address.port, within: 2) ?? false
}

/// An open connection to the AdminService, remote or over a store opened here.
final class AdminSession {
    let command: String
    let config: ZeroFSConfig
    let endpoint: AdminEndpoint
    private var pool: Pool?
    private var store: (any KVBackend)?

    /// Finds the server, or opens the store.
    init(_ command: String, _ options: StoreOptions) {
        self.command = command
        config = options.load(command)
        let address = config.rpcAddresses[0]
        let storePath = config.url ?? FileOps.canonicalPath(config.path)
        if listening(address) {
            let served: (path: String, backend: String)
            do {
                // A listener that never answers (a stuck server, another program) must
                // not hang the command; the calls after this one may take long (a scrub).
                served = try AdminClient.with(.remote(host: address.host, port: address.port), within: .seconds(10)) { client in
                    var request = Zerofs_Admin_V1_GetStatsRequest()
                    request.brief = true
                    let stats = try await client.getStats(request)
                    return (stats.path, stats.backend)
                }
            } catch {
                fail(command, "something listens at \(address) but does not answer as a zerofs server: \(AdminErrors.status(error).message)")
            }
            guard served.path == storePath else {
                fail(command, "the server at \(address) serves \(served.path), not \(storePath); pass its config with -c or --rpc-address")
            }
            // Only a backend the command names: left at its default, the server's is taken.
            guard served.backend == config.backend || !config.backendNamed else {
                fail(command, "the server at \(address) serves \(storePath) with the \(served.backend) backend, not \(config.backend); pass its config with -c or --backend \(served.backend)")
            }
            endpoint = .remote(host: address.host, port: address.port)
            return
        }
        let (pool, store) = Self.open(command, config)
        self.pool = pool
        self.store = store
        printError("\(command): no server at \(address); working on the \(config.backend) store at \(storePath) directly")
        endpoint = .local(AdminService(pool: pool, store: store, location: FileOps.canonicalPath(config.path)))
    }

    /// Opens the configured store (which must exist) and its filesystem.
    static func open(_ command: String, _ config: ZeroFSConfig) -> (Pool, any KVBackend) {
        let store = openStore(command, config)
        do {
            var fsOptions = config.fsOptions
            fsOptions.backgroundReclaim = false
            return (try Pool.open(store, options: fsOptions), store)
        } catch {
            try? store.close()
            fail(command, "cannot open the filesystem in \(config.path): \(error)")
        }
    }

    static func openStore(_ command: String, _ config: ZeroFSConfig) -> any KVBackend {
        if let url = config.url {
            // No lock guards a store in S3: opening it here would take it over from a
            // server elsewhere (fencing it). Commands go through the server.
            fail(command, "no server answers at \(config.rpcAddresses[0]); the store \(url) is in S3, so commands go through the zerofs server that serves it (start `zerofs run`, or pass --rpc-address)")
        }
        var options = config.backendOptions
        options.createIfMissing = false
        do {
            return try BackendCatalog.standard.factory(named: config.backend).open(at: config.path, options: options)
        } catch let error as KVError where error.code == .locked {
            fail(command, "no server answers at \(config.rpcAddresses[0]), and the store at \(config.path) is in use: \(error.message)")
        } catch let error as KVError where error.code == .storeNotFound {
            fail(command, "no \(config.backend) store at \(config.path) (start one with `zerofs run`)")
        } catch {
            fail(command, "cannot open the \(config.backend) store at \(config.path): \((error as? KVError)?.detail(besides: config.path) ?? "\(error)")")
        }
    }

    /// Runs `body` against the service; an error ends the command with its message.
    func call<T: Sendable>(_ body: @escaping @Sendable (any Zerofs_Admin_V1_AdminService.ClientProtocol) async throws -> T) -> T {
        do {
            return try AdminClient.with(endpoint, body)
        } catch {
            let status = AdminErrors.status(error)
            close()
            fail(command, "\(status.message) (\(statusName(status.code)))")
        }
    }

    /// Closes what this session opened. What deletions made offline leave for the
    /// collector is reclaimed by the next `zerofs run` (the collector resumes there).
    func close() {
        guard let pool, let store else { return }
        self.pool = nil
        self.store = nil
        var failure: (any Error)?
        do { try pool.close() } catch { failure = error }
        do { try store.close() } catch { failure = failure ?? error }
        if let failure { fail(command, "closing the store: \(failure)") }
    }
}

func statusName(_ code: RPCError.Code) -> String {
    switch code {
    case .notFound: "NOT_FOUND"
    case .alreadyExists: "ALREADY_EXISTS"
    case .invalidArgument: "INVALID_ARGUMENT"
    case .failedPrecondition: "FAILED_PRECONDITION"
    case .unavailable: "UNAVAILABLE"
    case .internalError: "INTERNAL"
    default: "\(code)".uppercased()
    }
}
