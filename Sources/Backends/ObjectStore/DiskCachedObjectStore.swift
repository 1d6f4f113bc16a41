// A size-limited cache on local disk in front of a remote object store (S3), so that
// reads of immutable objects (tables) rarely go to the network.
//
// The cache holds pages: fixed ranges of one object (1 MiB by default), each a file
//   DIR/<object name, hex>/<page index>.page = magic "ZPG2" | object size (fixed64) |
//   payload length (fixed32) | segment size (fixed32) | store tag (fixed32) | one CRC-32C
//   per segment of the payload (fixed32 each) | CRC-32C of everything before it
//   (fixed32) | payload
// written to a temporary name and renamed (never synced: a torn or lost page is only a
// miss). A read loads and checks the page's header once, then reads and checks only the
// segments it needs (4 KiB each), so a 4 KiB block costs one pread of 4 to 8 KiB on a
// page file kept open (the 512 most recently read), not a page. A page that fails a
// check is deleted, counted and fetched again. Least recently used pages go when the
// cache passes its size; the order survives a restart through each page's modification
// time, which a hit refreshes (once a minute at most). Objects the cache holds are written
// through: a new table lands in the cache as it is uploaded. Only names `cacheable`
// accepts (tables) are cached; manifests and WAL objects always go to the store.
//
// Processes may share a cache folder only in front of one store: each holds DIR/LOCK
// with a shared flock() while it uses the folder, and changes which store the folder
// holds (DIR/ORIGIN, dropping the pages) only under the exclusive lock, so while no
// other process uses the folder. One that finds the folder in use for another store
// fails to open it (`.locked`) rather than serve that store's pages as its own. The one
// change made under the shared lock, a store made anew through the cache (`adopt`), is
// why each page carries its store's tag (the CRC-32C of the recorded origin): a page that
// a process still serving the old store writes afterwards is another store's page to
// the new one's processes, a miss (and deleted), never its data.

import CCRC32C
import Engine
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

public struct DiskCacheCounters: Sendable, Equatable {
    public var hits = 0
    public var misses = 0
    public var corruptPages = 0
    public var evictedPages = 0
    public var bytes = 0
    public var pages = 0
}

public final class DiskCachedObjectStore: ObjectStore, ObjectOperationCounting {
    public let base: any ObjectStore
    public let directory: String
    public let capacityBytes: Int
    public let pageSize: Int
    private let cacheable: @Sendable (String) -> Bool
    /// The object holding the store's identity (nil: the store has none), and the origin
    /// the pages are recorded under, without it.
    private let identity: String?
    private let origin: String
    /// DIR/LOCK, held shared for as long as the cache is open.
    private let folderLock: FolderLock

    static let magic: [UInt8] = Array("ZPG2".utf8)
    static let segmentSize = 4 << 10
    /// Page files kept open at most (each an open descriptor).
    static let openFilesLimit = 512
    /// A hit refreshes a page file's modification time at most this often (nanoseconds).
    static let touchInterval: UInt64 = 60_000_000_000

    /// A page's header, checked: the object's size and the CRC of each payload segment.
    struct PageHeader {
        var objectSize: Int
        var payloadLength: Int
        var segmentSize: Int
        var crcs: [UInt32]
        /// The tag of the store the page came from (`storeTag`).
        var tag: UInt32
        var payloadOffset: Int { 24 + 4 * crcs.count + 4 }
    }

    /// A store's tag in its pages: the CRC-32C of the origin text recorded for it, never 0
    /// (the pad that pages of earlier versions hold there).
    static func storeTag(_ originText: String) -> UInt32 {
        let crc = Array(originText.utf8).withUnsafeBytes { zerofs_crc32c(0, $0.baseAddress, $0.count) }
        return crc == 0 ? 1 : crc
    }

    private struct Entry {
        var bytes: Int
        var lastUse: UInt64
        var header: PageHeader?
        /// The page file, open, once read (closed when the last reader lets go of it).
        var file: PageFile?
        var touchedAt: UInt64 = 0
    }

    private struct State {
        var pages: [String: Entry] = [:]  // relative path of the page file
        /// `storeClosed` ran: the folder may be another store's now.
        var closed = false
        /// Operations on the folder running now (`usingFolder`).
        var inUse = 0
        var bytes = 0
        var clock: UInt64 = 0
        var openFiles = 0
        var counters = DiskCacheCounters()
        /// The tag pages of this store carry (`storeTag`); changed by `adopt`.
        var tag: UInt32 = 0
    }

    private let state = Locked(State())

    public var location: String { base.location + " (disk cache \(directory))" }

    /// `origin` names the store the pages come from (default: the base's location). A
    /// folder whose pages came from another store, or that does not say, is emptied
    /// first: object names repeat across stores (every store has an `sst/...1.sst`), and a
    /// page is trusted by its own checksums, which another store's page passes too.
    ///
    /// `identity` names an object whose bytes tell one store from another kept at the same
    /// origin (a store made anew there, or restored in place). Its bytes are part of the
    /// recorded origin, read from the store at open; writing it through this cache (a
    /// store being made) empties the folder.
    public init(
        base: any ObjectStore, directory: String, capacityBytes: Int, pageSize: Int = 1 << 20, origin: String? = nil,
        identity: String? = nil, cacheable: @escaping @Sendable (String) -> Bool = { $0.hasPrefix("sst/") }
    ) throws {
        guard capacityBytes > 0, pageSize >= 4096 else {
            throw KVError(.invalidArgument, "a disk cache needs a positive size and pages of at least 4 KiB", path: directory)
        }
        self.base = base
        self.directory = directory
        self.capacityBytes = capacityBytes
        self.pageSize = pageSize
        self.cacheable = cacheable
        self.identity = identity
        self.origin = origin ?? base.location
        try FileOps.makeDirectories(directory)
        let current = try identity.flatMap { try base.get($0) }
        let recorded = Self.originText(self.origin, current)
        folderLock = try Self.claim(directory, for: recorded)
        state.withLock { $0.tag = Self.storeTag(recorded) }
        try loadIndex()
    }

    /// The store's identity was written: it is being made (created, or restored in place),
    /// and no page held is its. Drops them all and records the new origin. Pages being
    /// read keep their open files until the reads end. (Under the shared lock: a process
    /// that shares the folder serves the store that was there before, which is gone.)
    private func adopt(identity bytes: [UInt8]) throws {
        let recorded = Self.originText(origin, bytes)
        try usingFolder { () throws in
            state.withLock { s in
                for key in Array(s.pages.keys) { remove(&s, key) }
                s.tag = Self.storeTag(recorded)
            }
            try Self.dropPageFolders(directory)
            try FileOps.writeFileAtomically(directory + "/" + Self.originFile, Array(recorded.utf8))
        }
    }

    /// Runs `body`, an operation on the folder, unless the store was closed (nil then):
    /// `storeClosed` lets go of the folder only once the ones running have ended.
    private func usingFolder<R>(_ body: () throws -> R) rethrows -> R? {
        let open = state.withLock { s -> Bool in
            guard !s.closed else { return false }
            s.inUse += 1
            return true
        }
        guard open else { return nil }
        defer { state.withLock { $0.inUse -= 1 } }
        return try body()
    }

    /// What the cache has done since it opened (bytes and pages: what it holds now).
    public var counters: DiskCacheCounters {
        state.withLock { s in
            var c = s.counters
            c.bytes = s.bytes
            c.pages = s.pages.count
            return c
        }
    }

    // MARK: ObjectStore

    public func objectOperations() -> ObjectOperations {
        var operations = (base as? any ObjectOperationCounting)?.objectOperations() ?? ObjectOperations()
        let c = counters
        operations.diskCacheHits = c.hits
        operations.diskCacheMisses = c.misses
        return operations
    }

    public func get(_ name: String) throws -> [UInt8]? {
        guard cacheable(name) else { return try base.get(name) }
        guard let object = try open(name) else { return nil }
        return try object.read(offset: 0, length: object.size)
    }

    public func open(_ name: String) throws -> (any ReadableObject)? {
        guard cacheable(name) else { return try base.open(name) }
        // The first page knows the object's size: no request to the store at all.
        if let first = readPage(name, 0, from: 0, to: 0) {
            return CachedObject(cache: self, name: name, size: first.objectSize, remote: nil)
        }
        guard let remote = try base.open(name) else { return nil }
        return CachedObject(cache: self, name: name, size: remote.size, remote: remote)
    }

    public func put(_ name: String, _ bytes: [UInt8]) throws {
        try base.put(name, bytes)
        if name == identity { try adopt(identity: bytes) }
        if cacheable(name) { fill(name, bytes) }
    }

    public func putIfAbsent(_ name: String, _ bytes: [UInt8]) throws -> Bool {
        guard try base.putIfAbsent(name, bytes) else { return false }
        if name == identity { try adopt(identity: bytes) }
        if cacheable(name) { fill(name, bytes) }
        return true
    }

    public func putIfAbsentOrCut(_ name: String, _ bytes: [UInt8]) throws -> PutIfAbsentOutcome {
        let outcome = try base.putIfAbsentOrCut(name, bytes)
        guard outcome == .written else { return outcome }
        if name == identity { try adopt(identity: bytes) }
        if cacheable(name) { fill(name, bytes) }
        return outcome
    }

    public func list(prefix: String) throws -> [String] { try base.list(prefix: prefix) }

    public func delete(_ name: String) throws {
        try base.delete(name)
        guard cacheable(name) else { return }
        let folder = Self.folder(name)
        let gone = state.withLock { s -> [String] in
            let keys = s.pages.keys.filter { $0.hasPrefix(folder + "/") }
            for key in keys { remove(&s, key) }
            return keys
        }
        usingFolder {
            for key in gone { unlink(directory + "/" + key) }
            rmdir(directory + "/" + folder)
        }
    }

    public func setInService(_ inService: Bool) { base.setInService(inService) }

    /// Lets go of the folder (its lock), once the operations on it that are running have
    /// ended, so that another process may take it for another store; reads and writes of
    /// tables go to the store from then on.
    public func storeClosed() {
        state.withLock { s in
            for key in Array(s.pages.keys) { remove(&s, key) }
            s.closed = true
        }
        while state.withLock({ $0.inUse }) > 0 { usleep(100) }
        folderLock.release()
        base.storeClosed()
    }

    public func makeWriter(_ name: String) throws -> any ObjectWriter {
        let writer = try base.makeWriter(name)
        guard cacheable(name) else { return writer }
        return WriteThrough(cache: self, name: name, base: writer)
    }

    // MARK: pages

    static func folder(_ name: String) -> String { Bytes.hex(Array(name.utf8)) }
    static func pageKey(_ name: String, _ index: Int) -> String { folder(name) + "/\(index).page" }

    /// Bytes `from..<to` of a page from disk, verified; nil when the page is absent or
    /// damaged (a damaged page is deleted). Also the object's size the page records.
    func readPage(_ name: String, _ index: Int, from: Int = 0, to: Int? = nil) -> (objectSize: Int, bytes: [UInt8])? {
        var bytes: [UInt8] = []
        guard let objectSize = readPage(name, index, from: from, to: to, { bytes = Array($0) }) else { return nil }
        return (objectSize, bytes)
    }

    /// Lends `deliver` bytes `from..<to` of a page from disk, verified (read once into a
    /// scratch buffer with the whole segments around them, checked there); returns the
    /// object's size the page records, nil when the page is absent or damaged (a damaged
    /// page is deleted, and `deliver` is not called).
    func readPage(_ name: String, _ index: Int, from: Int, to: Int?, _ deliver: (UnsafeRawBufferPointer) -> Void) -> Int? {
        let key = Self.pageKey(name, index)
        // Counted in use (`usingFolder`) under the lock it is found under: `storeClosed`
        // empties the index, then waits for the reads that found a page.
        let found = state.withLock { s -> (Entry, UInt32)? in
            guard !s.closed, let entry = s.pages[key] else { return nil }
            s.inUse += 1
            return (entry, s.tag)
        }
        guard let (known, tag) = found else { return nil }
        defer { state.withLock { $0.inUse -= 1 } }
        return readPageInFolder(key, known, tag: tag, from: from, to: to, deliver)
    }

    private func readPageInFolder(
        _ key: String, _ known: Entry, tag: UInt32, from: Int, to: Int?, _ deliver: (UnsafeRawBufferPointer) -> Void
    ) -> Int? {
        let path = directory + "/" + key
        func damaged() -> Int? {
            state.withLock { $0.counters.corruptPages += 1 }
            forget(key)
            unlink(path)
            return nil
        }
        // The open file is shared; holding it keeps its descriptor open for this read
        // even if the page is evicted meanwhile.
        let file: PageFile
        if let open = known.file {
            file = open
        } else {
            guard let opened = PageFile(path: path) else {
                forget(key)
                return nil
            }
            file = opened
        }
        guard let header = known.header ?? Self.readHeader(file.fd) else { return damaged() }
        guard header.tag == tag else {
            // Another store's page (or one from before tags): not damaged, not ours.
            forget(key)
            unlink(path)
            return nil
        }
        let end = min(to ?? header.payloadLength, header.payloadLength)
        guard from >= 0, from <= end else { return damaged() }
        // Whole segments covering the range, each checked against its CRC.
        let first = from / header.segmentSize
        let last = end == from ? first : (end - 1) / header.segmentSize
        let start = first * header.segmentSize
        let stop = min(header.payloadLength, (last + 1) * header.segmentSize)
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(stop - start, 1), alignment: 16)
        defer { bytes.deallocate() }
        var done = 0
        while done < stop - start {
            let n = pread(file.fd, bytes.baseAddress! + done, stop - start - done, off_t(header.payloadOffset + start + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return damaged() }
            done += n
        }
        for segment in first...last where segment < header.crcs.count {
            let lower = segment * header.segmentSize - start
            let upper = min(stop - start, lower + header.segmentSize)
            guard zerofs_crc32c(0, bytes.baseAddress! + lower, upper - lower) == header.crcs[segment] else { return damaged() }
        }
        let now = FileOps.nowNanos()
        let touch = state.withLock { s -> Bool in
            guard var entry = s.pages[key] else { return false }
            s.clock += 1
            entry.lastUse = s.clock
            if entry.header == nil { entry.header = header }
            if entry.file == nil {
                entry.file = file
                s.openFiles += 1
                if s.openFiles > Self.openFilesLimit { closeOldestFiles(&s) }
            }
            let touch = now &- entry.touchedAt > Self.touchInterval
            if touch { entry.touchedAt = now }
            s.pages[key] = entry
            s.counters.hits += 1
            return touch
        }
        // The order of use survives a restart through the modification time (refreshed
        // once a minute at most: a syscall per read would cost more than the read).
        if touch { futimens(file.fd, nil) }
        deliver(UnsafeRawBufferPointer(rebasing: bytes[(from - start)..<(end - start)]))
        return header.objectSize
    }

    /// Lets go of the open files of the least recently used tenth of the open pages.
    private func closeOldestFiles(_ s: inout State) {
        let open = s.pages.filter { $0.value.file != nil }.sorted { $0.value.lastUse < $1.value.lastUse }
        for (key, _) in open.prefix(max(1, Self.openFilesLimit / 10)) {
            s.pages[key]?.file = nil
            s.openFiles -= 1
        }
    }

    /// Reads and checks a page file's header.
    static func readHeader(_ fd: Int32) -> PageHeader? {
        var fixed = [UInt8](repeating: 0, count: 24)
        guard fixed.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, 24, 0) }) == 24, Array(fixed[0..<4]) == magic else { return nil }
        let (size, length, segment, tag) = fixed.withUnsafeBytes {
            ($0.loadUnaligned(fromByteOffset: 4, as: UInt64.self).littleEndian,
             Int($0.loadUnaligned(fromByteOffset: 12, as: UInt32.self).littleEndian),
             Int($0.loadUnaligned(fromByteOffset: 16, as: UInt32.self).littleEndian),
             $0.loadUnaligned(fromByteOffset: 20, as: UInt32.self).littleEndian)
        }
        guard size <= UInt64(Int.max), segment >= 512, segment <= 1 << 24, length <= 1 << 30 else { return nil }
        let count = (length + segment - 1) / segment
        var rest = [UInt8](repeating: 0, count: 4 * count + 4)
        guard rest.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, $0.count, 24) }) == rest.count else { return nil }
        let stored = rest.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4 * count, as: UInt32.self).littleEndian }
        var crc = fixed.withUnsafeBytes { zerofs_crc32c(0, $0.baseAddress, 24) }
        crc = rest.withUnsafeBytes { zerofs_crc32c(crc, $0.baseAddress, 4 * count) }
        guard crc == stored else { return nil }
        let crcs = rest.withUnsafeBytes { raw in (0..<count).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self).littleEndian } }
        return PageHeader(objectSize: Int(size), payloadLength: length, segmentSize: segment, crcs: crcs, tag: tag)
    }

    static func encode(objectSize: Int, tag: UInt32, _ payload: UnsafeRawBufferPointer) -> [UInt8] {
        var raw = magic
        withUnsafeBytes(of: UInt64(objectSize).littleEndian) { raw.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(payload.count).littleEndian) { raw.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(segmentSize).littleEndian) { raw.append(contentsOf: $0) }
        withUnsafeBytes(of: tag.littleEndian) { raw.append(contentsOf: $0) }
        var start = 0
        while start < payload.count {
            let end = min(payload.count, start + segmentSize)
            withUnsafeBytes(of: zerofs_crc32c(0, payload.baseAddress! + start, end - start).littleEndian) { raw.append(contentsOf: $0) }
            start = end
        }
        let crc = raw.withUnsafeBytes { zerofs_crc32c(0, $0.baseAddress, $0.count) }
        withUnsafeBytes(of: crc.littleEndian) { raw.append(contentsOf: $0) }
        raw.append(contentsOf: payload)
        return raw
    }

    /// Stores one page (best effort: a cache that cannot write only misses more).
    func storePage(_ name: String, _ index: Int, objectSize: Int, _ payload: UnsafeRawBufferPointer) {
        usingFolder { storePageInFolder(name, index, objectSize: objectSize, payload) }
    }

    private func storePageInFolder(_ name: String, _ index: Int, objectSize: Int, _ payload: UnsafeRawBufferPointer) {
        let key = Self.pageKey(name, index)
        let path = directory + "/" + key
        let temporary = path + ".tmp.\(UInt64.random(in: 0...UInt64.max))"
        let raw = Self.encode(objectSize: objectSize, tag: state.withLock { $0.tag }, payload)
        do {
            try FileOps.makeDirectories(directory + "/" + Self.folder(name))
            let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            guard fd >= 0 else { return }
            defer { close(fd) }
            try FileOps.writeAll(fd, raw, path: temporary)
            guard rename(temporary, path) == 0 else {
                unlink(temporary)
                return
            }
        } catch {
            unlink(temporary)
            return
        }
        let victims = state.withLock { s -> [String] in
            s.clock += 1
            remove(&s, key)
            s.bytes += raw.count
            s.pages[key] = Entry(bytes: raw.count, lastUse: s.clock, header: nil)
            return evict(&s, keeping: key)
        }
        for victim in victims { unlink(directory + "/" + victim) }
    }

    /// Drops least recently used pages until the cache fits; returns their keys.
    private func evict(_ s: inout State, keeping: String) -> [String] {
        guard s.bytes > capacityBytes else { return [] }
        var victims: [String] = []
        // Oldest first; a tenth of the cache at a time so one sort serves many stores.
        let target = capacityBytes - capacityBytes / 10
        for (key, _) in s.pages.sorted(by: { $0.value.lastUse < $1.value.lastUse }) where key != keeping {
            if s.bytes <= target { break }
            remove(&s, key)
            victims.append(key)
        }
        s.counters.evictedPages += victims.count
        return victims
    }

    private func forget(_ key: String) {
        state.withLock { s in remove(&s, key) }
    }

    /// Drops `key` from the index (its file closes when the last reader lets go of it).
    private func remove(_ s: inout State, _ key: String) {
        guard let entry = s.pages.removeValue(forKey: key) else { return }
        s.bytes -= entry.bytes
        if entry.file != nil { s.openFiles -= 1 }
    }

    /// Caches a whole object just written.
    private func fill(_ name: String, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { all in
            var index = 0
            while index * pageSize < max(all.count, 1) {
                let start = index * pageSize
                let end = min(all.count, start + pageSize)
                storePage(name, index, objectSize: all.count, UnsafeRawBufferPointer(rebasing: all[start..<end]))
                index += 1
            }
        }
    }

    func noteMiss() { state.withLock { $0.counters.misses += 1 } }

    /// Rebuilds the index from the folder: pages ordered by modification time; temporary
    /// files an interrupted write left are removed.
    private func loadIndex() throws {
        var found: [(key: String, bytes: Int, modified: Int)] = []
        for folder in try FileOps.list(directory) where Self.isPageFolder(folder) && FileOps.kind(of: directory + "/" + folder) == .directory {
            for file in try FileOps.list(directory + "/" + folder) {
                let path = directory + "/" + folder + "/" + file
                guard file.hasSuffix(".page") else {
                    unlink(path)
                    continue
                }
                var info = stat()
                guard stat(path, &info) == 0 else { continue }
                found.append((folder + "/" + file, Int(info.st_size), Int(info.st_mtim.tv_sec) * 1_000_000_000 + Int(info.st_mtim.tv_nsec)))
            }
        }
        state.withLock { s in
            for item in found.sorted(by: { $0.modified < $1.modified }) {
                s.clock += 1
                s.pages[item.key] = Entry(bytes: item.bytes, lastUse: s.clock, header: nil)
                s.bytes += item.bytes
            }
            for victim in evict(&s, keeping: "") { unlink(directory + "/" + victim) }
        }
    }
}

/// An open page file; the descriptor closes when the last holder lets go, so a read never
/// meets a descriptor closed (or reused) under it.
final class PageFile: Sendable {
    let fd: Int32

    init?(path: String) {
        fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
    }

    deinit { if fd >= 0 { close(fd) } }
}

/// An object read through the cache: each page from disk when held and sound, else from
/// the store (opened on first need) and then kept.
final class CachedObject: ReadableObject {
    let cache: DiskCachedObjectStore
    let name: String
    let size: Int
    private let remote: Locked<(any ReadableObject)?>

    init(cache: DiskCachedObjectStore, name: String, size: Int, remote: (any ReadableObject)?) {
        self.cache = cache
        self.name = name
        self.size = size
        self.remote = Locked(remote)
    }

    func read(offset: Int, length: Int) throws -> [UInt8] {
        guard offset >= 0, length >= 0, offset <= size, length <= size - offset else {
            throw KVError(.corruption, "read of \(length) bytes at \(offset) past the end (\(size) bytes)", path: name)
        }
        let pageSize = cache.pageSize
        // Each page's verified bytes are copied once, straight into the answer.
        return try [UInt8](unsafeUninitializedCapacity: length) { result, count in
            var position = offset
            while position < offset + length {
                let index = position / pageSize
                let from = position - index * pageSize
                let to = min(pageSize, offset + length - index * pageSize)
                let target = UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(result)[(position - offset)..<(position - offset + to - from)])
                try read(page: index, from: from, to: to, into: target)
                position += to - from
            }
            count = length
        }
    }

    /// Copies bytes `from..<to` of page `index` into `target` (exactly that long): from the
    /// cache when it holds the page sound, else the whole page from the store, kept for
    /// next time.
    private func read(page index: Int, from: Int, to: Int, into target: UnsafeMutableRawBufferPointer) throws {
        var delivered = -1
        let cachedSize = cache.readPage(name, index, from: from, to: to) { bytes in
            delivered = bytes.count
            if bytes.count == target.count, let base = bytes.baseAddress { target.baseAddress!.copyMemory(from: base, byteCount: bytes.count) }
        }
        if let cachedSize, cachedSize == size {
            guard delivered == target.count else { throw KVError(.corruption, "page \(index) is short", path: name) }
            return
        }
        let bytes = try fetch(page: index)
        guard to <= bytes.count else { throw KVError(.corruption, "page \(index) is short", path: name) }
        bytes.withUnsafeBytes { target.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[from..<to])) }
    }

    /// Page `index` whole from the store, kept in the cache for next time.
    private func fetch(page index: Int) throws -> [UInt8] {
        cache.noteMiss()
        let object = try remote.withLock { remote throws -> any ReadableObject in
            if let remote { return remote }
            guard let opened = try cache.base.open(name) else { throw KVError(.corruption, "object vanished from the store", path: name) }
            remote = opened
            return opened
        }
        let start = index * cache.pageSize
        let bytes = try object.read(offset: start, length: min(cache.pageSize, size - start))
        bytes.withUnsafeBytes { cache.storePage(name, index, objectSize: size, $0) }
        return bytes
    }
}

/// A writer that uploads through the store's own writer and, once committed, leaves the
/// object's pages in the cache.
final class WriteThrough: ObjectWriter {
    let cache: DiskCachedObjectStore
    let name: String
    let base: any ObjectWriter
    private var pages: [[UInt8]] = [[]]
    private var size = 0

    init(cache: DiskCachedObjectStore, name: String, base: any ObjectWriter) {
        self.cache = cache
        self.name = name
        self.base = base
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws {
        // Committed or aborted (the pages are gone): the base writer says so, or this.
        guard !pages.isEmpty else { throw KVError(.io, "object writer is closed", path: name) }
        try base.append(bytes)
        var rest = bytes
        while !rest.isEmpty {
            let room = cache.pageSize - pages[pages.count - 1].count
            let take = min(room, rest.count)
            pages[pages.count - 1].appendRaw(UnsafeRawBufferPointer(rebasing: rest[0..<take]))
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            if pages[pages.count - 1].count == cache.pageSize { pages.append([]) }
        }
        size += bytes.count
    }

    func commit() throws {
        try base.commit()
        if pages.count > 1, pages[pages.count - 1].isEmpty { pages.removeLast() }
        for (index, page) in pages.enumerated() {
            page.withUnsafeBytes { cache.storePage(name, index, objectSize: size, $0) }
        }
        pages = []
    }

    func abort() {
        base.abort()
        pages = []
    }
}
