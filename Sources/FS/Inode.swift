// Inode: the attributes of one file of any type, and its on-disk value encoding
// (Docs/format-fs-keys.md, "inode value"). Times carry nanoseconds; `generation` lets a
// file handle tell a file from an older one (inode numbers are never reused anyway).

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
        var out: [UInt8] = [ValueTag.live.rawValue, Inode.formatVersion, type.rawValue]
        out.reserveCapacity(128 + target.count)
        out.appendBigEndian(mode)
        out.appendBigEndian(uid)
        out.appendBigEndian(gid)
        out.appendBigEndian(size)
        out.appendBigEndian(nlink)
        for time in [atime, mtime, ctime] {
            out.appendBigEndian(UInt64(bitPattern: time.seconds))
            out.appendBigEndian(time.nanoseconds)
        }
        out.appendBigEndian(rdev)
        out.appendBigEndian(generation)
        out.appendBigEndian(parent)
        out.appendBigEndian(entryCount)
        out.appendBigEndian(dataEpoch)
        out.appendBigEndian(UInt32(shrinkMarks.count))
        for mark in shrinkMarks {
            out.appendBigEndian(mark.epoch)
            out.appendBigEndian(mark.size)
        }
        out.appendBigEndian(UInt32(target.count))
        out.append(contentsOf: target)
        out.appendBigEndian(contentVersion)
        return out
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
        var times: [Timestamp] = []
        for _ in 0..<3 {
            guard let s = r.u64(), let n = r.u32() else { throw FSError.corrupt("inode \(ino): truncated times") }
            times.append(Timestamp(seconds: Int64(bitPattern: s), nanoseconds: n))
        }
        inode.atime = times[0]
        inode.mtime = times[1]
        inode.ctime = times[2]
        guard let rdev = r.u64(), let generation = r.u64(), let parent = r.u64(), let entries = r.u64(),
              let epoch = r.u64(), let markCount = r.u32(), markCount <= Self.decodableShrinkMarks
        else { throw FSError.corrupt("inode \(ino): truncated tail") }
        inode.rdev = rdev
        inode.generation = generation
        inode.parent = parent
        inode.entryCount = entries
        inode.dataEpoch = epoch
        for _ in 0..<markCount {
            guard let e = r.u64(), let s = r.u64() else { throw FSError.corrupt("inode \(ino): truncated marks") }
            inode.shrinkMarks.append(ShrinkMark(epoch: e, size: s))
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

/// Sequential big-endian reads over borrowed bytes; every read returns nil past the end.
struct ByteReader {
    let raw: UnsafeRawBufferPointer
    var at = 0

    init(_ raw: UnsafeRawBufferPointer) { self.raw = raw }

    var atEnd: Bool { at == raw.count }
    var remaining: Int { raw.count - at }

    mutating func u8() -> UInt8? {
        guard at < raw.count else { return nil }
        defer { at += 1 }
        return raw[at]
    }

    mutating func u32() -> UInt32? {
        guard remaining >= 4 else { return nil }
        defer { at += 4 }
        return raw.readBigEndian32(at: at)
    }

    mutating func u64() -> UInt64? {
        guard remaining >= 8 else { return nil }
        defer { at += 8 }
        return raw.readBigEndian(at: at)
    }

    mutating func bytes(_ n: Int) -> [UInt8]? {
        guard n >= 0, remaining >= n else { return nil }
        defer { at += n }
        return Array(UnsafeRawBufferPointer(rebasing: raw[at..<(at + n)]))
    }

    mutating func rest() -> UnsafeRawBufferPointer {
        defer { at = raw.count }
        return UnsafeRawBufferPointer(rebasing: raw[at...])
    }
}
