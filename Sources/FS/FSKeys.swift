// The FS key codec: every key the filesystem writes, built and parsed here only.
// Layouts, field widths and worked examples: Docs/format-fs-keys.md. Persisted kind
// bytes are never renumbered. Integers are big-endian, so byte order is numeric order;
// every name is followed by a 0x00 terminator (names never contain NUL), so all versions
// of one logical key sit together; every versioned key ends in UInt64.max - version.
//
//   kind  key                                         versioned  value
//   0x01  inode    ino                                yes        tag + InodeRecord
//   0x02  dirent   parent ino, name, 0x00             yes        tag + child ino, cookie, type
//   0x03  dirscan  parent ino, cookie                 yes        tag + child ino, type, name
//   0x04  cookies  dir ino                            no         next cookie (8)
//   0x05  stats    dataset id                         no         FSCounters
//   0x06  system   name bytes                         no         per name (SystemRecords)
//   0x07  reclaim  ino, version                       no         reclaim kind (1)
//   0x08  dataset  dataset id                         no         DatasetRecord
//   0x09  registry space (1), namespace id, name, 0x00 no         dataset id (8)
//   0x0A  version  version id                         no         VersionNode
//   0x0B  change   version, ino                       no         empty
//   0xFE  chunk    ino, chunk index                   yes        tag + encoding, epoch, data

import Engine

public enum KeyKind: UInt8, Sendable, CaseIterable {
    case inode = 0x01
    case dirEntry = 0x02
    case dirScan = 0x03
    case cookieCounter = 0x04
    case stats = 0x05
    case system = 0x06
    case reclaim = 0x07
    case dataset = 0x08
    case registry = 0x09
    case versionNode = 0x0A
    case changeIndex = 0x0B
    case chunk = 0xFE
}

/// The one-byte tag that opens every versioned value.
public enum ValueTag: UInt8, Sendable {
    case live = 0x01
    case whiteout = 0x02
}

/// The two name spaces of the registry (0x09).
public enum NameSpace: UInt8, Sendable {
    case dataset = 1
    case snapshot = 2

    /// The namespace id of top-level dataset names.
    public static let topLevel = UInt64.max
}

public enum FSKeys {
    public static let versionSuffixSize = 8

    // MARK: logical keys (without the version suffix)

    public static func inode(_ ino: UInt64) -> [UInt8] { make(.inode, ino) }

    public static func dirEntry(_ parent: UInt64, _ name: [UInt8]) -> [UInt8] {
        var key: [UInt8] = [KeyKind.dirEntry.rawValue]
        key.reserveCapacity(10 + name.count + versionSuffixSize)
        key.appendBigEndian(parent)
        key.append(contentsOf: name)
        key.append(0)
        return key
    }

    /// Every dirent key of one directory starts with this.
    public static func dirEntryPrefix(_ parent: UInt64) -> [UInt8] { make(.dirEntry, parent) }

    public static func dirScan(_ parent: UInt64, _ cookie: UInt64) -> [UInt8] { make(.dirScan, parent, cookie) }

    public static func dirScanPrefix(_ parent: UInt64) -> [UInt8] { make(.dirScan, parent) }

    public static func cookieCounter(_ dir: UInt64) -> [UInt8] { make(.cookieCounter, dir) }

    public static func stats(_ dataset: UInt64) -> [UInt8] { make(.stats, dataset) }

    public static func system(_ name: String) -> [UInt8] {
        [KeyKind.system.rawValue] + Array(name.utf8)
    }

    public static func reclaim(_ ino: UInt64, _ version: UInt64) -> [UInt8] { make(.reclaim, ino, version) }

    public static func changeIndex(_ version: UInt64, _ ino: UInt64) -> [UInt8] { make(.changeIndex, version, ino) }

    /// Every change index record of one version starts with this.
    public static func changeIndexPrefix(_ version: UInt64) -> [UInt8] { make(.changeIndex, version) }

    public static func dataset(_ id: UInt64) -> [UInt8] { make(.dataset, id) }

    /// A name in the registry: datasets are named inside their container (top-level ones
    /// inside `NameSpace.topLevel`), snapshots inside the dataset they were taken of.
    public static func registry(_ space: NameSpace, _ namespace: UInt64, _ name: [UInt8]) -> [UInt8] {
        var key: [UInt8] = [KeyKind.registry.rawValue, space.rawValue]
        key.reserveCapacity(11 + name.count)
        key.appendBigEndian(namespace)
        key.append(contentsOf: name)
        key.append(0)
        return key
    }

    public static func versionNode(_ id: UInt64) -> [UInt8] { make(.versionNode, id) }

    /// The key ranges holding every versioned key of inode `ino`: its inode record, its
    /// directory entries and scan records (as a directory), its chunks (as a file).
    static func inodeRanges(_ ino: UInt64) -> [KeyRange] {
        [KeyRange.prefix(inode(ino)), .prefix(dirEntryPrefix(ino)), .prefix(dirScanPrefix(ino)), .prefix(chunkPrefix(ino))]
    }

    public static func chunk(_ ino: UInt64, _ index: UInt64) -> [UInt8] { make(.chunk, ino, index) }

    public static func chunkPrefix(_ ino: UInt64) -> [UInt8] { make(.chunk, ino) }

    /// A kind byte and one or two big-endian numbers, in one allocation (an array literal:
    /// `Array(unsafeUninitializedCapacity:)` looks its storage type up at run time, which
    /// costs more than the key).
    @inline(__always)
    static func make(_ kind: KeyKind, _ a: UInt64) -> [UInt8] {
        [kind.rawValue, byte(a, 56), byte(a, 48), byte(a, 40), byte(a, 32), byte(a, 24), byte(a, 16), byte(a, 8), byte(a, 0)]
    }

    @inline(__always)
    static func make(_ kind: KeyKind, _ a: UInt64, _ b: UInt64) -> [UInt8] {
        [kind.rawValue, byte(a, 56), byte(a, 48), byte(a, 40), byte(a, 32), byte(a, 24), byte(a, 16), byte(a, 8), byte(a, 0),
         byte(b, 56), byte(b, 48), byte(b, 40), byte(b, 32), byte(b, 24), byte(b, 16), byte(b, 8), byte(b, 0)]
    }

    /// Two big-endian numbers (a value of two fields), in one allocation.
    static func bigEndian(_ a: UInt64, _ b: UInt64) -> [UInt8] {
        [byte(a, 56), byte(a, 48), byte(a, 40), byte(a, 32), byte(a, 24), byte(a, 16), byte(a, 8), byte(a, 0),
         byte(b, 56), byte(b, 48), byte(b, 40), byte(b, 32), byte(b, 24), byte(b, 16), byte(b, 8), byte(b, 0)]
    }

    @inline(__always)
    private static func byte(_ value: UInt64, _ shift: UInt64) -> UInt8 { UInt8(truncatingIfNeeded: value >> shift) }

    // MARK: versions

    /// `logical` followed by the inverted version, so newer versions sort first.
    public static func versioned(_ logical: [UInt8], _ version: UInt64) -> [UInt8] {
        let v = UInt64.max - version
        // The common lengths (a kind byte and one or two numbers) as array literals: one
        // allocation, no growth.
        if logical.count == 9 {
            return logical.withUnsafeBufferPointer { l in
                [l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7], l[8],
                 byte(v, 56), byte(v, 48), byte(v, 40), byte(v, 32), byte(v, 24), byte(v, 16), byte(v, 8), byte(v, 0)]
            }
        }
        if logical.count == 17 {
            return logical.withUnsafeBufferPointer { l in
                [l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7], l[8], l[9], l[10], l[11], l[12], l[13], l[14], l[15], l[16],
                 byte(v, 56), byte(v, 48), byte(v, 40), byte(v, 32), byte(v, 24), byte(v, 16), byte(v, 8), byte(v, 0)]
            }
        }
        var key: [UInt8] = []
        key.reserveCapacity(logical.count + versionSuffixSize)
        key.append(contentsOf: logical)
        key.appendBigEndian(v)
        return key
    }

    /// Splits a versioned key into its logical part and version; nil when too short.
    public static func splitVersion(_ key: UnsafeRawBufferPointer) -> (logical: UnsafeRawBufferPointer, version: UInt64)? {
        guard key.count > versionSuffixSize else { return nil }
        let cut = key.count - versionSuffixSize
        let inverted = key.readBigEndian(at: cut)
        return (UnsafeRawBufferPointer(rebasing: key[0..<cut]), UInt64.max - inverted)
    }

    public static func splitVersion(_ key: [UInt8]) -> (logical: [UInt8], version: UInt64)? {
        key.withUnsafeBytes { raw in splitVersion(raw).map { (Array($0.logical), $0.version) } }
    }

    // MARK: parsing logical keys

    /// (parent, name) of a logical dirent key.
    public static func parseDirEntry(_ logical: [UInt8]) -> (parent: UInt64, name: [UInt8])? {
        guard logical.count >= 11, logical[0] == KeyKind.dirEntry.rawValue, logical.last == 0 else { return nil }
        let parent = logical.withUnsafeBytes { $0.readBigEndian(at: 1) }
        return (parent, Array(logical[9..<(logical.count - 1)]))
    }

    /// Reads the big-endian UInt64 at `offset` of a key that is long enough.
    public static func uint64(_ key: [UInt8], at offset: Int) -> UInt64? {
        guard key.count >= offset + 8 else { return nil }
        return key.withUnsafeBytes { $0.readBigEndian(at: offset) }
    }
}

extension Array where Element == UInt8 {
    @inline(__always)
    mutating func appendBigEndian(_ value: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    @inline(__always)
    mutating func appendBigEndian(_ value: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }
}

extension UnsafeRawBufferPointer {
    @inline(__always)
    func readBigEndian(at offset: Int) -> UInt64 {
        precondition(offset >= 0 && offset + 8 <= count, "read past the end")
        return UInt64(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    @inline(__always)
    func readBigEndian32(at offset: Int) -> UInt32 {
        precondition(offset >= 0 && offset + 4 <= count, "read past the end")
        return UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
}
