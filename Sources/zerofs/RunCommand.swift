// `zerofs run`: opens the store and serves every dataset over NFSv3 until SIGINT or
// SIGTERM, then stops taking calls, waits for running ones, makes everything durable and
// closes the store.

import ArgumentParser
import BackendCatalog
import Engine
import FS
import NFS
import Workloads

#if canImport(Glibc)
import Glibc
#endif

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve every dataset over NFSv3, with MOUNT on the same port (no portmapper needed)."
    )

    @Option(help: "Backend of the store (\(BackendCatalog.standard.names.joined(separator: ", "))).")
    var backend = BackendCatalog.standard.defaultName
    @Option(help: "Folder of the store (created when missing).") var path = "zerofs-data"
    @Option(name: .customLong("nfs-address"), help: "HOST:PORT to serve NFS and MOUNT on (port 0: any free port).")
    var nfsAddress = "127.0.0.1:2049"
    @Option(help: "Threads running NFS calls.") var threads = 8

    func run() throws {
        guard let colon = nfsAddress.lastIndex(of: ":"), let port = Int(nfsAddress[nfsAddress.index(after: colon)...]),
              (0...65535).contains(port), colon != nfsAddress.startIndex
        else {
            printError("zerofs run: --nfs-address must be HOST:PORT, got '\(nfsAddress)'")
            throw ExitCode(2)
        }
        guard threads >= 1 else {
            printError("zerofs run: --threads must be at least 1")
            throw ExitCode(2)
        }
        // Every thread started from here on inherits the blocked signals; the main thread
        // waits for them.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let factory = try BackendCatalog.standard.factory(named: backend)
        let store: any KVBackend
        do {
            store = try factory.open(at: path, options: BackendOptions())
        } catch {
            printError("zerofs run: cannot open the \(backend) store at \(path): \(error)")
            throw ExitCode(1)
        }
        let pool: Pool
        do {
            pool = try Pool.open(store)
        } catch {
            try? store.close()
            printError("zerofs run: cannot open the filesystem in \(path): \(error)")
            throw ExitCode(1)
        }
        var options = NFSServer.Options()
        options.host = String(nfsAddress[..<colon])
        options.port = port
        options.threads = threads
        let server: NFSServer
        do {
            server = try NFSServer.start(NFSService(pool: pool), options: options)
        } catch {
            try? pool.close()
            try? store.close()
            printError("zerofs run: cannot serve NFS on \(nfsAddress): \(error)")
            throw ExitCode(1)
        }
        print("zerofs run: \(backend) store at \(path); NFS and MOUNT on \(options.host):\(server.port)")
        print("zerofs run: mount with nfs://\(options.host)/?version=3&nfsport=\(server.port)&mountport=\(server.port)")
        flushStandardOutput()
        var received: Int32 = 0
        sigwait(&signals, &received)
        print("zerofs run: signal \(received): stopping")
        flushStandardOutput()
        server.stop()
        var failed = false
        do { try pool.close() } catch {
            printError("zerofs run: closing the filesystem: \(error)")
            failed = true
        }
        do { try store.close() } catch {
            printError("zerofs run: closing the store: \(error)")
            failed = true
        }
        if failed { throw ExitCode(1) }
        print("zerofs run: stopped cleanly")
    }
}
