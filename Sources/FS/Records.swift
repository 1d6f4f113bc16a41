// The small value formats besides the inode: directory entries, scan records, chunks,
// statistics and the system records (Docs/format-fs-keys.md). Versioned values open
// with a ValueTag; the decoders here see only live values (whiteouts never reach them).

import Compression

/// A directory entry: what a name points to and the cookie it was given.
public struct DirEntry: Sendable, Equatable {
    public var name: [UInt8]
    public var ino: UInt64
    public var type: FileType
    public var cookie: UInt64

    public init(name: [UInt8], ino: UInt64, type: FileType, cookie: UInt64) {
        self.name = name
        self.ino = ino
        self.type = type
        self.cookie = cookie
    }

    /// The 0x02 value: tag, child ino, cookie, type.
    func encodeEntry() -> [UInt8] {
        var out: [UInt8] = [ValueTag.live.rawValue]
        out.appendBigEndian(ino)
        out.appendBigEndian(cookie)
        out.append(type.rawValue)
        return out
    }

    static func decodeEntry(name: [UInt8], _ value: UnsafeRawBufferPointer) throws(FSError) -> DirEntry {
        var r = ByteReader(value)
        guard r.u8() == ValueTag.live.rawValue, let ino = r.u64(), let cookie = r.u64(),
              let type = r.u8().flatMap(FileType.init(rawValue:)), r.atEnd
        else { throw FSError.corrupt("directory entry") }
        return DirEntry(name: name, ino: ino, type: type, cookie: cookie)
    }

    /// The 0x03 value: tag, child ino, type, name.
    func encodeScan() -> [UInt8] {
        var out: [UInt8] = [ValueTag.live.rawValue]
        out.appendBigEndian(ino)
        out.append(type.rawValue)
        out.append(contentsOf: name)
        return out
    }

    static func decodeScan(cookie: UInt64, _ value: UnsafeRawBufferPointer) throws(FSError) -> DirEntry {
        var r = ByteReader(value)
        guard r.u8() == ValueTag.live.rawValue, let ino = r.u64(), let type = r.u8().flatMap(FileType.init(rawValue:))
        else { throw FSError.corrupt("directory scan record") }
        return DirEntry(name: Array(r.rest()), ino: ino, type: type, cookie: cookie)
    }
}

/// How a chunk's bytes are stored.
enum ChunkEncoding: UInt8 {
    case raw = 0
    case zstd = 1
}

extension FileSystem {
    /// The bytes a chunk value adds to its data: tag, encoding, epoch, length.
    public static let chunkHeaderSize = 14
}

/// A chunk value: tag, encoding, data epoch (8), stored length (4), then the bytes. Trailing
/// bytes past the stored length read as zeros.
struct ChunkRecord {
    var epoch: UInt64
    var data: [UInt8]

    func encode(compress: Bool) -> [UInt8] {
        data.withUnsafeBytes { raw in
            let (head, packed) = Self.parts(epoch: epoch, data: raw, compress: compress)
            return head + (packed ?? data)
        }
    }

    /// Chunks shorter than this are stored raw without trying zstd.
    static let smallestCompressed = 64

    /// A chunk value in two parts: the header, and the compressed body when compressing
    /// pays (nil: the body is `data` itself, stored raw), so a caller can copy a raw body
    /// straight from where it is.
    static func parts(epoch: UInt64, data: UnsafeRawBufferPointer, compress: Bool) -> (head: [UInt8], packed: [UInt8]?) {
        var head: [UInt8] = [ValueTag.live.rawValue, ChunkEncoding.raw.rawValue]
        head.reserveCapacity(FileSystem.chunkHeaderSize)
        head.appendBigEndian(epoch)
        head.appendBigEndian(UInt32(data.count))
        guard compress, data.count >= smallestCompressed, worthCompressing(data), let packed = try? Zstd.compress(data), packed.count < data.count else {
            return (head, nil)
        }
        head[1] = ChunkEncoding.zstd.rawValue
        return (head, packed)
    }

    /// A probe: compress the first 4 KiB of a larger chunk; if that saves under 1/32,
    /// the chunk is taken as incompressible and stored raw without compressing it all.
    private static func worthCompressing(_ data: UnsafeRawBufferPointer) -> Bool {
        let probe = 4096
        guard data.count >= 2 * probe else { return true }
        guard let packed = try? Zstd.compress(UnsafeRawBufferPointer(rebasing: data[0..<probe]), level: 1) else { return false }
        return packed.count < probe - probe / 32
    }

    static func decode(_ value: UnsafeRawBufferPointer, chunkSize: Int) throws(FSError) -> ChunkRecord {
        let (epoch, encoding, length, body) = try header(value, chunkSize: chunkSize)
        return ChunkRecord(epoch: epoch, data: try content(encoding, length, body))
    }

    /// The header fields and the stored body, which is not copied. With `placed`, `value`
    /// is the header alone and the store put the body's `placed` bytes elsewhere
    /// (KVReader.withValues); the body returned is then empty.
    static func header(_ value: UnsafeRawBufferPointer, chunkSize: Int, placed: Int? = nil) throws(FSError)
        -> (epoch: UInt64, encoding: ChunkEncoding, length: Int, body: UnsafeRawBufferPointer) {
        var r = ByteReader(value)
        guard r.u8() == ValueTag.live.rawValue, let encoding = r.u8().flatMap(ChunkEncoding.init(rawValue:)),
              let epoch = r.u64(), let length = r.u32(), Int(length) <= chunkSize
        else { throw FSError.corrupt("chunk header") }
        let body = r.rest()
        if encoding == .raw, (placed ?? body.count) != Int(length) { throw FSError.corrupt("chunk length") }
        if placed != nil, !body.isEmpty { throw FSError.corrupt("chunk header") }
        return (epoch, encoding, Int(length), body)
    }

    /// The chunk's bytes from a body `header` returned.
    static func content(_ encoding: ChunkEncoding, _ length: Int, _ body: UnsafeRawBufferPointer) throws(FSError) -> [UInt8] {
        switch encoding {
        case .raw:
            return Array(body)
        case .zstd:
            do {
                return try Zstd.decompress(body, expectedSize: length)
            } catch {
                throw FSError.corrupt("chunk: \(error)")
            }
        }
    }
}

/// The 0x06 system records.
enum SystemRecords {
    static let formatName = "format"
    static let nextInodeName = "next-inode"
    static let incarnationName = "incarnation"
    static let nextVersionName = "next-version"
    static let nextDatasetName = "next-dataset"
    static let defaultDatasetName = "default-dataset"
    static let magic: [UInt8] = Array("ZFSFS".utf8)
    static let formatVersion: UInt8 = 1

    /// magic, format version, chunk size (4).
    static func encodeFormat(chunkSize: Int) -> [UInt8] {
        var out = magic + [formatVersion]
        out.appendBigEndian(UInt32(chunkSize))
        return out
    }

    static func decodeFormat(_ value: [UInt8]) throws(FSError) -> Int {
        guard value.count == magic.count + 5, Array(value[0..<magic.count]) == magic else {
            throw FSError(.EIO, "not a ZeroFS filesystem (bad format record)")
        }
        guard value[magic.count] == formatVersion else {
            throw FSError(.EIO, "unsupported filesystem format \(value[magic.count])")
        }
        let size = value.withUnsafeBytes { Int($0.readBigEndian32(at: magic.count + 1)) }
        guard FSOptions.validChunkSizes.contains(size) else { throw FSError.corrupt("chunk size \(size)") }
        return size
    }

    static func encodeUInt64(_ value: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        out.appendBigEndian(value)
        return out
    }

    static func decodeUInt64(_ value: [UInt8], _ what: String) throws(FSError) -> UInt64 {
        guard value.count == 8 else { throw FSError.corrupt(what) }
        return value.withUnsafeBytes { $0.readBigEndian(at: 0) }
    }
}

/// Reclaim queue values.
enum ReclaimKind: UInt8 {
    /// The inode is gone: delete every chunk of (ino, version).
    case deleteFile = 1
    /// The inode has shrink marks: delete the chunks they hide, then drop the marks.
    case shrink = 2
}
