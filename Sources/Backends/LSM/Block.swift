// Blocks: the unit of tables (Docs/format-sstable.md). A block holds sorted entries with
// prefix-compressed keys and a restart point (a full key) every 16 entries:
//
//   entry:   shared varint | unshared varint | tag varint | key suffix | value
//            tag = value length << 1 | 1 if the entry is a deletion (empty value) or a
//            pointer to a value in a WAL segment (a 24-byte value; ValueLog.swift)
//   trailer: restart offsets (fixed32 each) | restart count (fixed32)
//
// On disk every block is followed by 1 byte of compression type (0 none, 1 zstd) and a
// masked CRC-32C (fixed32) of the stored bytes and the type byte.

import Compression
import Engine

struct BlockBuilder {
    private(set) var buffer: [UInt8] = []
    private var restarts: [UInt32] = [0]
    private var counter = 0
    private var lastKey: [UInt8] = []
    private(set) var entries = 0
    /// Entries between restart points: 16 for data blocks; 1 for index blocks, so a seek
    /// there is a pure binary search.
    let restartInterval: Int

    init(restartInterval: Int = 16) {
        self.restartInterval = restartInterval
        buffer.reserveCapacity(4096 + 512)
    }

    var isEmpty: Bool { entries == 0 }
    var estimatedSize: Int { buffer.count + restarts.count * 4 + 4 }

    /// Adds an entry. A deletion stores no value; a pointer entry stores the pointer
    /// (`ValuePointer`, never empty) as its value.
    mutating func add(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, isDelete: Bool, isPointer: Bool = false) {
        let value = isDelete ? UnsafeRawBufferPointer(start: nil, count: 0) : value
        var shared = 0
        if counter < restartInterval {
            let n = min(lastKey.count, key.count)
            while shared < n && lastKey[shared] == key[shared] { shared += 1 }
        } else {
            restarts.append(UInt32(buffer.count))
            counter = 0
        }
        buffer.appendVarint(shared)
        buffer.appendVarint(key.count - shared)
        buffer.appendVarint(UInt64(value.count) << 1 | (isDelete || isPointer ? 1 : 0))
        buffer.appendRaw(UnsafeRawBufferPointer(rebasing: key[shared...]))
        buffer.appendRaw(value)
        lastKey.removeAll(keepingCapacity: true)
        lastKey.appendRaw(key)
        counter += 1
        entries += 1
    }

    /// The finished block contents (without the on-disk trailer).
    mutating func finish() -> [UInt8] {
        appendRestarts()
        return buffer
    }

    /// The trailer of the contents: restart offsets, then their count.
    private mutating func appendRestarts() {
        for r in restarts { buffer.appendFixed32(r) }
        buffer.appendFixed32(UInt32(restarts.count))
    }

    /// Finishes the block and passes its stored form (BlockFrame) to `body`. Uncompressed,
    /// the trailer goes on the builder's own buffer, so the contents are not copied again
    /// (`BlockFrame.encode` of `finish()` copied every table byte once more). `reset`
    /// starts the next block.
    mutating func finishFramed<R>(compress: Bool, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        appendRestarts()
        if compress { return try BlockFrame.encode(buffer, compress: true).withUnsafeBytes(body) }
        BlockFrame.appendTrailer(&buffer, type: 0)
        return try buffer.withUnsafeBytes(body)
    }

    mutating func reset() {
        buffer.removeAll(keepingCapacity: true)
        restarts = [0]
        counter = 0
        lastKey.removeAll(keepingCapacity: true)
        entries = 0
    }
}

/// Framing of stored blocks: compression and checksum.
enum BlockFrame {
    static let trailerSize = 5

    /// The stored form of `contents`: compressed when that saves at least 1/8.
    static func encode(_ contents: [UInt8], compress: Bool) -> [UInt8] {
        var stored = contents
        var type: UInt8 = 0
        if compress, let packed = try? Zstd.compress(contents, level: 1), packed.count + 5 < contents.count - contents.count / 8 {
            stored = []
            stored.reserveCapacity(packed.count + 10)
            stored.appendVarint(contents.count)
            stored.append(contentsOf: packed)
            type = 1
        }
        appendTrailer(&stored, type: type)
        return stored
    }

    /// Appends the trailer (compression type, masked CRC32C of everything before it).
    static func appendTrailer(_ stored: inout [UInt8], type: UInt8) {
        stored.append(type)
        let crc = stored.withUnsafeBytes { CRC32C.checksum($0) }
        stored.appendFixed32(CRC32C.mask(crc))
    }

    /// Checks and unpacks a stored block; `.corruption` naming `what` on any mismatch.
    static func decode(_ stored: [UInt8], what: String) throws -> [UInt8] {
        try stored.withUnsafeBytes { raw in
            let body = try check(raw, what: what)
            return try unpack(raw, body: body, what: what)
        }
    }

    /// Checks a stored block's checksum and compression type: the length of its contents
    /// when not compressed (the type byte follows them).
    static func check(_ stored: UnsafeRawBufferPointer, what: String) throws -> Int {
        guard stored.count >= trailerSize else { throw KVError(.corruption, "block is too short", path: what) }
        let crcAt = stored.count - 4
        let expected = UInt32(littleEndian: stored.loadUnaligned(fromByteOffset: crcAt, as: UInt32.self))
        let actual = CRC32C.mask(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: stored[0..<crcAt])))
        guard expected == actual else { throw KVError(.corruption, "block checksum mismatch", path: what) }
        let type = stored[crcAt - 1]
        guard type <= 1 else { throw KVError(.corruption, "unknown block compression \(type)", path: what) }
        return crcAt - 1
    }

    /// The contents of a checked block whose contents end at `body`.
    static func unpack(_ stored: UnsafeRawBufferPointer, body: Int, what: String) throws -> [UInt8] {
        if stored[body] == 0 { return Array(stored[0..<body]) }
        var reader = ByteReader(UnsafeRawBufferPointer(rebasing: stored[0..<body]), what: what)
        let size = try reader.int()
        guard size <= 1 << 30 else { throw KVError(.corruption, "block size is impossible", path: what) }
        do {
            return try Zstd.decompress(UnsafeRawBufferPointer(rebasing: stored[reader.at..<body]), expectedSize: size)
        } catch {
            throw KVError(.corruption, "block does not decompress", path: what, cause: "\(error)")
        }
    }
}

/// A decoded block in memory of its own (stable addresses), shared by readers.
final class Block: @unchecked Sendable {
    // Immutable after init; `base` is freed in deinit, after every cursor let go.
    let base: UnsafeMutableRawPointer
    let size: Int
    let restartsOffset: Int
    let restartCount: Int

    convenience init(_ data: [UInt8], what: String) throws {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: max(data.count, 1), alignment: 8)
        data.withUnsafeBytes { if let source = $0.baseAddress { memory.copyMemory(from: source, byteCount: data.count) } }
        try self.init(owning: memory, size: data.count, what: what)
    }

    /// A block over `size` bytes at `memory`, which it owns from now on (freed also when
    /// this throws).
    init(owning memory: UnsafeMutableRawPointer, size: Int, what: String) throws {
        guard size >= 4 else {
            memory.deallocate()
            throw KVError(.corruption, "block has no trailer", path: what)
        }
        let count = Int(UInt32(littleEndian: memory.loadUnaligned(fromByteOffset: size - 4, as: UInt32.self)))
        let offset = size - 4 - count * 4
        guard count >= 1, count <= size, offset >= 0 else {
            memory.deallocate()
            throw KVError(.corruption, "block restart array is malformed", path: what)
        }
        base = memory
        self.size = size
        restartCount = count
        restartsOffset = offset
    }

    /// Reads the stored block of `stored` bytes with `read` into memory the block keeps,
    /// checks it, and, when it is not compressed, uses it where it lies: one copy (the
    /// read) instead of three.
    static func read(stored: Int, what: String, _ read: (UnsafeMutableRawBufferPointer) throws -> Void) throws -> Block {
        guard stored >= BlockFrame.trailerSize else { throw KVError(.corruption, "block is too short", path: what) }
        let memory = UnsafeMutableRawPointer.allocate(byteCount: stored, alignment: 8)
        let body: Int
        do {
            try read(UnsafeMutableRawBufferPointer(start: memory, count: stored))
            body = try BlockFrame.check(UnsafeRawBufferPointer(start: memory, count: stored), what: what)
        } catch {
            memory.deallocate()
            throw error
        }
        if memory.load(fromByteOffset: body, as: UInt8.self) == 0 { return try Block(owning: memory, size: body, what: what) }
        defer { memory.deallocate() }
        return try Block(BlockFrame.unpack(UnsafeRawBufferPointer(start: memory, count: stored), body: body, what: what), what: what)
    }

    deinit { base.deallocate() }

    /// What the block costs the cache: its bytes plus the block object, the cache node
    /// and dictionary slot, and malloc's own overhead (about 200 bytes together).
    var byteSize: Int { size + 208 }

    @inline(__always)
    func restart(_ i: Int) -> Int {
        Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: restartsOffset + 4 * i, as: UInt32.self)))
    }
}

/// A position in a block. Keys are rebuilt into a buffer of the cursor's own; `key` and
/// `value` stay valid until the cursor moves. Used by one thread at a time.
final class BlockCursor {
    private(set) var block: Block
    private var keyBuffer: UnsafeMutableRawPointer
    private var keyCapacity = 256
    private(set) var keyLength = 0
    private var valueStart = 0
    private(set) var valueLength = 0
    private(set) var isDelete = false
    /// The value is a `ValuePointer` to the real value in a WAL segment.
    private(set) var isPointer = false
    private var next = 0
    private(set) var isValid = false
    private(set) var corrupt = false

    init(_ block: Block) {
        self.block = block
        keyBuffer = UnsafeMutableRawPointer.allocate(byteCount: keyCapacity, alignment: 8)
    }

    deinit { keyBuffer.deallocate() }

    /// Moves the cursor to another block (before its first entry).
    func reset(_ block: Block) {
        self.block = block
        isValid = false
        corrupt = false
        keyLength = 0
        next = 0
    }

    @inline(__always) var key: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: keyBuffer, count: keyLength) }
    @inline(__always) var value: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: block.base + valueStart, count: valueLength) }

    func seekToFirst() {
        keyLength = 0
        next = 0
        step()
    }

    /// Positions on the first entry whose key is >= target.
    func seek(_ target: UnsafeRawBufferPointer) {
        // Binary search on restart points (their keys are stored whole).
        let base = UnsafeRawPointer(block.base)
        let end = base + block.restartsOffset
        var lo = 0
        var hi = block.restartCount - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            var p = base + block.restart(mid)
            var c = 1
            if p < end, decodeVarint32(&p, end) == 0, let unshared = decodeVarint32(&p, end), decodeVarint32(&p, end) != nil,
               p + Int(unshared) <= end {
                c = Bytes.compare(UnsafeRawBufferPointer(start: p, count: Int(unshared)), target)
            }
            if c < 0 { lo = mid } else { hi = mid - 1 }
        }
        keyLength = 0
        next = block.restart(lo)
        step()
        while isValid && Bytes.compare(key, target) < 0 { step() }
    }

    /// Moves to the next entry.
    @inline(__always)
    func step() {
        guard next < block.restartsOffset else {
            isValid = false
            return
        }
        let base = UnsafeRawPointer(block.base)
        var p = base + next
        let end = base + block.restartsOffset
        guard let shared = decodeVarint32(&p, end), let unshared = decodeVarint32(&p, end), let tag = decodeVarint32(&p, end),
              Int(shared) <= keyLength, p + Int(unshared) + Int(tag >> 1) <= end
        else {
            isValid = false
            corrupt = true
            return
        }
        let newLength = Int(shared) + Int(unshared)
        if newLength > keyCapacity {
            let grown = UnsafeMutableRawPointer.allocate(byteCount: newLength * 2, alignment: 8)
            grown.copyMemory(from: keyBuffer, byteCount: keyLength)
            keyBuffer.deallocate()
            keyBuffer = grown
            keyCapacity = newLength * 2
        }
        if unshared > 0 { (keyBuffer + Int(shared)).copyMemory(from: p, byteCount: Int(unshared)) }
        keyLength = newLength
        p += Int(unshared)
        valueStart = p - base
        valueLength = Int(tag >> 1)
        isDelete = tag == 1
        isPointer = tag & 1 == 1 && tag > 1
        next = valueStart + valueLength
        isValid = true
    }
}
