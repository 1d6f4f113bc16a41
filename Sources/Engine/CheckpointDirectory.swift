// Checkpoints of the file-based backends (rocksdb, lmdb) as folders beside the data:
//
//   PATH/checkpoints/NAME/CHECKPOINT     "zerofs-checkpoint 1\nname NAME\ncreated NANOS\n"
//   PATH/checkpoints/NAME/...            the backend's self-contained image
//
// A checkpoint is built under a temporary name starting with '.', synced, and renamed into
// place, so a crash leaves either a whole checkpoint or a temporary folder that the next
// open removes.

public struct CheckpointDirectory: Sendable {
    public let root: String
    public static let infoName = "CHECKPOINT"

    public init(storePath: String) {
        root = storePath + "/checkpoints"
    }

    public func path(of name: String) -> String { root + "/" + name }

    /// Creates checkpoint `name`: `build` fills the folder it is given (which does not
    /// exist yet) with a self-contained image, synced.
    public func create(named name: String, build: (String) throws -> Void) throws -> CheckpointInfo {
        try CheckpointName.validate(name)
        try FileOps.makeDirectories(root)
        let final = path(of: name)
        guard FileOps.kind(of: final) == .missing else {
            throw KVError(.alreadyExists, "checkpoint '\(name)' exists", path: final)
        }
        // A temporary name of its own per call, so two creates of one name cannot spoil each
        // other: the rename of the loser fails because the winner's folder is not empty.
        let temporary = root + "/.building-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            try build(temporary)
            let info = CheckpointInfo(name: name, createdAtNanos: FileOps.nowNanos())
            try FileOps.writeFileAtomically(
                temporary + "/" + Self.infoName,
                Array("zerofs-checkpoint 1\nname \(name)\ncreated \(info.createdAtNanos)\n".utf8))
            if rename(temporary, final) != 0 {
                let code = errno
                if code == ENOTEMPTY || code == EEXIST {
                    throw KVError(.alreadyExists, "checkpoint '\(name)' exists", path: final)
                }
                throw KVError.posix("rename", path: temporary, errno: code)
            }
            try FileOps.syncDirectory(root)
            return info
        } catch {
            try? FileOps.removeTree(temporary)
            throw error
        }
    }

    public func list() throws(KVError) -> [CheckpointInfo] {
        guard FileOps.kind(of: root) == .directory else { return [] }
        var result: [CheckpointInfo] = []
        // Only folders with a checkpoint record are checkpoints; anything else is ignored.
        for name in try FileOps.list(root) where !name.hasPrefix(".") && (try? CheckpointName.validate(name)) != nil
            && FileOps.kind(of: path(of: name) + "/" + Self.infoName) == .file {
            result.append(try info(named: name))
        }
        return result
    }

    public func info(named name: String) throws(KVError) -> CheckpointInfo {
        try CheckpointName.validate(name)
        let file = path(of: name) + "/" + Self.infoName
        guard FileOps.kind(of: file) == .file else {
            throw KVError(.notFound, "no checkpoint '\(name)'", path: path(of: name))
        }
        let lines = String(decoding: try FileOps.readFile(file), as: UTF8.self).split(separator: "\n")
        guard lines.count >= 3, lines[0] == "zerofs-checkpoint 1", lines[2].hasPrefix("created "),
              let created = UInt64(lines[2].dropFirst("created ".count))
        else {
            throw KVError(.corruption, "malformed checkpoint record", path: file)
        }
        return CheckpointInfo(name: name, createdAtNanos: created)
    }

    /// Deletes checkpoint `name`: renamed away first, so a crash never leaves half of one.
    public func delete(named name: String) throws(KVError) {
        _ = try info(named: name)
        let doomed = root + "/.deleting-" + name
        try FileOps.removeTree(doomed)
        try FileOps.renameItem(path(of: name), doomed)
        try FileOps.syncDirectory(root)
        try FileOps.removeTree(doomed)
    }

    /// Removes what an interrupted create or delete left behind.
    public func removeLeftovers() throws(KVError) {
        guard FileOps.kind(of: root) == .directory else { return }
        for name in try FileOps.list(root) where name.hasPrefix(".") {
            try FileOps.removeTree(root + "/" + name)
        }
    }

    /// Makes a new store at `destination` for `backend` from checkpoint `name`: `populate`
    /// copies the image (its source folder, its destination data folder). The store is
    /// built beside `destination` and renamed into place, so a crash never leaves half a
    /// store under the destination's name.
    public func restore(
        named name: String, to destination: String, backend: String,
        populate: (String, String) throws -> Void
    ) throws {
        _ = try info(named: name)
        switch FileOps.kind(of: destination, followingLinks: true) {
        case .missing:
            break
        case .directory:
            guard try FileOps.list(destination).isEmpty else {
                throw KVError(.alreadyExists, "restore destination is not empty", path: destination)
            }
        default:
            throw KVError(.alreadyExists, "restore destination exists and is not a folder", path: destination)
        }
        let parent = FileOps.parentPath(destination)
        try FileOps.makeDirectories(parent)
        let temporary = destination + ".restoring-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            try FileOps.makeDirectories(temporary)
            try populate(path(of: name), temporary)
            try StoreDirectory.writeMarker(path: temporary, backend: backend)
            if FileOps.kind(of: destination) == .directory, rmdir(destination) != 0 {
                throw KVError(.alreadyExists, "restore destination is not empty", path: destination)
            }
            try FileOps.renameItem(temporary, destination)
            try FileOps.syncDirectory(parent)
        } catch {
            try? FileOps.removeTree(temporary)
            throw error
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
