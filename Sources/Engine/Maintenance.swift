// Maintenance views of a store: how much space it takes (live data against what only
// checkpoints keep), and a scrub that reads everything stored and names what fails.

/// Bytes a store occupies.
public struct StoreSpace: Sendable, Equatable {
    /// The live store: tables, logs and databases the current state needs.
    public var liveBytes: UInt64
    /// Bytes that only checkpoints keep (deleting every checkpoint would free them).
    public var checkpointOnlyBytes: UInt64

    public init(liveBytes: UInt64, checkpointOnlyBytes: UInt64) {
        self.liveBytes = liveBytes
        self.checkpointOnlyBytes = checkpointOnlyBytes
    }
}

/// One object (a table file, a database, a range of keys) that could not be read whole.
public struct ScrubFailure: Sendable, Equatable {
    public var object: String
    public var reason: String

    public init(object: String, reason: String) {
        self.object = object
        self.reason = reason
    }
}

/// What a scrub read and what failed.
public struct ScrubReport: Sendable, Equatable {
    /// Objects read whole (table files, manifests; 1 for a store read as one database).
    public var objects: UInt64 = 0
    /// Total of objects to read, when known in advance (0 otherwise).
    public var objectsTotal: UInt64 = 0
    public var values: UInt64 = 0
    public var bytes: UInt64 = 0
    public var failures: [ScrubFailure] = []
    /// What the scrub could check beyond reading (for example "block checksums").
    public var verified: String = ""
    /// The progress callback asked it to stop: the counts cover only what was read.
    public var stopped = false

    public init() {}
}

extension KVBackend {
    public func spaceUsage() throws -> StoreSpace {
        var report = ScrubReport()
        try Scrub.readValues(of: self, into: &report, object: backendName, progress: { _ in true })
        return StoreSpace(liveBytes: report.bytes, checkpointOnlyBytes: 0)
    }

    public func scrub(progress: (ScrubReport) -> Bool) throws -> ScrubReport {
        try Scrub.wholeStore(self, object: "\(backendName) store", verified: "values readable", progress: progress)
    }
}

public enum Scrub {
    /// The scrub of a store read as one object: every value through one read view.
    public static func wholeStore(
        _ store: any KVBackend, object: String, verified: String, progress: (ScrubReport) -> Bool
    ) throws -> ScrubReport {
        var report = ScrubReport()
        report.objectsTotal = 1
        report.verified = verified
        try readValues(of: store, into: &report, object: object, progress: progress)
        return report
    }

    /// Reads every key and value of `reader` in order through one read view (or the
    /// reader itself), adding them to `report`. A read that fails is recorded as a failure
    /// of `object` naming the last key read, and ends the walk (a cursor cannot step past
    /// unreadable data); `.closed` is rethrown.
    public static func readValues(
        of reader: any KVReader, into report: inout ScrubReport, object: String, progress: (ScrubReport) -> Bool
    ) throws {
        let view = try (reader as? any KVBackend)?.readView()
        defer { view?.close() }
        var last: [UInt8]?
        do {
            let iterator = try (view ?? reader).makeIterator(.all)
            while iterator.isValid {
                let size = try iterator.withCurrent { key, value in
                    last = Array(key)
                    return key.count + value.count
                }
                report.values += 1
                report.bytes += UInt64(size)
                if report.values % 65536 == 0, !progress(report) {
                    report.stopped = true
                    return
                }
                try iterator.next()
            }
            report.objects += 1
        } catch let error as KVError where error.code == .closed {
            throw error
        } catch {
            let after = last.map { " after key " + Bytes.hex($0) } ?? ""
            report.failures.append(ScrubFailure(object: object, reason: "read failed\(after): \(error)"))
        }
        _ = progress(report)
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension CheckpointDirectory {
    /// Space of a folder store (rocksdb, lmdb): the files under `PATH/db` are live; files
    /// under `PATH/checkpoints` count as checkpoint-only unless they are hard links to a
    /// live file (rocksdb links its tables into checkpoints).
    public static func spaceUsage(storePath: String) throws -> StoreSpace {
        var liveFiles: Set<FileID> = []
        let live = try FileOps.diskUsage(storePath + "/db", files: &liveFiles, excluding: [])
        var checkpointFiles: Set<FileID> = []
        let pinned = try FileOps.diskUsage(CheckpointDirectory(storePath: storePath).root, files: &checkpointFiles, excluding: liveFiles)
        return StoreSpace(liveBytes: live, checkpointOnlyBytes: pinned)
    }
}

/// A file's identity on disk, so hard links count once.
public struct FileID: Hashable, Sendable {
    var device: UInt64
    var inode: UInt64
}

extension FileOps {
    /// Bytes of the regular files under `path` (none when it is missing), each file
    /// counted once however many links it has, skipping those in `excluding`; adds the
    /// files it counted to `files`.
    public static func diskUsage(_ path: String, files: inout Set<FileID>, excluding: Set<FileID>) throws -> UInt64 {
        var info = stat()
        guard lstat(path, &info) == 0 else { return 0 }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            var total: UInt64 = 0
            // A folder removed meanwhile (a checkpoint being made or deleted) holds nothing.
            for name in (try? list(path)) ?? [] { total += try diskUsage(path + "/" + name, files: &files, excluding: excluding) }
            return total
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else { return 0 }
        let id = FileID(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        guard !excluding.contains(id), files.insert(id).inserted else { return 0 }
        return UInt64(info.st_size)
    }
}

/// Requests a store sent to remote object storage since it opened, by the classes they
/// are billed in, with the bytes of their bodies; and how its local disk cache of tables
/// fared. Every attempt counts, retries included.
public struct ObjectOperations: Sendable, Equatable {
    public var puts = 0
    public var gets = 0
    public var lists = 0
    public var deletes = 0
    public var heads = 0
    public var bytesSent = 0
    public var bytesReceived = 0
    public var diskCacheHits = 0
    public var diskCacheMisses = 0

    public init() {}

    /// What happened between two readings.
    public static func - (later: ObjectOperations, earlier: ObjectOperations) -> ObjectOperations {
        var d = ObjectOperations()
        d.puts = later.puts - earlier.puts
        d.gets = later.gets - earlier.gets
        d.lists = later.lists - earlier.lists
        d.deletes = later.deletes - earlier.deletes
        d.heads = later.heads - earlier.heads
        d.bytesSent = later.bytesSent - earlier.bytesSent
        d.bytesReceived = later.bytesReceived - earlier.bytesReceived
        d.diskCacheHits = later.diskCacheHits - earlier.diskCacheHits
        d.diskCacheMisses = later.diskCacheMisses - earlier.diskCacheMisses
        return d
    }
}
