// A store on local disk is a folder with a marker file naming its backend and format, and
// a lock file held with flock() while the store is open. See Docs/format-store-folder.md.
//
//   PATH/ZEROFS-STORE      "zerofs-store 1\nbackend NAME\ncreating\n", then the same
//                          with "ready\n" as its third line once the backend created its
//                          files (before that, creation can restart)
//   PATH/LOCK              holds the PID of the process that has the store open
//   PATH/...               the backend's own files

import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive, process-wide lock on a store folder, released by `release()` or deinit.
/// flock() locks belong to the open file description, so a second open in the same
/// process conflicts too.
public final class StoreLock: @unchecked Sendable {
    // `fd` is written only in init and release(), which the owning backend calls under its
    // own lock; the class is otherwise immutable.
    private var fd: Int32
    public let path: String

    /// Lock files this process holds (by path).
    private static let held = Locked<Set<String>>([])

    /// Takes the lock at `path`, or throws `.locked` naming the PID that holds it.
    ///
    /// A child process this process starts (posix_spawn) carries a copy of the lock's
    /// descriptor from its clone until its exec closes it (O_CLOEXEC), and the flock stays
    /// held meanwhile. So when the file names this process as the holder but this process
    /// no longer holds the lock, the lock is being let go: retry for up to a second.
    public init(path: String, storePath: String) throws(KVError) {
        self.path = path
        fd = -1
        let deadline = FileOps.nowNanos() + 1_000_000_000
        while true {
            fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw .posix("open", path: path, errno: errno) }
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { break }
            let code = errno
            let holder = (try? FileOps.readFile(path)).map { String(decoding: $0, as: UTF8.self) }?
                .trimmingWhitespace ?? ""
            close(fd)
            fd = -1
            guard code == EWOULDBLOCK else { throw .posix("flock", path: path, errno: code) }
            let releasing = holder == "\(getpid())" && !Self.held.withLock { $0.contains(path) }
            if releasing && FileOps.nowNanos() < deadline {
                usleep(1000)
                continue
            }
            let who = holder.isEmpty ? "another process" : "PID \(holder)"
            throw KVError(.locked, "store is held by \(who)", path: storePath)
        }
        Self.held.withLock { _ = $0.insert(path) }
        ftruncate(fd, 0)
        let pid = Array("\(getpid())\n".utf8)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    public func release() {
        if fd >= 0 {
            Self.held.withLock { _ = $0.remove(path) }
            close(fd)
            fd = -1
        }
    }

    deinit { release() }
}

/// A store folder opened for writing: its lock, and whether this open created it.
public struct StoreFolder: Sendable {
    public let lock: StoreLock
    /// True when the folder held no store before, or only one whose creation was cut
    /// short (the backend clears what it left and creates its files, then calls
    /// `markReady`); false when the backend's files must already be there.
    public let isNew: Bool
}

/// Opening and creating store folders, the same way for every file-based backend.
public enum StoreDirectory {
    public static let markerName = "ZEROFS-STORE"
    public static let lockName = "LOCK"
    public static let formatVersion = 1

    /// Validates (or creates) the store folder at `path` for `backend` and takes its lock.
    /// Throws `.notAStore` when the folder holds files but no marker, `.wrongBackend` when
    /// the marker names another backend, `.storeNotFound` when absent and not to be
    /// created, `.unsupportedFormat` for an unknown format version, `.locked`.
    public static func open(path: String, backend: String, createIfMissing: Bool) throws(KVError) -> StoreFolder {
        switch FileOps.kind(of: path, followingLinks: true) {
        case .missing:
            guard createIfMissing else { throw KVError(.storeNotFound, "no store here", path: path) }
            try FileOps.makeDirectories(path)
        case .directory:
            break
        default:
            throw KVError(.notAStore, "path is not a folder", path: path)
        }
        let marker = try readMarker(path: path, expecting: backend)
        let hasMarker = marker != nil
        if marker == .unfinished {
            // Versions before 2026-12-06 wrote this while creating; a ready marker that
            // lost its last line reads the same. Started over only when nothing of the
            // backend's is there to lose.
            let files = try FileOps.list(path).filter { $0 != markerName && $0 != lockName && !$0.hasPrefix(markerName + ".tmp.") }
            var nothingToLose = true
            for name in files where nothingToLose { nothingToLose = try FileOps.holdsNoFile(path + "/" + name) }
            guard nothingToLose else {
                throw KVError(
                    .corruption,
                    "\(markerName) says neither 'ready' nor 'creating' but the folder holds the backend's files: if the store is whole, its marker lost its last line (make it 'ready'); if its creation was cut short, remove the folder",
                    path: path)
            }
        }
        if !hasMarker {
            // What an interrupted create leaves (the lock, a marker's temporary file) does
            // not make a folder foreign; anything else does, and is never touched.
            let others = try FileOps.list(path).filter { $0 != lockName && !$0.hasPrefix(markerName + ".tmp.") }
            guard others.isEmpty else {
                throw KVError(.notAStore, "folder is not empty and has no \(markerName) marker", path: path)
            }
            guard createIfMissing else { throw KVError(.storeNotFound, "no store here", path: path) }
        }
        if hasMarker && marker != .ready && !createIfMissing {
            throw KVError(.storeNotFound, "the store's creation was cut short; open it with creation allowed to start over", path: path)
        }
        let lock = try StoreLock(path: path + "/" + lockName, storePath: path)
        if !hasMarker {
            for leftover in try FileOps.list(path) where leftover.hasPrefix(markerName + ".tmp.") {
                try FileOps.removeTree(path + "/" + leftover)
            }
            try writeMarker(path: path, backend: backend, ready: false)
        }
        return StoreFolder(lock: lock, isNew: marker != .ready)
    }

    /// Records that the backend finished creating its files: from now on missing files
    /// are reported as damage, never silently recreated.
    public static func markReady(path: String, backend: String) throws(KVError) {
        try writeMarker(path: path, backend: backend, ready: true)
    }

    /// Checks that `path` holds a store of `backend` without opening or locking it (for
    /// reading checkpoints). Throws `.storeNotFound`, `.notAStore`, `.wrongBackend`.
    public static func requireStore(path: String, backend: String) throws(KVError) {
        switch FileOps.kind(of: path, followingLinks: true) {
        case .missing: throw KVError(.storeNotFound, "no store here", path: path)
        case .directory: break
        default: throw KVError(.notAStore, "path is not a folder", path: path)
        }
        guard try readMarker(path: path, expecting: backend) != nil else {
            throw KVError(.notAStore, "folder has no \(markerName) marker", path: path)
        }
    }

    /// Writes the marker that makes `path` a store of `backend`: `creating` while the
    /// backend makes its files, `ready` once they exist.
    public static func writeMarker(path: String, backend: String, ready: Bool = true) throws(KVError) {
        let text = "zerofs-store \(formatVersion)\nbackend \(backend)\n" + (ready ? "ready\n" : "creating\n")
        try FileOps.writeFileAtomically(path + "/" + markerName, Array(text.utf8))
    }

    /// What a marker says of the store's creation.
    public enum MarkerState: Sendable {
        /// Done: missing files are damage.
        case ready
        /// Running or cut short: the folder may start over.
        case creating
        /// Two lines, neither: a creation by a version before 2026-12-06, or a ready
        /// marker that lost its last line.
        case unfinished
    }

    /// The backend named by the marker at `path`, or nil when there is no marker.
    public static func backendName(at path: String) throws(KVError) -> String? {
        try marker(at: path)?.backend
    }

    /// The marker's backend and what it says of the creation, or nil when there is none.
    public static func marker(at path: String) throws(KVError) -> (backend: String, state: MarkerState)? {
        let markerPath = path + "/" + markerName
        guard FileOps.kind(of: markerPath) == .file else { return nil }
        let text = String(decoding: try FileOps.readFile(markerPath), as: UTF8.self)
        let lines = text.split(separator: "\n").map(String.init)
        guard lines.count == 2 || (lines.count == 3 && (lines[2] == "ready" || lines[2] == "creating")), lines[0].hasPrefix("zerofs-store "),
              lines[1].hasPrefix("backend ")
        else {
            throw KVError(.corruption, "malformed \(markerName) marker", path: markerPath)
        }
        guard Int(lines[0].dropFirst("zerofs-store ".count)) == formatVersion else {
            throw KVError(.unsupportedFormat, "store folder format '\(lines[0])' is not \(formatVersion)", path: markerPath)
        }
        let state: MarkerState = lines.count == 2 ? .unfinished : lines[2] == "ready" ? .ready : .creating
        return (String(lines[1].dropFirst("backend ".count)), state)
    }

    /// nil without a marker; otherwise what it says of the store's creation.
    private static func readMarker(path: String, expecting backend: String) throws(KVError) -> MarkerState? {
        guard let found = try marker(at: path) else { return nil }
        guard found.backend == backend else {
            // "an lsm", "an lmdb": the names are read letter by letter.
            let article = found.backend.hasPrefix("l") ? "an" : "a"
            throw KVError(.wrongBackend, "folder holds \(article) \(found.backend) store, not \(backend)", path: path)
        }
        return found.state
    }
}

extension String {
    var trimmingWhitespace: String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
