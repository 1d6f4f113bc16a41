// Inode: the attributes of one file of any type, and its on-disk value encoding
// (Docs/format-fs-keys.md, "inode value"). Times carry nanoseconds; `generation` lets a
// file handle tell a file from an older one (inode numbers are never reused anyway).

import Engine

public enum FileType: UInt8, Sendable, CaseIterable {
    case regular = 1
    case directory = 2
    case symlink = 3
    case blockDevice = 4
    case characterDevice = 5
    case fifo = 6
    case socket = 7
}

public struct Timestamp: Sendable, Equatable, Comparable, Hashable {
    public var seconds: Int64
    public var nanoseconds: UInt32

    public init(seconds: Int64, nanoseconds: UInt32) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    public static func < (a: Timestamp, b: Timestamp) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }
}

/// Hides chunk entries written before it (data epoch below `epoch`) that start at or
/// beyond `size`: an O(1) truncate down. The reclaimer turns marks into deletions.
public struct ShrinkMark: Sendable, Equatable {
    public var epoch: UInt64
    public var size: UInt64
}

public struct Inode: Sendable, Equatable {
    public var ino: UInt64
    public var type: FileType
    /// Permission bits plus setuid (0o4000), setgid (0o2000) and sticky (0o1000).
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var size: UInt64
    public var nlink: UInt32
    public var atime: Timestamp
    public var mtime: Timestamp
    public var ctime: Timestamp
    public var rdev: UInt64
    public var generation: UInt64
    /// Directories: the parent directory (the root is its own parent).
    public var parent: UInt64
    /// Directories: the number of entries (not counting "." and "..").
    public var entryCount: UInt64
    /// Regular files: bumped by every truncate down; chunks carry the epoch they were written in.
    public var dataEpoch: UInt64
    /// The most shrink marks an inode gets. A truncate that would add one more is refused
    /// (ENOSPC): marks go only when the reclaimer has deleted what they hide, which it
    /// cannot do below a snapshot, so a file shrunk, regrown and shrunk to a larger size
    /// over and over would otherwise grow without bound (every change to it rewriting the
    /// record), up to one no read could decode (`decodableShrinkMarks`). A truncate to a
    /// size at or below every mark's replaces them all, so truncating to zero never adds up.
    public static let maxShrinkMarks = 1024
    /// The most a stored inode may hold (more is damage).
    static let decodableShrinkMarks = 1 << 16
    public var shrinkMarks: [ShrinkMark]
    /// Symlinks: the target.
    public var target: [UInt8]
    /// The newest version holding any of this inode's content (a file's chunks, a
    /// directory's entries and scan records), or 0 when unknown: a versioned read of its
    /// content starts there instead of at the head (Docs/datasets.md, "Content hints").
    public var contentVersion: UInt64

    public init(ino: UInt64, type: FileType, mode: UInt32, uid: UInt32, gid: UInt32, now: Timestamp) {
        self.ino = ino
        self.type = type
        self.mode = mode & 0o7777
        self.uid = uid
        self.gid = gid
        size = 0
        nlink = type == .directory ? 2 : 1
        atime = now
        mtime = now
        ctime = now
        rdev = 0
        generation = 1
        parent = 0
        entryCount = 0
        dataEpoch = 0
        shrinkMarks = []
        target = []
        contentVersion = 0
    }

    /// The hidden-chunk rule of the shrink marks.
    func hides(chunkIndex: UInt64, epoch: UInt64, chunkSize: Int) -> Bool {
        let start = chunkIndex &* UInt64(chunkSize)
        return shrinkMarks.contains { epoch < $0.epoch && start >= $0.size }
    }

    // MARK: encoding

    /// 2 adds the content version after the target; 1 (read only) has none.
    static let formatVersion: UInt8 = 2

    func encode() -> [UInt8] {
        var out = ByteWriter(count: 3 + 4 * 3 + 8 + 4 + 3 * 12 + 5 * 8 + 4 + shrinkMarks.count * 16 + 4 + target.count + 8)
        out.u8(ValueTag.live.rawValue)
        out.u8(Inode.formatVersion)
        out.u8(type.rawValue)
        out.u32(mode)
        out.u32(uid)
        out.u32(gid)
        out.u64(size)
        out.u32(nlink)
        out.timestamp(atime)
        out.timestamp(mtime)
        out.timestamp(ctime)
        out.u64(rdev)
        out.u64(generation)
        out.u64(parent)
        out.u64(entryCount)
        out.u64(dataEpoch)
        out.u32(UInt32(shrinkMarks.count))
        for mark in shrinkMarks {
            out.u64(mark.epoch)
            out.u64(mark.size)
        }
        out.u32(UInt32(target.count))
        out.bytes(target)
        out.u64(contentVersion)
        return out.finished()
    }

    /// Decodes a live inode value (the tag already checked by the caller).
    static func decode(ino: UInt64, _ value: UnsafeRawBufferPointer) throws(FSError) -> Inode {
        var r = ByteReader(value)
        guard r.u8() == ValueTag.live.rawValue, let format = r.u8(), format == 1 || format == Inode.formatVersion,
              let type = r.u8().flatMap(FileType.init(rawValue:))
        else { throw FSError.corrupt("inode \(ino): bad header") }
        var inode = Inode(ino: ino, type: type, mode: 0, uid: 0, gid: 0, now: Timestamp(seconds: 0, nanoseconds: 0))
        guard let mode = r.u32(), let uid = r.u32(), let gid = r.u32(), let size = r.u64(), let nlink = r.u32()
        else { throw FSError.corrupt("inode \(ino): truncated") }
        inode.mode = mode
        inode.uid = uid
        inode.gid = gid
        inode.size = size
        inode.nlink = nlink
        guard let atime = r.timestamp(), let mtime = r.timestamp(), let ctime = r.timestamp() else {
            throw FSError.corrupt("inode \(ino): truncated times")
        }
        inode.atime = atime
        inode.mtime = mtime
        inode.ctime = ctime
        guard let rdev = r.u64(), let generation = r.u64(), let parent = r.u64(), let entries = r.u64(),
              let epoch = r.u64(), let markCount = r.u32(), markCount <= Self.decodableShrinkMarks
        else { throw FSError.corrupt("inode \(ino): truncated tail") }
        inode.rdev = rdev
        inode.generation = generation
        inode.parent = parent
        inode.entryCount = entries
        inode.dataEpoch = epoch
        if markCount > 0 {
            guard r.remaining >= Int(markCount) * 16 else { throw FSError.corrupt("inode \(ino): truncated marks") }
            inode.shrinkMarks.reserveCapacity(Int(markCount))
            for _ in 0..<markCount {
                guard let e = r.u64(), let s = r.u64() else { throw FSError.corrupt("inode \(ino): truncated marks") }
                inode.shrinkMarks.append(ShrinkMark(epoch: e, size: s))
            }
        }
        guard let length = r.u32(), let target = r.bytes(Int(length)) else { throw FSError.corrupt("inode \(ino): bad target") }
        inode.target = target
        if format >= 2 {
            guard let content = r.u64() else { throw FSError.corrupt("inode \(ino): truncated content version") }
            inode.contentVersion = content
        }
        guard r.atEnd else { throw FSError.corrupt("inode \(ino): trailing bytes") }
        return inode
    }
}

/// Big-endian writes into an array whose size is known up front: one allocation and one
/// store per field (appending a byte at a time cost some thirty instructions a byte).
struct ByteWriter {
    private var storage: [UInt8]
    private var at = 0

    init(count: Int) {
        storage = []
        storage.reserveCapacity(count)
        storage.appendZeros(count)
    }

    @inline(__always)
    private mutating func put<T: FixedWidthInteger>(_ value: T) {
        let at = self.at
        precondition(at + MemoryLayout<T>.size <= storage.count, "ByteWriter: more written than sized for")
        storage.withUnsafeMutableBytes { $0.storeBytes(of: value.bigEndian, toByteOffset: at, as: T.self) }
        self.at += MemoryLayout<T>.size
    }

    mutating func u8(_ value: UInt8) { put(value) }
    mutating func u32(_ value: UInt32) { put(value) }
    mutating func u64(_ value: UInt64) { put(value) }

    mutating func timestamp(_ time: Timestamp) {
        put(UInt64(bitPattern: time.seconds))
        put(time.nanoseconds)
    }

    mutating func bytes(_ data: [UInt8]) {
        guard !data.isEmpty else { return }
        let at = self.at
        precondition(at + data.count <= storage.count, "ByteWriter: more written than sized for")
        storage.withUnsafeMutableBytes { out in
            data.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: out[at...]).copyMemory(from: $0) }
        }
        self.at += data.count
    }

    /// The encoding, every byte of it written.
    func finished() -> [UInt8] {
        precondition(at == storage.count, "ByteWriter: \(storage.count - at) bytes left unwritten")
        return storage
    }
}

/// Sequential big-endian reads over borrowed bytes; every read returns nil past the end.
struct ByteReader {
    let raw: UnsafeRawBufferPointer
    var at = 0

    init(_ raw: UnsafeRawBufferPointer) { self.raw = raw }

    var atEnd: Bool { at == raw.count }
    var remaining: Int { raw.count - at }

    @inline(__always)
    mutating func u8() -> UInt8? {
        guard at < raw.count else { return nil }
        defer { at += 1 }
        return raw[at]
    }

    @inline(__always)
    mutating func u32() -> UInt32? {
        guard remaining >= 4 else { return nil }
        defer { at += 4 }
        return raw.readBigEndian32(at: at)
    }

    @inline(__always)
    mutating func u64() -> UInt64? {
        guard remaining >= 8 else { return nil }
        defer { at += 8 }
        return raw.readBigEndian(at: at)
    }

    @inline(__always)
    mutating func timestamp() -> Timestamp? {
        guard let seconds = u64(), let nanoseconds = u32() else { return nil }
        return Timestamp(seconds: Int64(bitPattern: seconds), nanoseconds: nanoseconds)
    }

    mutating func bytes(_ n: Int) -> [UInt8]? {
        guard n >= 0, remaining >= n else { return nil }
        if n == 0 { return [] }
        defer { at += n }
        return Array(UnsafeRawBufferPointer(rebasing: raw[at..<(at + n)]))
    }

    mutating func rest() -> UnsafeRawBufferPointer {
        defer { at = raw.count }
        return UnsafeRawBufferPointer(rebasing: raw[at...])
    }
}
