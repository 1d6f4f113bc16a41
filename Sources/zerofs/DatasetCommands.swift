// `zerofs dataset ...`: datasets and snapshots through the AdminService (Docs/admin.md).
// Tables for people, in the manner of `zfs list`; --json prints the reply's proto3 JSON.

import Admin
import Foundation
import ArgumentParser
import Engine
import FS
import Workloads

#if canImport(Glibc)
import Glibc
#endif

struct DatasetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataset",
        abstract: "Datasets, snapshots, clones and rollback. A snapshot is named DATASET@SNAPSHOT, or by its bare name when only one dataset has a snapshot of that name.",
        subcommands: [
            DatasetCreate.self, DatasetList.self, DatasetInfoCommand.self, DatasetDelete.self, DatasetSetDefault.self,
            DatasetGetDefault.self, DatasetSnapshot.self, DatasetListSnapshots.self, DatasetDeleteSnapshot.self,
            DatasetClone.self, DatasetRollback.self, DatasetRename.self, DatasetRenameSnapshot.self, DatasetSet.self,
        ]
    )
}

// MARK: output

enum Output {
    /// Sizes as `zfs list` shows them: 1024-based, three significant digits ("512B", "4K", "1.50M").
    static func size(_ bytes: UInt64) -> String {
        let units = ["B", "K", "M", "G", "T", "P", "E"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(bytes)B" }
        if value < 10 { return String(format: "%.2f%@", value, units[unit]) }
        if value < 100 { return String(format: "%.1f%@", value, units[unit]) }
        return String(format: "%.0f%@", value, units[unit])
    }

    /// "2026-12-04 13:40:05" in UTC.
    static func time(_ nanos: UInt64) -> String {
        var seconds = time_t(nanos / 1_000_000_000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                      Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    }

    static func yesNo(_ flag: Bool) -> String { flag ? "yes" : "no" }

    /// NAME, USED, REFER, WRITTEN, CREATED, DEFAULT, READONLY, ORIGIN; USED marked "~" while
    /// the collector runs (an estimate). ORIGIN is a clone's snapshot, as in `zfs list`
    /// (a snapshot's dataset is in its name).
    static func datasets(_ list: [Zerofs_Admin_V1_Dataset]) -> String {
        var rows = [["NAME", "USED", "REFER", "WRITTEN", "CREATED", "DEFAULT", "READONLY", "ORIGIN"]]
        for d in list {
            rows.append([
                d.name, (d.usedIsEstimate ? "~" : "") + size(d.usedBytes), size(d.referBytes), size(d.writtenBytes),
                time(d.createdAtNanos), yesNo(d.isDefault), yesNo(d.readonly), d.isSnapshot || d.origin.isEmpty ? "-" : d.origin,
            ])
        }
        return TextTable.render(rows, leftAligned: 1, rule: false)
    }

    /// Every property of one dataset or snapshot, one per line.
    static func properties(_ d: Zerofs_Admin_V1_Dataset) -> String {
        let rows: [(String, String)] = [
            ("name", d.name), ("type", d.isSnapshot ? "snapshot" : "dataset"), ("id", "\(d.id)"), ("uuid", d.uuid),
            ("origin", d.origin.isEmpty ? "-" : d.origin), ("parent_uuid", d.hasParent_p ? d.parentUuid : "-"),
            ("created", time(d.createdAtNanos)), ("default", yesNo(d.isDefault)), ("readonly", yesNo(d.readonly)),
            ("used", (d.usedIsEstimate ? "~" : "") + size(d.usedBytes) + " (\(d.usedBytes) bytes\(d.usedIsEstimate ? ", an estimate while the collector runs" : ""))"),
            ("refer", size(d.referBytes) + " (\(d.referBytes) bytes)"), ("written", size(d.writtenBytes) + " (\(d.writtenBytes) bytes)"),
            ("inodes", "\(d.inodes)"), ("generation", "\(d.generation)"), ("root_inode", "\(d.rootInode)"),
        ]
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
    }

    static func emit(_ json: Bool, _ message: some AdminMessage, _ text: () -> String) {
        print(json ? AdminMessages.json(message) : text())
        flushStandardOutput()
    }
}

/// Runs one admin call and closes the session.
func withAdmin<T: Sendable>(
    _ command: String, _ options: StoreOptions,
    _ body: @escaping @Sendable (any Zerofs_Admin_V1_AdminService.ClientProtocol) async throws -> T
) -> T {
    let session = AdminSession(command, options)
    let result = session.call(body)
    session.close()
    return result
}

// MARK: subcommands

struct DatasetCreate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a dataset (nested: parent/child).")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "The dataset's name.") var name: String

    func run() {
        var request = Zerofs_Admin_V1_CreateDatasetRequest()
        request.name = name
        let reply = withAdmin("zerofs dataset create", store) { [request] client in try await client.createDataset(request) }
        Output.emit(output.json, reply) { "created dataset \(reply.name)" }
    }
}

struct DatasetList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the datasets.")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() {
        let reply = withAdmin("zerofs dataset list", store) { try await $0.listDatasets(Zerofs_Admin_V1_ListDatasetsRequest()) }
        Output.emit(output.json, reply) { Output.datasets(reply.datasets) }
    }
}

struct DatasetInfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Show every property of a dataset or a snapshot (DATASET@SNAPSHOT).")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "The dataset or snapshot.") var name: String

    func run() {
        var request = Zerofs_Admin_V1_GetDatasetInfoRequest()
        request.name = name
        let reply = withAdmin("zerofs dataset info", store) { [request] client in try await client.getDatasetInfo(request) }
        Output.emit(output.json, reply) { Output.properties(reply) }
    }
}

struct DatasetDelete: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Delete a dataset; with --recursive also its snapshots and nested datasets (clones stay). Space is reclaimed in the background.")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "The dataset.") var name: String
    @Flag(help: "Also delete its snapshots and nested datasets.") var recursive = false

    func run() {
        var request = Zerofs_Admin_V1_DeleteDatasetRequest()
        request.name = name
        request.recursive = recursive
        let reply = withAdmin("zerofs dataset delete", store) { [request] client in try await client.deleteDataset(request) }
        Output.emit(output.json, reply) { "deleted dataset \(name)" }
    }
}

struct DatasetSetDefault: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-default", abstract: "Make a dataset the one exported as /.")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "The dataset.") var name: String

    func run() {
        var request = Zerofs_Admin_V1_SetDefaultDatasetRequest()
        request.name = name
        let reply = withAdmin("zerofs dataset set-default", store) { [request] client in try await client.setDefaultDataset(request) }
        Output.emit(output.json, reply) { "default dataset is now \(reply.name)" }
    }
}

struct DatasetGetDefault: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get-default", abstract: "Print the default dataset (exported as /).")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() {
        let reply = withAdmin("zerofs dataset get-default", store) { try await $0.getDefaultDataset(Zerofs_Admin_V1_GetDefaultDatasetRequest()) }
        Output.emit(output.json, reply) { reply.name }
    }
}

struct DatasetSnapshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Take a read-only snapshot SOURCE@NAME; O(1) whatever the dataset holds.")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "The dataset to snapshot.") var source: String
    @Option(help: "The snapshot's name (without SOURCE@).") var name: String
    @Flag(help: "Also snapshot every nested dataset, all at one point in time.") var recursive = false

    func run() {
        var request = Zerofs_Admin_V1_CreateSnapshotRequest()
        request.source = source
        request.name = name
        request.recursive = recursive
        let reply = withAdmin("zerofs dataset snapshot", store) { [request] client in try await client.createSnapshot(request) }
        Output.emit(output.json, reply) { reply.snapshots.map { "created snapshot \($0.name)" }.joined(separator: "\n") }
    }
}

struct DatasetListSnapshots: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list-snapshots", abstract: "List snapshots, of every dataset or of one.")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "Only this dataset's snapshots.") var source: String?

    func run() {
        var request = Zerofs_Admin_V1_ListSnapshotsRequest()
        request.source = source ?? ""
        let reply = withAdmin("zerofs dataset list-snapshots", store) { [request] client in try await client.listSnapshots(request) }
        Output.emit(output.json, reply) { Output.datasets(reply.snapshots) }
    }
}

struct DatasetDeleteSnapshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete-snapshot", abstract: "Delete a snapshot; clones made from it keep their data. Space is reclaimed in the background.")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "DATASET@SNAPSHOT, or a snapshot name only one dataset uses.") var name: String

    func run() {
        var request = Zerofs_Admin_V1_DeleteSnapshotRequest()
        request.name = name
        let reply = withAdmin("zerofs dataset delete-snapshot", store) { [request] client in try await client.deleteSnapshot(request) }
        // The service names the snapshot it deleted (a bare name resolved).
        Output.emit(output.json, reply) { "deleted snapshot \(reply.name.isEmpty ? name : reply.name)" }
    }
}

struct DatasetClone: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "clone", abstract: "Make a new writable dataset from a snapshot; O(1).")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "DATASET@SNAPSHOT to clone.") var snapshot: String
    @Option(help: "The new dataset's name.") var name: String

    func run() {
        var request = Zerofs_Admin_V1_CloneSnapshotRequest()
        request.snapshot = snapshot
        request.name = name
        let reply = withAdmin("zerofs dataset clone", store) { [request] client in try await client.cloneSnapshot(request) }
        Output.emit(output.json, reply) { "created dataset \(reply.name) from \(reply.origin)" }
    }
}

struct DatasetRollback: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback", abstract: "Return a dataset to one of its snapshots; later snapshots are kept.")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "The dataset.") var name: String
    @Option(help: "The snapshot: SNAPSHOT or DATASET@SNAPSHOT.") var snapshot: String

    func run() {
        var request = Zerofs_Admin_V1_RollbackDatasetRequest()
        request.dataset = name
        request.snapshot = snapshot
        let reply = withAdmin("zerofs dataset rollback", store) { [request] client in try await client.rollbackDataset(request) }
        Output.emit(output.json, reply) { "rolled \(reply.name) back to \(Pool.splitSnapshotName(snapshot) != nil ? snapshot : "\(name)@\(snapshot)")" }
    }
}

struct DatasetRename: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rename", abstract: "Rename or move a dataset; its snapshots follow.")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "The dataset.") var name: String
    @Option(help: "Its new name.") var newName: String

    func run() {
        var request = Zerofs_Admin_V1_RenameDatasetRequest()
        request.name = name
        request.newName = newName
        let reply = withAdmin("zerofs dataset rename", store) { [request] client in try await client.renameDataset(request) }
        Output.emit(output.json, reply) { "renamed dataset \(name) to \(reply.name)" }
    }
}

struct DatasetRenameSnapshot: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rename-snapshot", abstract: "Rename a snapshot (it stays with its dataset).")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "DATASET@SNAPSHOT, or a snapshot name only one dataset uses.") var name: String
    @Option(help: "The new snapshot name (SNAPSHOT or DATASET@SNAPSHOT of the same dataset).") var newName: String

    func run() {
        var request = Zerofs_Admin_V1_RenameSnapshotRequest()
        request.name = name
        request.newName = newName
        let reply = withAdmin("zerofs dataset rename-snapshot", store) { [request] client in try await client.renameSnapshot(request) }
        Output.emit(output.json, reply) { "renamed snapshot \(name) to \(reply.name)" }
    }
}

struct DatasetSet: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set", abstract: "Set a dataset property: readonly=on|off.")
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "The dataset.") var name: String
    @Argument(help: "PROPERTY=VALUE; today readonly=on|off.") var property: String

    func run() {
        let parts = property.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, parts[0] == "readonly" else {
            fail("zerofs dataset set", "unknown property '\(property)'; settable: readonly=on|off")
        }
        guard let value = ["on": true, "off": false, "true": true, "false": false][parts[1]] else {
            fail("zerofs dataset set", "readonly must be on or off, got '\(parts[1])'")
        }
        var request = Zerofs_Admin_V1_SetDatasetReadonlyRequest()
        request.name = name
        request.readonly = value
        let reply = withAdmin("zerofs dataset set", store) { [request] client in try await client.setDatasetReadonly(request) }
        Output.emit(output.json, reply) { "\(reply.name): readonly=\(reply.readonly ? "on" : "off")" }
    }
}
