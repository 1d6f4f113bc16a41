// The records behind datasets (Docs/datasets.md, Docs/format-fs-keys.md): the dataset
// record (0x08), shared by writable datasets and snapshots; the version node (0x0A), one
// node of the version forest; and the per-dataset statistics (0x05).

/// One dataset or snapshot, as stored under 0x08 + id.
struct DatasetRecord: Sendable, Equatable {
    static let formatVersion: UInt8 = 1
    static let none = UInt64.max

    var id: UInt64
    /// The last name component: "b" for the dataset "a/b", "s" for the snapshot "a/b@s".
    var name: [UInt8]
    var uuid: [UInt8]
    /// Snapshots: the dataset they were taken of. Clones: the snapshot they were made from.
    /// Otherwise `none`.
    var parent: UInt64
    var parentUUID: [UInt8]
    /// Datasets: the dataset they are nested in ("a" for "a/b"), or `none` at the top.
    /// Snapshots: `none` (they are named inside `parent`).
    var container: UInt64
    /// Writable datasets: the head version. Snapshots: the frozen version.
    var version: UInt64
    var rootInode: UInt64
    var createdAt: Timestamp
    var readonly: Bool
    var isSnapshot: Bool
    /// Bumped by every change to the dataset itself: snapshot, rollback, rename, property.
    var generation: UInt64
    /// Reserved property bits, 0 for now; stored so a later version can add properties.
    var flags: UInt32

    init(id: UInt64, name: [UInt8], parent: UInt64 = none, parentUUID: [UInt8] = zeroUUID, container: UInt64 = none,
         version: UInt64, rootInode: UInt64, createdAt: Timestamp, isSnapshot: Bool = false) {
        self.id = id
        self.name = name
        uuid = Self.newUUID()
        self.parent = parent
        self.parentUUID = parentUUID
        self.container = container
        self.version = version
        self.rootInode = rootInode
        self.createdAt = createdAt
        readonly = isSnapshot
        self.isSnapshot = isSnapshot
        generation = 1
        flags = 0
    }

    static let zeroUUID = [UInt8](repeating: 0, count: 16)

    /// A random (version 4) UUID.
    static func newUUID() -> [UInt8] {
        var bytes = (0..<16).map { _ in UInt8.random(in: 0...255) }
        bytes[6] = bytes[6] & 0x0F | 0x40
        bytes[8] = bytes[8] & 0x3F | 0x80
        return bytes
    }

    static func showUUID(_ bytes: [UInt8]) -> String {
        let hex = bytes.map { String($0, radix: 16) }.map { $0.count == 1 ? "0" + $0 : $0 }.joined()
        guard hex.count == 32 else { return hex }
        let h = Array(hex)
        return [h[0..<8], h[8..<12], h[12..<16], h[16..<20], h[20..<32]].map { String($0) }.joined(separator: "-")
    }

    /// format (1), flags byte (bit 0 readonly, bit 1 snapshot), uuid (16), parent (8),
    /// parent uuid (16), container (8), version (8), root inode (8), created (8 + 4),
    /// generation (8), property flags (4), name length (2), name.
    func encode() -> [UInt8] {
        var out: [UInt8] = [Self.formatVersion, (readonly ? 1 : 0) | (isSnapshot ? 2 : 0)]
        out += uuid
        out.appendBigEndian(parent)
        out += parentUUID
        out.appendBigEndian(container)
        out.appendBigEndian(version)
        out.appendBigEndian(rootInode)
        out.appendBigEndian(UInt64(bitPattern: createdAt.seconds))
        out.appendBigEndian(createdAt.nanoseconds)
        out.appendBigEndian(generation)
        out.appendBigEndian(flags)
        out.append(UInt8(name.count >> 8))
        out.append(UInt8(name.count & 0xFF))
        out += name
        return out
    }

    static func decode(id: UInt64, _ value: [UInt8]) throws(FSError) -> DatasetRecord {
        try withBytes(value) { raw throws(FSError) in
            var r = ByteReader(raw)
            guard r.u8() == formatVersion, let bits = r.u8(), let uuid = r.bytes(16), let parent = r.u64(),
                  let parentUUID = r.bytes(16), let container = r.u64(), let version = r.u64(), let root = r.u64(),
                  let seconds = r.u64(), let nanos = r.u32(), let generation = r.u64(), let flags = r.u32(),
                  let high = r.u8(), let low = r.u8(), let name = r.bytes(Int(high) << 8 | Int(low)), r.atEnd
            else { throw FSError.corrupt("dataset record \(id)") }
            var record = DatasetRecord(id: id, name: name, parent: parent, parentUUID: parentUUID, container: container,
                                       version: version, rootInode: root,
                                       createdAt: Timestamp(seconds: Int64(bitPattern: seconds), nanoseconds: nanos),
                                       isSnapshot: bits & 2 != 0)
            record.uuid = uuid
            record.readonly = bits & 1 != 0
            record.generation = generation
            record.flags = flags
            return record
        }
    }
}

/// A node of the version forest, as stored under 0x0A + id.
struct VersionNode: Sendable, Equatable {
    /// 0 for a root version (version ids start at 1).
    var parent: UInt64
    /// WRITTEN: stored bytes of the chunk entries of exactly this version.
    var written: UInt64

    func encode() -> [UInt8] {
        FSKeys.bigEndian(parent, written)
    }

    static func decode(id: UInt64, _ value: [UInt8]) throws(FSError) -> VersionNode {
        guard value.count == 16 else { throw FSError.corrupt("version node \(id)") }
        return value.withUnsafeBytes { VersionNode(parent: $0.readBigEndian(at: 0), written: $0.readBigEndian(at: 8)) }
    }
}

/// The statistics of one dataset or snapshot (0x05): what it shows. Writable datasets
/// write them as absolute values into every batch that changes them; a snapshot keeps the
/// values of the moment it was taken.
public struct FSCounters: Sendable, Equatable {
    /// Inode records visible (files, directories, ... including the root).
    public var inodes: UInt64 = 0
    /// Logical bytes of the regular files and symbolic links visible (sizes, holes included).
    public var bytes: UInt64 = 0

    public init(inodes: UInt64 = 0, bytes: UInt64 = 0) {
        self.inodes = inodes
        self.bytes = bytes
    }

    /// The fixed charge per inode in REFER.
    public static let inodeCharge: UInt64 = 512

    /// REFER: logical bytes plus the per-inode charge.
    public var refer: UInt64 { bytes &+ inodes &* Self.inodeCharge }

    func encode() -> [UInt8] {
        FSKeys.bigEndian(inodes, bytes)
    }

    static func decode(_ value: [UInt8]) throws(FSError) -> FSCounters {
        guard value.count == 16 else { throw FSError.corrupt("stats") }
        return value.withUnsafeBytes { FSCounters(inodes: $0.readBigEndian(at: 0), bytes: $0.readBigEndian(at: 8)) }
    }
}
