// The folder of a DiskCachedObjectStore: which store its pages came from (ORIGIN), and the
// lock every process using it holds (LOCK), shared in front of one store, exclusive to
// empty it for another (Docs/s3.md, "The disk cache").

import Engine
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension DiskCachedObjectStore {
    /// What ORIGIN holds: the origin, and on a second line the store's identity, if any.
    static func originText(_ origin: String, _ identity: [UInt8]?) -> String {
        guard let identity else { return origin }
        return origin + "\nstore " + Bytes.hex(identity)
    }

    /// The file naming the store a cache folder's pages come from.
    static let originFile = "ORIGIN"
    /// The file every process using a cache folder holds a flock() on.
    static let lockFile = "LOCK"
    /// The longest an open waits for another process to finish emptying the folder.
    static let claimWait = Duration.seconds(30)

    /// Takes the folder for `origin` and returns its lock, held shared. Only a process
    /// alone in the folder (holding the lock exclusively) drops pages that came from
    /// another store and records `origin`; then it shares the lock. Only what the cache
    /// makes goes (folders named by an object name in hex): a cache folder set by mistake
    /// to a folder holding other files loses none of them. Throws `.locked` when other
    /// processes use the folder for another store.
    static func claim(_ directory: String, for origin: String) throws -> FolderLock {
        let path = directory + "/" + originFile
        let wanted = Array(origin.utf8)
        let lock = try FolderLock(path: directory + "/" + lockFile)
        let deadline = ContinuousClock.now + claimWait
        while true {
            if try lock.take(exclusive: true, wait: false) {
                if (try? FileOps.readFile(path)) != wanted {
                    try dropPageFolders(directory)
                    try FileOps.writeFileAtomically(path, wanted)
                }
                // Not atomic: another process may take the folder in between, and the
                // check below then finds its store recorded.
                _ = try lock.take(exclusive: false, wait: true)
                break
            }
            if try lock.take(exclusive: false, wait: false) { break }
            // Another process holds it exclusively: it is emptying the folder.
            guard ContinuousClock.now < deadline else {
                throw KVError(.locked, "another process has been emptying this disk cache folder for 30 s", path: directory)
            }
            usleep(10_000)
        }
        let recorded = (try? FileOps.readFile(path)) ?? []
        guard recorded != wanted else { return lock }
        // The first line is the origin; a second names the store's identity.
        let recordedOrigin = String(decoding: recorded, as: UTF8.self).split(separator: "\n").first.map(String.init)
        let other = switch recordedOrigin {
        case nil: "an unknown store"
        case origin.split(separator: "\n").first.map(String.init): "an earlier store made at \(recordedOrigin!)"
        case let recordedOrigin?: recordedOrigin
        }
        throw KVError(
            .locked, "its disk cache folder \(directory) is in use by another process for another store (\(other)); give each store its own storage.path",
            path: directory)
    }

    static func dropPageFolders(_ directory: String) throws {
        for entry in try FileOps.list(directory) where isPageFolder(entry) && FileOps.kind(of: directory + "/" + entry) == .directory {
            try FileOps.removeTree(directory + "/" + entry)
        }
    }

    /// Whether `name` is one of the cache's page folders (an object name in hex).
    static func isPageFolder(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) || (0x41...0x46).contains($0) }
    }
}

/// A flock() on a cache folder's lock file, let go by `release` or when the object goes.
final class FolderLock: Sendable {
    private let fd: Atomic<Int32>
    let path: String

    init(path: String) throws {
        self.path = path
        let opened = Glibc.open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard opened >= 0 else { throw KVError.posix("open", path: path, errno: errno) }
        fd = Atomic(opened)
    }

    deinit { release() }

    func release() {
        let old = fd.exchange(-1, ordering: .acquiringAndReleasing)
        if old >= 0 { close(old) }
    }

    /// Takes (or converts to) the shared or exclusive lock; false when another holder
    /// keeps it from being taken at once and `wait` is false. A conversion that fails
    /// leaves no lock held (flock(2)).
    func take(exclusive: Bool, wait: Bool) throws -> Bool {
        let operation = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB)
        while flock(fd.load(ordering: .acquiring), operation) != 0 {
            let code = errno
            if code == EINTR { continue }
            if code == EWOULDBLOCK && !wait { return false }
            throw KVError.posix("flock", path: path, errno: code)
        }
        return true
    }
}
