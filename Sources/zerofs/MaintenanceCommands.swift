// `zerofs checkpoint ...`, `zerofs init`, `zerofs fsck` and `zerofs scrub`.

import Admin
import ArgumentParser
import BackendCatalog
import Config
import Engine
import FS
import Workloads
import Dispatch

#if canImport(Glibc)
import Glibc
#endif

struct CheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Durable point-in-time images of the whole store (every dataset and snapshot), for disaster recovery.",
        subcommands: [CheckpointCreate.self, CheckpointList.self, CheckpointDelete.self, CheckpointRestore.self]
    )
}

struct CheckpointCreate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a checkpoint (1 to 64 of [A-Za-z0-9._-]).")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "The checkpoint's name.") var name: String

    func run() {
        var request = Zerofs_Admin_V1_CreateCheckpointRequest()
        request.name = name
        let reply = withAdmin("zerofs checkpoint create", store) { [request] client in try await client.createCheckpoint(request) }
        Output.emit(output.json, reply) { "created checkpoint \(reply.name)" }
    }
}

struct CheckpointList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the checkpoints.")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() {
        let reply = withAdmin("zerofs checkpoint list", store) { try await $0.listCheckpoints(Zerofs_Admin_V1_ListCheckpointsRequest()) }
        Output.emit(output.json, reply) {
            TextTable.render([["NAME", "CREATED"]] + reply.checkpoints.map { [$0.name, Output.time($0.createdAtNanos)] }, leftAligned: 2, rule: false)
        }
    }
}

struct CheckpointDelete: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a checkpoint; what only it kept is freed.")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "The checkpoint.") var name: String

    func run() {
        var request = Zerofs_Admin_V1_DeleteCheckpointRequest()
        request.name = name
        let reply = withAdmin("zerofs checkpoint delete", store) { [request] client in try await client.deleteCheckpoint(request) }
        Output.emit(output.json, reply) { "deleted checkpoint \(name)" }
    }
}

struct CheckpointRestore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Make a new, independent, writable store at --to holding a checkpoint (offline: reads the checkpoint, not a server).")
    @OptionGroup var store: StoreOptions
    @Option(help: "The checkpoint.") var name: String
    @Option(help: "Folder of the new store (must not exist).") var to: String

    func run() {
        let command = "zerofs checkpoint restore"
        guard !to.isEmpty else { fail(command, "--to must name a folder, got ''") }
        let config = store.load(command)
        let factory: any KVBackendFactory
        do {
            factory = try BackendCatalog.standard.factory(named: config.backend)
            try factory.restoreCheckpoint(at: config.location, named: name, to: to, options: config.backendOptions)
        } catch {
            fail(command, (error as? KVError)?.detail ?? "\(error)")
        }
        // The new store holds the old one's numbers: a new incarnation makes the old
        // store's NFS file handles STALE on it instead of naming whatever has them now.
        do {
            let restored = try factory.open(at: to, options: config.backendOptionsForAnotherStore)
            do {
                _ = try Pool.renewIncarnation(restored)
            } catch {
                try? restored.close()
                throw error
            }
            try restored.close()
        } catch {
            fail(command, "restored checkpoint \(name) into \(to), but could not give its filesystem a new incarnation "
                + "(old NFS file handles would work on it): \((error as? KVError)?.detail ?? "\(error)"); run the command again on a new --to")
        }
        print("restored checkpoint \(name) of \(config.location) into a new \(config.backend) store at \(to)")
        if to.contains("://") {
            print("serve it with a config whose storage.url is \"\(to)\" (with the [storage.s3] settings that reach it): zerofs run -c FILE")
        } else if config.url != nil {
            print("serve it with a config without storage.url and with storage.path = \"\(to)\": zerofs run -c FILE (this config serves \(config.location))")
        } else {
            print("serve it with: zerofs run --backend \(config.backend) --path \(to)")
        }
    }
}

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a commented default config (LSM backend in ./zerofs-data, servers on 127.0.0.1) that works as is.")
    @Argument(help: "Where to write it.") var path = "zerofs.toml"
    @Flag(help: "Replace an existing file.") var force = false

    func run() {
        if !force, FileOps.kind(of: path, followingLinks: true) != .missing {
            fail("zerofs init", "\(path) exists; pass --force to replace it")
        }
        do {
            try FileOps.writeFileAtomically(path, Array(ZeroFSConfig.defaultFileText.utf8))
        } catch {
            fail("zerofs init", "cannot write \(path): \(error.detail)")
        }
        print("wrote \(path); start the server with: zerofs run -c \(path)")
    }
}

struct Fsck: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the filesystem for consistency at one point in time; exits 1 when it finds a problem."
    )
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let command = "zerofs fsck"
        let config = store.load(command)
        let reply: Zerofs_Admin_V1_FsckResponse
        if listening(config.rpcAddresses[0]) {
            reply = withAdmin(command, store) { client in
                try await withProgress(client, \.fsck, "fsck") { try await client.fsck(Zerofs_Admin_V1_FsckRequest()) }
            }
        } else {
            // Offline: read the store directly (no filesystem is opened, so a store too
            // damaged to open as one still gets a full report).
            let kv = AdminSession.openStore(command, config)
            defer { try? kv.close() }
            printError("\(command): no server at \(config.rpcAddresses[0]); checking the \(config.backend) store at \(FileOps.absolutePath(config.path)) directly")
            let report: FsckReport
            do { report = try FS.Fsck.check(kv) } catch { fail(command, "\(error)") }
            var out = Zerofs_Admin_V1_FsckResponse()
            out.inodes = UInt64(report.inodes)
            out.entries = UInt64(report.entries)
            out.chunks = UInt64(report.chunks)
            out.problems = report.problems
            reply = out
        }
        Output.emit(output.json, reply) {
            (reply.problems.map { "problem: \($0)" } + [
                "zerofs fsck: \(reply.inodes) inodes, \(reply.entries) entries, \(reply.chunks) chunks, "
                    + "\(reply.problems.count) problem\(reply.problems.count == 1 ? "" : "s")",
            ]).joined(separator: "\n")
        }
        if !reply.problems.isEmpty { throw ExitCode(1) }
    }
}

struct Scrub: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read every stored object and value, verifying checksums; names each failure by object; exits 1 on any."
    )
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let command = "zerofs scrub"
        let config = store.load(command)
        let reply: Zerofs_Admin_V1_ScrubResponse
        if listening(config.rpcAddresses[0]) {
            printError("\(command): scrubbing through the server at \(config.rpcAddresses[0])")
            reply = withAdmin(command, store) { client in
                try await withProgress(client, \.scrub, "scrub") { try await client.scrub(Zerofs_Admin_V1_ScrubRequest()) }
            }
        } else {
            let kv = AdminSession.openStore(command, config)
            defer { try? kv.close() }
            printError("\(command): no server at \(config.rpcAddresses[0]); reading the \(config.backend) store at \(FileOps.absolutePath(config.path)) directly")
            var lastShown: UInt64 = 0
            let report: ScrubReport
            do {
                report = try kv.scrub { partial in
                    // At most one progress line a second.
                    let now = DispatchTime.now().uptimeNanoseconds
                    guard now - lastShown >= 1_000_000_000 else { return true }
                    lastShown = now
                    let total = partial.objectsTotal > 0 ? " of \(partial.objectsTotal)" : ""
                    printError("scrub: \(partial.objects)\(total) objects, \(partial.values) values, \(Output.size(partial.bytes)) read, \(partial.failures.count) failures")
                    return true
                }
            } catch {
                fail(command, "\(error)")
            }
            printError("scrub: verified \(report.verified)")
            reply = AdminMessages.scrub(report)
        }
        Output.emit(output.json, reply) {
            (reply.failures.map { "failed: \($0.object): \($0.reason)" } + [
                "zerofs scrub: \(reply.objects) objects, \(reply.values) values, \(reply.bytes) bytes read, "
                    + "\(reply.failures.count) failure\(reply.failures.count == 1 ? "" : "s")",
            ]).joined(separator: "\n")
        }
        if !reply.failures.isEmpty { throw ExitCode(1) }
    }
}

/// Runs `call` (a long Fsck or Scrub RPC) while printing the server's progress of that job
/// (from GetStats) on stderr once a second.
func withProgress<T: Sendable>(
    _ client: any Zerofs_Admin_V1_AdminService.ClientProtocol, _ job: KeyPath<Zerofs_Admin_V1_Stats, Zerofs_Admin_V1_Progress> & Sendable,
    _ label: String, _ call: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await call() }
        group.addTask {
            while true {
                try await Task.sleep(nanoseconds: 1_000_000_000)
                // A failed poll only skips a progress line.
                if let progress = try? await client.getStats(Zerofs_Admin_V1_GetStatsRequest())[keyPath: job], progress.running {
                    let total = progress.total > 0 ? " of \(progress.total)" : ""
                    printError("\(label): \(progress.done)\(total) \(progress.unit)")
                }
            }
        }
        defer { group.cancelAll() }
        while let result = try await group.next() {
            if let result { return result }
        }
        throw CancellationError()
    }
}
