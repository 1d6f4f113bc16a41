// NFS file handles (Docs/format-nfs-handle.md): 36 bytes that name a file for as long as
// it exists, across server restarts.
//
//   offset  size  field
//   0       2     magic "ZF"
//   2       1     format (1)
//   3       1     kind: 0 an inode, 1 a dataset's virtual .snapshots directory
//   4       8     incarnation of the store (a restored checkpoint has another: STALE)
//   12      8     dataset or snapshot id (never a version id, which moves at every snapshot)
//   20      8     inode number (kind 1: the dataset's root inode)
//   28      8     inode generation (kind 1: 0)
//
// All integers big-endian. A handle of another length, magic or format is BADHANDLE; one
// of another incarnation, dataset or generation is STALE.

struct NFSFileHandle: Equatable, Hashable, Sendable {
    enum Kind: UInt8 {
        case inode = 0
        case snapshotsDirectory = 1
    }

    static let size = 36
    static let magic: [UInt8] = [0x5A, 0x46]
    static let format: UInt8 = 1

    var kind: Kind
    var incarnation: UInt64
    var dataset: UInt64
    var ino: UInt64
    var generation: UInt64

    var bytes: [UInt8] {
        var w = XDRWriter(capacity: Self.size)
        write(into: &w)
        return w.bytes
    }

    /// The handle's 36 bytes (the layout above), for `bytes` and for replies
    /// (`XDRWriter.handle`), which write them in place.
    func write(into w: inout XDRWriter) {
        w.uint32(UInt32(Self.magic[0]) << 24 | UInt32(Self.magic[1]) << 16 | UInt32(Self.format) << 8 | UInt32(kind.rawValue))
        w.uint64(incarnation)
        w.uint64(dataset)
        w.uint64(ino)
        w.uint64(generation)
    }

    /// nil when `bytes` cannot be one of our handles (BADHANDLE).
    init?(_ bytes: [UInt8]) {
        guard bytes.count == Self.size, bytes[0] == Self.magic[0], bytes[1] == Self.magic[1], bytes[2] == Self.format,
              let kind = Kind(rawValue: bytes[3])
        else { return nil }
        var reader = XDRReader(bytes, offset: 4)
        guard let incarnation = try? reader.uint64(), let dataset = try? reader.uint64(),
              let ino = try? reader.uint64(), let generation = try? reader.uint64()
        else { return nil }
        self.init(kind: kind, incarnation: incarnation, dataset: dataset, ino: ino, generation: generation)
    }

    init(kind: Kind = .inode, incarnation: UInt64, dataset: UInt64, ino: UInt64, generation: UInt64) {
        self.kind = kind
        self.incarnation = incarnation
        self.dataset = dataset
        self.ino = ino
        self.generation = generation
    }
}
