// `zerofs run`: opens the store and serves every dataset over NFSv3 and the AdminService
// over gRPC until SIGINT or SIGTERM; then stops taking calls, lets running ones finish,
// makes everything durable and closes the store. With --checkpoint it serves one
// checkpoint read-only.

import Admin
import ArgumentParser
import BackendCatalog
import Config
import Engine
import FS
import Logging
import NFS
import Workloads

#if canImport(Glibc)
import Glibc
#endif

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve every dataset over NFSv3 (MOUNT on the same port, no portmapper) and the AdminService over gRPC."
    )

    @OptionGroup var store: StoreOptions
    @Option(name: .customLong("nfs-address"), help: "HOST:PORT for NFS and MOUNT, overriding the config (port 0: any free port).")
    var nfsAddress: String?
    @Option(help: "Threads running NFS calls, overriding the config.") var threads: Int?
    @Option(help: "Serve this checkpoint of the store, read-only, instead of the store.") var checkpoint: String?
    @Flag(name: .customLong("read-only"), help: "Serve a read-only replica (lsm): never write to the store, follow the server that writes it.")
    var readOnly = false
    @Option(name: .customLong("poll-ms"), help: "With --read-only: milliseconds between catching up with the writer, overriding the config (filesystem.replica_poll_ms, default 1000).")
    var pollMilliseconds: Int?
    @Option(help: "Log level (trace, debug, info, notice, warning, error, critical), overriding the config.") var logLevel: String?

    func run() throws {
        let command = "zerofs run"
        var config = store.load(command)
        if let nfsAddress {
            guard let address = ServerAddress(nfsAddress) else { fail(command, "--nfs-address must be HOST:PORT, got '\(nfsAddress)'") }
            config.nfsAddresses = [address]
        }
        if let clash = config.addressClash { fail(command, clash) }
        if let threads {
            guard (1...1024).contains(threads) else { fail(command, "--threads must be 1 to 1024 (as servers.nfs.threads), got \(threads)") }
            config.nfsThreads = threads
        }
        if let logLevel {
            guard let level = ZeroFSConfig.LogLevel(rawValue: logLevel) else {
                fail(command, "--log-level must be one of \(ZeroFSConfig.LogLevel.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            config.logLevel = level
        }
        if readOnly, checkpoint != nil { fail(command, "--read-only and --checkpoint cannot be used together") }
        if let pollMilliseconds {
            guard readOnly else { fail(command, "--poll-ms needs --read-only") }
            guard (1...3_600_000).contains(pollMilliseconds) else { fail(command, "--poll-ms must be from 1 to 3600000, got \(pollMilliseconds)") }
            config.replicaPollMilliseconds = pollMilliseconds
        }
        let level = Logger.Level(rawValue: config.logLevel.rawValue) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let log = Logger(label: "zerofs")

        // Every thread started from here on inherits the blocked signals; the main thread
        // waits for them.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let factory = try BackendCatalog.standard.factory(named: config.backend)
        let location = config.url ?? FileOps.absolutePath(config.path)
        let kv: any KVBackend
        do {
            if let checkpoint {
                kv = try factory.openCheckpoint(at: config.location, named: checkpoint, options: config.backendOptions)
            } else if readOnly {
                var options = config.backendOptions
                options.createIfMissing = false
                kv = try factory.openReplica(at: config.location, options: options)
            } else {
                kv = try factory.open(at: config.location, options: config.backendOptions)
            }
        } catch let error as KVError where error.code == .locked && config.url == nil {
            // A store in S3 has no lock; there `.locked` is about its disk cache folder.
            fail(command, "the \(config.backend) store at \(location) is in use by another process: \(error.message)")
        } catch {
            fail(command, "cannot open the \(config.backend) store at \(location): \((error as? KVError)?.detail(besides: location) ?? "\(error)")")
        }
        let pool: Pool
        do {
            pool = try Pool.open(kv, options: config.fsOptions)
        } catch {
            try? kv.close()
            fail(command, "cannot open the filesystem in \(location): \(error)")
        }
        let nfs = NFSService(pool: pool)
        if let problem = NFSServer.loopbackCongestionProblem(config.nfsLoopbackCongestion) {
            log.warning("servers.nfs.loopback_congestion: cannot use \(config.nfsLoopbackCongestion) (\(problem)); loopback clients keep the system's congestion control")
        }
        var nfsServers: [NFSServer] = []
        var adminServers: [AdminServer] = []
        func stopAll() {
            for server in adminServers { server.stop() }
            for server in nfsServers { server.stop() }
        }
        for address in config.nfsAddresses {
            var options = NFSServer.Options()
            options.host = address.host
            options.port = address.port
            options.threads = config.nfsThreads
            options.loopbackCongestion = config.nfsLoopbackCongestion
            options.maxConnections = config.nfsMaxConnections
            options.maxUnsentReplyBytes = config.nfsMaxUnsentReplyMiB << 20
            do {
                nfsServers.append(try NFSServer.start(nfs, options: options))
            } catch {
                stopAll()
                try? pool.close()
                try? kv.close()
                fail(command, "cannot serve NFS on \(address): \(error)")
            }
        }
        let admin = AdminService(pool: pool, store: kv, location: config.url ?? FileOps.canonicalPath(config.path)) { nfs.callCounts }
        for address in config.rpcAddresses {
            do {
                adminServers.append(try AdminServer.start(admin, host: address.host, port: address.port))
            } catch {
                stopAll()
                try? pool.close()
                try? kv.close()
                fail(command, "cannot serve gRPC on \(address): \(error)")
            }
        }
        let what = checkpoint.map { "checkpoint \($0) of the \(config.backend) store at \(location), read-only" }
            ?? (readOnly ? "read-only replica of the \(config.backend) store at \(location), following its writer every \(config.fsOptions.replicaPollMilliseconds) ms"
                : "\(config.backend) store at \(location)")
        print("zerofs run: \(what)")
        func address(of server: NFSServer) -> String {
            config.nfsAddresses[nfsServers.firstIndex { $0 === server } ?? 0].host
        }
        for server in nfsServers {
            let host = ServerAddress(host: address(of: server), port: server.port).description
            print("zerofs run: NFS and MOUNT on \(host)")
            print("zerofs run: mount with nfs://\(host)/?version=3&nfsport=\(server.port)&mountport=\(server.port)")
        }
        for server in adminServers {
            print("zerofs run: gRPC AdminService on \(ServerAddress(host: server.host, port: server.port))")
        }
        flushStandardOutput()
        log.info("serving", metadata: ["store": "\(location)", "backend": "\(config.backend)"])

        var received: Int32 = 0
        sigwait(&signals, &received)
        print("zerofs run: signal \(received): stopping")
        flushStandardOutput()
        log.info("stopping", metadata: ["signal": "\(received)"])
        admin.cancelRunningJobs()
        // A store in S3 waiting out an outage gives up now, so the flushes below end.
        kv.beginClosing()
        stopAll()
        var failed = false
        do { try pool.close() } catch {
            log.error("closing the filesystem failed", metadata: ["error": "\(error)"])
            printError("zerofs run: closing the filesystem: \(error)")
            failed = true
        }
        do { try kv.close() } catch {
            printError("zerofs run: closing the store: \(error)")
            failed = true
        }
        if failed { throw ExitCode(1) }
        print("zerofs run: stopped cleanly")
    }
}
