// Objects as files in a local folder. Names map to relative paths ("sst/00000000000000000007.sst"
// is the file FOLDER/sst/00000000000000000007.sst). put: temporary file, fsync, rename, fsync of the folder. putIfAbsent:
// temporary file, fsync, link() to the name (fails if it exists), fsync of the folder.

import Engine
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

public final class LocalObjectStore: AppendableObjectStore {
    public let root: String
    public var location: String { "folder \(root)" }
    /// Folders already created (and synced into their parents).
    private let knownFolders = Locked<Set<String>>([])
    /// The paths `createAppendable` linked that no sync of their folder has covered yet.
    private let unsyncedLinks = Locked<Set<String>>([])
    /// Whether appendable objects (WAL segments) are written with direct I/O where the
    /// file system allows it (LocalAppendableObject).
    let directAppends: Bool
    /// Whether bulk appends (without sync) start their writeback every
    /// `LocalObjectWriter.writebackBytes` (LocalAppendableObject): when the LSM keeps
    /// values in WAL segments, which must then reach the disk.
    let appendWriteback: Bool

    public init(root: String, directAppends: Bool = false, appendWriteback: Bool = false) throws {
        self.root = root
        self.directAppends = directAppends
        self.appendWriteback = appendWriteback
        try FileOps.makeDirectories(root)
    }

    private func path(_ name: String) -> String { root + "/" + name }

    private func ensureFolder(for name: String) throws {
        guard let slash = name.lastIndex(of: "/") else { return }
        let folder = String(name[..<slash])
        if knownFolders.withLock({ $0.contains(folder) }) { return }
        try FileOps.makeDirectories(path(folder))
        knownFolders.withLock { _ = $0.insert(folder) }
    }

    public func get(_ name: String) throws -> [UInt8]? {
        // Absent only when there is no such file: any other failure (EIO, EACCES) is an
        // error, not an object to skip.
        var info = stat()
        if lstat(path(name), &info) != 0 {
            if errno == ENOENT { return nil }
            throw KVError.posix("lstat", path: path(name), errno: errno)
        }
        guard info.st_mode & S_IFMT == S_IFREG else { return nil }
        do {
            return try FileOps.readFile(path(name))
        } catch {
            // Deleted since the check (by another thread's garbage collection): absent,
            // as `open` answers.
            if lstat(path(name), &info) != 0, errno == ENOENT { return nil }
            throw error
        }
    }

    public func open(_ name: String) throws -> (any ReadableObject)? {
        let fd = Glibc.open(path(name), O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw KVError.posix("open", path: path(name), errno: errno)
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw KVError.posix("fstat", path: path(name), errno: code)
        }
        return LocalReadableObject(name: name, path: path(name), fd: fd, size: Int(info.st_size))
    }

    private func writeTemporary(_ name: String, _ bytes: [UInt8], sync: Bool = true) throws -> String {
        try ensureFolder(for: name)
        let temporary = path(name) + ".tmp.\(getpid()).\(UInt64.random(in: 0...UInt64.max))"
        let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw KVError.posix("open", path: temporary, errno: errno) }
        do {
            try FileOps.writeAll(fd, bytes, path: temporary)
            if sync && fdatasync(fd) != 0 { throw KVError.posix("fdatasync", path: temporary, errno: errno) }
            close(fd)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        return temporary
    }

    public func put(_ name: String, _ bytes: [UInt8]) throws {
        let temporary = try writeTemporary(name, bytes)
        if rename(temporary, path(name)) != 0 {
            let code = errno
            unlink(temporary)
            throw KVError.posix("rename", path: path(name), errno: code)
        }
        try FileOps.syncDirectory(FileOps.parentPath(path(name)))
    }

    public func putIfAbsent(_ name: String, _ bytes: [UInt8]) throws -> Bool {
        try linkIntoPlace(try writeTemporary(name, bytes), name)
    }

    /// Links `temporary` to `name` unless a file has that name (false then), and removes
    /// the temporary name before the folder's sync, which then makes both changes
    /// durable: a crash leaves no second name holding the object's space.
    private func linkIntoPlace(_ temporary: String, _ name: String, syncingFolder: Bool = true) throws -> Bool {
        let linked = link(temporary, path(name)) == 0
        let code = errno
        unlink(temporary)
        if !linked {
            if code == EEXIST { return false }
            throw KVError.posix("link", path: path(name), errno: code)
        }
        if syncingFolder { try FileOps.syncDirectory(FileOps.parentPath(path(name))) }
        return true
    }

    public func list(prefix: String) throws -> [String] {
        // Names are "folder/file"; list the folder part of the prefix.
        let folder = prefix.lastIndex(of: "/").map { String(prefix[..<$0]) } ?? ""
        let full = folder.isEmpty ? root : path(folder)
        guard FileOps.kind(of: full) == .directory else { return [] }
        return try FileOps.list(full)
            .filter { !$0.contains(".tmp.") }
            .map { folder.isEmpty ? $0 : folder + "/" + $0 }
            .filter { $0.hasPrefix(prefix) }
            .sorted()
    }

    public func createAppendable(_ name: String, header: [UInt8]) throws -> (any AppendableObject)? {
        // Built under a temporary name and linked into place, so the name never shows a
        // file without its header to a reader, and an existing object is never touched.
        // Neither the file nor the folder is synced here: the object's first sync does
        // both (`LocalAppendableObject.sync`). Each sync waits for the writeback of
        // everything else in flight, 5-25 ms during a large write, and the WAL flush that
        // makes a new segment holds every other WAL write behind it. A crash before that
        // first sync may leave the name without the header: nothing in the object was
        // durable yet, and replay takes it as torn (format-wal.md).
        // Opened before it is linked: the object is written through its descriptor even if
        // the name goes at once (a WAL segment that garbage collection already finds
        // obsolete, its records being in a committed table).
        let temporary = try writeTemporary(name, header, sync: false)
        let object: LocalAppendableObject
        do {
            object = try LocalAppendableObject(opening: temporary, path: path(name), header: header, direct: directAppends, writeback: appendWriteback)
        } catch {
            unlink(temporary)
            throw error
        }
        guard try linkIntoPlace(temporary, name, syncingFolder: false) else { return nil }
        unsyncedLinks.withLock { _ = $0.insert(path(name)) }
        object.linkedIn = self
        return object
    }

    /// At most this many syncs of `commit(_:)` run at once, a thread each.
    static let concurrentSyncs = 8

    /// Each sync on this machine's ext4 waits for the journal, and so for the writeback
    /// of whatever else is in flight (a WAL segment being filled): 5-25 ms each during a
    /// large write, not the 0.3 ms of an idle disk (Docs/lsm.md, "Flush"). So the files
    /// are synced (and renamed) together, each on a thread (`concurrentSyncs` at a
    /// time), where syncs that run together share the journal's commits; then each
    /// folder is synced once, which makes every name durable.
    public func commit(_ writers: [any ObjectWriter]) throws {
        let local = writers.compactMap { $0 as? LocalObjectWriter }
        guard local.count == writers.count else {
            for writer in writers { try writer.commit() }
            return
        }
        for writer in local { writer.startWriteback() }
        // Each writer is used by one thread, the one given it here; at most
        // `concurrentSyncs` threads at a time.
        struct Handed: @unchecked Sendable { let writer: LocalObjectWriter }
        for start in stride(from: 0, to: local.count, by: Self.concurrentSyncs) {
            try runConcurrently(local[start..<min(start + Self.concurrentSyncs, local.count)].map { writer in
                let handed = Handed(writer: writer)
                return { try handed.writer.publish() }
            })
        }
        var folders: [String] = []
        for writer in local where !folders.contains(FileOps.parentPath(writer.final)) {
            folders.append(FileOps.parentPath(writer.final))
        }
        for folder in folders { try FileOps.syncDirectory(folder) }
    }

    public func makeWriter(_ name: String) throws -> any ObjectWriter {
        try ensureFolder(for: name)
        let temporary = path(name) + ".tmp.\(getpid()).\(UInt64.random(in: 0...UInt64.max))"
        let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw KVError.posix("open", path: temporary, errno: errno) }
        return LocalObjectWriter(fd: fd, temporary: temporary, final: path(name))
    }

    public func delete(_ name: String) throws {
        if unlink(path(name)) != 0, errno != ENOENT {
            throw KVError.posix("unlink", path: path(name), errno: errno)
        }
        unsyncedLinks.withLock { _ = $0.remove(path(name)) }
    }

    /// Whether a name linked before `path` in its folder (a lower WAL id: names are
    /// zero-padded) is still not durable (`LocalAppendableObject.sync`).
    func hasUnsyncedLink(before path: String) -> Bool {
        let folder = FileOps.parentPath(path)
        return unsyncedLinks.withLock { links in links.contains { $0 < path && FileOps.parentPath($0) == folder } }
    }

    /// Syncs the folder holding `path`, which makes every name linked there durable.
    func syncFolder(of path: String) throws {
        let folder = FileOps.parentPath(path)
        let covered = unsyncedLinks.withLock { links in links.filter { FileOps.parentPath($0) == folder } }
        try FileOps.syncDirectory(folder)
        unsyncedLinks.withLock { $0.subtract(covered) }
    }

    public func deleteDurably(_ name: String) throws {
        try delete(name)
        try FileOps.syncDirectory(FileOps.parentPath(path(name)))
    }

    public func syncObject(_ name: String) throws {
        let fd = Glibc.open(path(name), O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return }
            throw KVError.posix("open", path: path(name), errno: errno)
        }
        defer { close(fd) }
        if fdatasync(fd) != 0 { throw KVError.posix("fdatasync", path: path(name), errno: errno) }
        // Its name too: `createAppendable` leaves that to the object's first sync.
        try FileOps.syncDirectory(FileOps.parentPath(path(name)))
    }

    /// Removes the temporary files a crashed writer left under `prefix`'s folder (a
    /// temporary is named after its object, ".tmp.", the process id and a random number).
    public func removeLeftovers(prefix: String) throws {
        let folder = prefix.lastIndex(of: "/").map { String(prefix[..<$0]) } ?? ""
        let full = folder.isEmpty ? root : path(folder)
        guard FileOps.kind(of: full) == .directory else { return }
        var removed = false
        for file in try FileOps.list(full) where file.contains(".tmp.") {
            if unlink(full + "/" + file) == 0 { removed = true }
        }
        if removed { try FileOps.syncDirectory(full) }
    }
}

final class LocalReadableObject: ReadableObject {
    let name: String
    let path: String
    let size: Int
    private let fd: Int32

    init(name: String, path: String, fd: Int32, size: Int) {
        self.name = name
        self.path = path
        self.fd = fd
        self.size = size
    }

    deinit { close(fd) }

    func read(offset: Int, length: Int) throws -> [UInt8] {
        guard offset >= 0, length >= 0, offset + length <= size else {
            throw KVError(.corruption, "read of \(length) bytes at \(offset) is past the end (\(size) bytes)", path: path)
        }
        var result = [UInt8](unsafeUninitializedCapacity: length) { buffer, count in count = length }
        try result.withUnsafeMutableBytes { try read(offset: offset, into: $0) }
        return result
    }

    func read(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        _ = try read(offset: offset, into: buffer, waiting: true)
    }

    /// Reads what the page cache holds (`preadv2` with RWF_NOWAIT, which fails with EAGAIN
    /// where it would wait for the disk); false without it.
    func readIfReady(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Bool {
        try read(offset: offset, into: buffer, waiting: false)
    }

    /// One `preadv` for up to `IOV_MAX` parts (more only after a short read).
    func read(offset: Int, into parts: [UnsafeMutableRawBufferPointer]) throws {
        let length = parts.reduce(0) { $0 + $1.count }
        guard offset >= 0, offset + length <= size else {
            throw KVError(.corruption, "read of \(length) bytes at \(offset) is past the end (\(size) bytes)", path: path)
        }
        var vectors = parts.compactMap { part in part.isEmpty ? nil : iovec(iov_base: part.baseAddress, iov_len: part.count) }
        var first = 0
        var done = 0
        while done < length {
            let n = vectors.withUnsafeBufferPointer { v in
                preadv(fd, v.baseAddress! + first, Int32(min(v.count - first, Self.vectorLimit)), off_t(offset + done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw KVError.posix("preadv", path: path, errno: errno)
            }
            if n == 0 { throw KVError(.corruption, "object ended early", path: path) }
            done += n
            // Drop the vectors filled; the first one left may be partly filled.
            var left = n
            while left > 0, left >= vectors[first].iov_len {
                left -= vectors[first].iov_len
                first += 1
            }
            if left > 0 {
                vectors[first].iov_base += left
                vectors[first].iov_len -= left
            }
        }
    }

    /// The most vectors one `preadv` takes (IOV_MAX on Linux).
    private static let vectorLimit = 1024

    /// Whether reads can be asked not to wait (`preadv2` and RWF_NOWAIT); cleared by the
    /// first refusal (a file system or kernel without them): every read then waits.
    private static let noWaitReads = Atomic<Bool>(preadv2 != nil)

    /// glibc's `preadv2` (Swift's Glibc module leaves it out), or nil without it.
    private static let preadv2: (@convention(c) (Int32, UnsafePointer<iovec>, Int32, Int64, Int32) -> Int)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "preadv2") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32, UnsafePointer<iovec>, Int32, Int64, Int32) -> Int).self)
    }()
    /// RWF_NOWAIT (linux/fs.h).
    private static let noWaitFlag: Int32 = 0x8

    /// Fills `buffer` from `offset`: true. Without `waiting`, false (and `buffer` holds
    /// nothing to rely on) where the read would have to wait for the disk.
    private func read(offset: Int, into buffer: UnsafeMutableRawBufferPointer, waiting: Bool) throws -> Bool {
        let length = buffer.count
        guard offset >= 0, offset + length <= size else {
            throw KVError(.corruption, "read of \(length) bytes at \(offset) is past the end (\(size) bytes)", path: path)
        }
        if !waiting && !Self.noWaitReads.load(ordering: .relaxed) { return false }
        var done = 0
        while done < length {
            let n: Int
            if waiting {
                n = pread(fd, buffer.baseAddress! + done, length - done, off_t(offset + done))
            } else {
                var vector = iovec(iov_base: buffer.baseAddress! + done, iov_len: length - done)
                n = Self.preadv2!(fd, &vector, 1, Int64(offset + done), Self.noWaitFlag)
            }
            if n < 0 {
                switch errno {
                case EINTR: continue
                case EAGAIN where !waiting: return false
                case EOPNOTSUPP where !waiting, EINVAL where !waiting, ENOSYS where !waiting:
                    Self.noWaitReads.store(false, ordering: .relaxed)
                    return false
                default: throw KVError.posix(waiting ? "pread" : "preadv2", path: path, errno: errno)
                }
            }
            if n == 0 { throw KVError(.corruption, "object ended early", path: path) }
            done += n
        }
        return true
    }
}

/// Writes to a temporary file; commit syncs it and renames it into place.
///
/// Every `writebackBytes` appended, the kernel is asked to start writing them back
/// (`sync_file_range` with SYNC_FILE_RANGE_WRITE, which does not wait), so the disk works
/// while the rest of the object is built, and the sync at commit finds little left to do
/// (RocksDB's `bytes_per_sync`). A memtable flush of 16 MiB had spent about half its time
/// in that sync.
final class LocalObjectWriter: ObjectWriter {
    private var fd: Int32
    private let temporary: String
    let final: String
    private var written = 0
    private var handedToWriteback = 0

    static let writebackBytes = 1 << 20

    /// sync_file_range(fd, offset, count, flags), a GNU extension Swift's Glibc module
    /// does not declare; flags 2 is SYNC_FILE_RANGE_WRITE. Nil where the C library lacks it.
    static let startWriteback: (@convention(c) (Int32, Int64, Int64, UInt32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sync_file_range") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int64, Int64, UInt32) -> Int32).self)
    }()

    init(fd: Int32, temporary: String, final: String) {
        self.fd = fd
        self.temporary = temporary
        self.final = final
    }

    deinit { abort() }

    func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard fd >= 0 else { throw KVError(.io, "object writer is closed", path: final) }
        try FileOps.writeAll(fd, bytes, path: temporary)
        written += bytes.count
        if written - handedToWriteback >= Self.writebackBytes { startWriteback() }
    }

    func commit() throws {
        try publish()
        try FileOps.syncDirectory(FileOps.parentPath(final))
    }

    /// Hands the bytes not yet handed to writeback to it, without waiting. Advice only: a
    /// failure here shows again at the commit's sync.
    func startWriteback() {
        guard fd >= 0, written > handedToWriteback else { return }
        _ = Self.startWriteback?(fd, Int64(handedToWriteback), Int64(written - handedToWriteback), 2)
        handedToWriteback = written
    }

    /// Syncs the file and renames it into place; the folder's sync is the caller's.
    func publish() throws {
        guard fd >= 0 else { throw KVError(.io, "object writer is closed", path: final) }
        if fdatasync(fd) != 0 { throw KVError.posix("fdatasync", path: temporary, errno: errno) }
        close(fd)
        fd = -1
        if rename(temporary, final) != 0 { throw KVError.posix("rename", path: final, errno: errno) }
    }

    func abort() {
        if fd >= 0 {
            close(fd)
            fd = -1
            unlink(temporary)
        }
    }
}

/// A local file grown by appends; `sync` (or an append with sync) runs fdatasync.
///
/// A sync that also grows the file must write its new size: on ext4 an append plus
/// `fdatasync` measured 118-150 µs and 53-64 µs of CPU here, a write into blocks already
/// written 77-84 µs and 32 µs (Docs/format-wal.md, "Reserved space"). So a synced append keeps
/// `reserveBytes` of zeros written ahead of the end, topping them up when fewer than
/// `reserveLow` are left; readers take a zero length word with only zeros after it as the
/// end (format-wal.md). Appends without sync (bulk data) do not reserve: their bytes would
/// only replace the zeros. `seal` cuts the zeros off.
///
/// With `direct`, appends bypass the page cache (O_DIRECT; the lsm tuning `wal_io`):
/// nothing reads a WAL segment back but recovery, and this spares the copy into cached
/// pages and their writeback, at the price of waiting for the device at every write
/// (Docs/format-wal.md, "Direct I/O"). Direct writes move whole aligned blocks: appended
/// bytes are copied into `stage`, an aligned buffer that starts at the block holding the
/// end, and written from there. The block holding the end is written again, with the new
/// bytes, by the next append; its earlier bytes are the same in both writes, so a write
/// torn at any sector keeps them. An object whose file system refuses direct I/O (its
/// first direct write fails with EINVAL) is written through the page cache.
final class LocalAppendableObject: AppendableObject {
    private var fd: Int32
    private let path: String
    /// Bytes of the header and records.
    private var end: Int
    /// The file's size: `end` plus the reserved zeros.
    private var size: Int
    /// Direct I/O only: an aligned buffer holding the last `staged` bytes before `end`,
    /// from a block boundary on.
    private var stage: UnsafeMutableRawPointer?
    private var staged = 0
    /// Buffered writes only: small pieces of one append, written together.
    private var gathered: [UInt8] = []
    /// Buffered writes with `writeback` only: the end of the bytes the kernel was last
    /// asked to start writing back. Bulk appends (without sync) start their writeback every
    /// `LocalObjectWriter.writebackBytes`, as table writes do, so that the sync that makes
    /// them durable later (a flush whose tables point at values here, a COMMIT) finds
    /// little left to write: an `fdatasync` of a 16 MiB segment written without it held
    /// the flush, and writers behind it, for the whole write to the disk.
    private var handedToWriteback = 0
    private let writeback: Bool
    /// Pieces this large are written on their own (buffered) rather than gathered.
    static let gatherLimit = 64 << 10

    static let reserveBytes = 1 << 20
    static let reserveLow = 128 << 10
    private static let zeros = [UInt8](repeating: 0, count: reserveBytes)
    /// Direct I/O's unit: file offsets, lengths and buffer addresses are multiples of it
    /// (4 KiB covers devices of 512-byte and 4 KiB sectors).
    static let alignment = 4096
    /// The stage's size: the most one direct write carries.
    static let stageBytes = 1 << 20

    #if arch(x86_64) || arch(i386)
    static let directFlag: Int32 = 0o40000
    #else
    static let directFlag: Int32 = 0o200000
    #endif

    /// Opens `file`, which holds `header` and nothing else, for appends; `path` names the
    /// object in errors.
    init(opening file: String, path: String, header: [UInt8], direct: Bool, writeback: Bool = false) throws {
        precondition(header.count < Self.alignment)
        self.path = path
        self.writeback = writeback
        end = header.count
        size = header.count
        fd = Glibc.open(file, O_WRONLY | O_CLOEXEC | (direct ? Self.directFlag : 0))
        if fd < 0 && direct && errno == EINVAL { fd = Glibc.open(file, O_WRONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw KVError.posix("open", path: path, errno: errno) }
        guard direct else { return }
        var memory: UnsafeMutableRawPointer?
        guard posix_memalign(&memory, Self.alignment, Self.stageBytes) == 0, let memory else {
            closeInInit()
            throw KVError(.io, "out of memory for a WAL write buffer", path: path)
        }
        header.withUnsafeBytes { memory.copyMemory(from: $0.baseAddress!, byteCount: header.count) }
        memory.advanced(by: header.count).initializeMemory(as: UInt8.self, repeating: 0, count: Self.alignment - header.count)
        // The header's block again, as a direct write: the file system's answer decides.
        let probe = pwrite(fd, memory, Self.alignment, 0)
        if probe == Self.alignment {
            stage = memory
            staged = header.count
            size = Self.alignment
            return
        }
        let code = errno
        memory.deallocate()
        guard probe < 0 && code == EINVAL else {
            closeInInit()
            throw KVError.posix("pwrite", path: path, errno: probe < 0 ? code : EIO)
        }
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags & ~Self.directFlag) == 0 else {
            let code = errno
            closeInInit()
            throw KVError.posix("fcntl", path: path, errno: code)
        }
    }

    /// Closes the descriptor of an init that is about to throw: deinit runs for the object
    /// all the same (its stored properties are set) and must not close the number again,
    /// which by then may be another thread's file or socket.
    private func closeInInit() {
        close(fd)
        fd = -1
    }

    deinit {
        seal()
        stage?.deallocate()
    }

    /// The store that linked this object's name and has not synced its folder since,
    /// until this object's first sync does (`createAppendable`).
    var linkedIn: LocalObjectStore?

    func sync() throws {
        guard fd >= 0 else { throw KVError(.io, "appendable object is sealed", path: path) }
        guard let store = linkedIn else {
            if fdatasync(fd) != 0 { throw KVError.posix("fdatasync", path: path, errno: errno) }
            return
        }
        // The first sync makes the name durable too. The folder goes first when a name
        // linked before this one is not durable yet: a file system that logs a new file's
        // name with its data (btrfs) could otherwise keep this name and lose the earlier
        // one, and replay would skip the gap. Otherwise the file goes first, and on ext4
        // its `fdatasync` commits the link with the data, so the folder's sync finds
        // nothing left: one wait for the journal instead of two.
        let folderFirst = store.hasUnsyncedLink(before: path)
        if folderFirst { try store.syncFolder(of: path) }
        if fdatasync(fd) != 0 { throw KVError.posix("fdatasync", path: path, errno: errno) }
        if !folderFirst { try store.syncFolder(of: path) }
        linkedIn = nil
    }

    func append(_ bytes: UnsafeRawBufferPointer, sync: Bool) throws {
        try append(count: bytes.count, sync: sync) { copy in try copy(bytes) }
    }

    func append(pieces: [[UInt8]], sync: Bool) throws {
        let count = pieces.reduce(0) { $0 + $1.count }
        try append(count: count, sync: sync) { copy in
            for piece in pieces { try piece.withUnsafeBytes { try copy($0) } }
        }
    }

    /// Appends `count` bytes, which `give` hands to its argument in order.
    private func append(count: Int, sync: Bool, _ give: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        guard fd >= 0 else { throw KVError(.io, "appendable object is sealed", path: path) }
        let reserve = sync && size - (end + count) < Self.reserveLow && count < Self.reserveLow
        if stage != nil {
            try give { try stageBytes($0) }
            try writeStage(reserve: reserve)
        } else {
            // Small pieces are gathered into one write; large ones go as they are.
            try give { bytes in
                if bytes.count >= Self.gatherLimit {
                    try writeGathered()
                    try FileOps.writeAll(fd, bytes, at: end, path: path)
                    end += bytes.count
                } else {
                    gathered.appendRaw(bytes)
                    if gathered.count >= Self.gatherLimit { try writeGathered() }
                }
            }
            try writeGathered()
            size = max(size, end)
            if writeback && !sync && end - handedToWriteback >= LocalObjectWriter.writebackBytes {
                // Advice only: a failure here shows again at the next sync.
                _ = LocalObjectWriter.startWriteback?(fd, Int64(handedToWriteback), Int64(end - handedToWriteback), 2)
                handedToWriteback = end
            } else if sync {
                handedToWriteback = end
            }
            if reserve {
                // Zeros up to `reserveBytes` past the end, made durable by this same sync.
                let grow = end + Self.reserveBytes - size
                try Self.zeros.withUnsafeBytes { try FileOps.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[..<grow]), at: size, path: path) }
                size += grow
            }
        }
        if sync { try self.sync() }
    }

    /// Buffered writes: writes the small pieces gathered so far.
    private func writeGathered() throws {
        guard !gathered.isEmpty else { return }
        try gathered.withUnsafeBytes { try FileOps.writeAll(fd, $0, at: end, path: path) }
        end += gathered.count
        gathered.removeAll(keepingCapacity: true)
    }

    /// Copies `bytes` into the stage, writing it out whenever it fills.
    private func stageBytes(_ bytes: UnsafeRawBufferPointer) throws {
        guard let stage else { return }
        var taken = 0
        while taken < bytes.count {
            let n = min(Self.stageBytes - staged, bytes.count - taken)
            stage.advanced(by: staged).copyMemory(from: bytes.baseAddress! + taken, byteCount: n)
            staged += n
            end += n
            taken += n
            if staged == Self.stageBytes {
                try FileOps.writeAll(fd, UnsafeRawBufferPointer(start: stage, count: Self.stageBytes), at: end - staged, path: path)
                size = max(size, end)
                staged = 0
            }
        }
    }

    /// Writes the staged bytes in whole blocks, zeros after them (with `reserve`, up to
    /// `reserveBytes` past the end, as far as the stage holds), and keeps the block
    /// holding the end at the front of the stage.
    private func writeStage(reserve: Bool) throws {
        guard let stage else { return }
        let blockStart = end - staged
        var length = (staged + Self.alignment - 1) / Self.alignment * Self.alignment
        if reserve { length = max(length, min(Self.stageBytes, staged + Self.reserveBytes) / Self.alignment * Self.alignment) }
        guard length > 0 else { return }
        stage.advanced(by: staged).initializeMemory(as: UInt8.self, repeating: 0, count: length - staged)
        try FileOps.writeAll(fd, UnsafeRawBufferPointer(start: stage, count: length), at: blockStart, path: path)
        size = max(size, blockStart + length)
        let tail = end % Self.alignment
        if tail > 0 && staged > tail { stage.copyMemory(from: stage.advanced(by: staged - tail), byteCount: tail) }
        staged = tail
    }

    func seal() {
        if fd >= 0 {
            // Only zeros go; whether the cut reaches the disk does not matter to a reader.
            if size > end { _ = ftruncate(fd, off_t(end)) }
            close(fd)
            fd = -1
        }
    }
}
