// Writes a table (Docs/format-sstable.md):
//
//   data block 0 | ... | data block n | filter | range tombstones | index | properties | footer
//
// Every part but the footer is a framed block (BlockFrame). The footer is 60 bytes:
//   filter offset u64, size u32 | tombstones offset u64, size u32 | index offset u64,
//   size u32 | properties offset u64, size u32 | format version u32 | magic u64
// all little-endian. Index entries map the last key of each data block to its offset and
// stored size (two varints). Tombstone entries map a range's start to its end.

import Engine

struct TableOptions: Sendable {
    var blockSize = 4096
    var bitsPerKey = 10
    var compress = false
    /// Key prefix lengths also entered into the bloom filter (prefix bloom).
    var prefixLengths: [Int] = []
    /// Every key longer than this is also entered without its last `versionSuffix` bytes
    /// (versioned keys: their logical part), for `firstVersion`; 0 turns it off.
    var versionSuffix = 8
}

enum TableFormat {
    static let magic: UInt64 = 0x5A45_524F_4653_5354  // "ZEROFSST"
    static let version: UInt32 = 1
    static let footerSize = 60
}

/// What the manifest records about a table.
struct TableMeta: Sendable, Equatable {
    var id: UInt64
    var size: Int
    var smallest: [UInt8]
    var largest: [UInt8]
    var entries: Int
    var tombstones: Int
    /// True when `largest` is a range tombstone's (exclusive) end rather than a key.
    var largestExclusive = false
    /// The WAL segments the table's pointer entries point into, and how many value bytes
    /// in each (by segment id).
    var valueRefs: [ValueRef] = []

    /// Whether `key` lies in the table's key range.
    func covers(_ key: UnsafeRawBufferPointer) -> Bool {
        guard Bytes.compare(key, smallest) >= 0 else { return false }
        let c = Bytes.compare(key, largest)
        return largestExclusive ? c < 0 : c <= 0
    }

    static func name(_ id: UInt64) -> String { objectName("sst/", id, ".sst") }

    var name: String { Self.name(id) }
}

struct TableBuilder {
    let options: TableOptions
    /// Bytes not yet handed to `sink`; `written` bytes went before them.
    private(set) var output: [UInt8] = []
    private var written = 0
    /// Receives the table in pieces as it is built (nil: keep it all in `output`).
    private let sink: ((UnsafeRawBufferPointer) throws -> Void)?
    private static let pieceBytes = 256 << 10
    private var data = BlockBuilder()
    private var index = BlockBuilder(restartInterval: 1)
    private var bloom: BloomBuilder
    private var tombstones: [(start: [UInt8], end: [UInt8])] = []
    private var lastKey: [UInt8] = []
    private(set) var smallest: [UInt8]?
    private(set) var entries = 0
    /// Value bytes pointed at, by segment id.
    private var pointed: [UInt64: Int] = [:]

    init(options: TableOptions, sink: ((UnsafeRawBufferPointer) throws -> Void)? = nil) {
        self.options = options
        self.sink = sink
        bloom = BloomBuilder(bitsPerKey: options.bitsPerKey)
        output.reserveCapacity(sink == nil ? 1 << 20 : Self.pieceBytes + 8192)
    }

    var estimatedSize: Int { written + output.count + data.estimatedSize }
    private var offset: Int { written + output.count }

    private mutating func drain(force: Bool) throws {
        guard let sink, force || output.count >= Self.pieceBytes else { return }
        try output.withUnsafeBytes { try sink($0) }
        written += output.count
        output.removeAll(keepingCapacity: true)
    }
    var isEmpty: Bool { entries == 0 && tombstones.isEmpty }

    /// Adds an entry; keys must arrive in strictly increasing order.
    /// With `isPointer`, `value` is a `ValuePointer` (it must decode as one).
    mutating func add(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, isDelete: Bool, isPointer: Bool = false) throws {
        if smallest == nil { smallest = Array(key) }
        if isPointer && !isDelete {
            guard let pointer = ValuePointer(value) else { throw KVError(.corruption, "pointer entry of \(value.count) bytes") }
            pointed[pointer.segment, default: 0] += pointer.length
        }
        data.add(key, value, isDelete: isDelete, isPointer: isPointer && !isDelete)
        bloom.add(BloomHash.hash(key))
        for length in options.prefixLengths where length <= key.count {
            bloom.add(BloomHash.hash(UnsafeRawBufferPointer(rebasing: key[0..<length])) ^ 0x5052_4546)
        }
        if options.versionSuffix > 0, key.count > options.versionSuffix {
            bloom.add(BloomHash.hash(UnsafeRawBufferPointer(rebasing: key[0..<(key.count - options.versionSuffix)])) ^ BloomHash.versionSeed)
        }
        lastKey.removeAll(keepingCapacity: true)
        lastKey.appendRaw(key)
        entries += 1
        if data.estimatedSize >= options.blockSize {
            flushData()
            try drain(force: false)
        }
    }

    /// Adds a range tombstone [start, end); tombstones arrive sorted by start.
    mutating func addTombstone(_ start: [UInt8], _ end: [UInt8]) {
        tombstones.append((start, end))
    }

    private mutating func flushData() {
        guard !data.isEmpty else { return }
        let at = offset
        // `output` is moved out for the closure (swap: no copy), as `data` is borrowed.
        var pending: [UInt8] = []
        swap(&pending, &output)
        let size = data.finishFramed(compress: options.compress) { stored in
            pending.append(contentsOf: stored)
            return stored.count
        }
        swap(&pending, &output)
        var handle: [UInt8] = []
        handle.appendVarint(at)
        handle.appendVarint(size)
        lastKey.withUnsafeBytes { k in handle.withUnsafeBytes { index.add(k, $0, isDelete: false) } }
        data.reset()
    }

    /// Finishes the table: returns the bytes still held (all of them without a sink; with
    /// a sink they have been handed over) and the table's metadata.
    mutating func finish(id: UInt64) throws -> (bytes: [UInt8], meta: TableMeta) {
        flushData()
        var output = self.output
        let written = self.written
        func appendBlock(_ contents: [UInt8], compress: Bool) -> (UInt64, UInt32) {
            let stored = BlockFrame.encode(contents, compress: compress)
            let offset = UInt64(written + output.count)
            output.append(contentsOf: stored)
            return (offset, UInt32(stored.count))
        }
        let filter = appendBlock(bloom.finish(), compress: false)
        var tombBlock = BlockBuilder()
        for t in tombstones {
            t.start.withUnsafeBytes { s in t.end.withUnsafeBytes { tombBlock.add(s, $0, isDelete: false) } }
        }
        let tomb = appendBlock(tombBlock.finish(), compress: false)
        let indexHandle = appendBlock(index.finish(), compress: false)
        var smallestKey = smallest ?? []
        var largestKey = entries > 0 ? lastKey : []
        var exclusive = false
        if let first = tombstones.first, smallest == nil || Bytes.compare(first.start, smallestKey) < 0 { smallestKey = first.start }
        for t in tombstones where Bytes.compare(t.end, largestKey) > 0 {
            largestKey = t.end
            exclusive = true
        }
        var props: [UInt8] = []
        props.appendVarint(entries)
        props.appendVarint(tombstones.count)
        props.appendBytes(smallestKey)
        props.appendBytes(largestKey)
        props.appendVarint(options.prefixLengths.count)
        for length in options.prefixLengths { props.appendVarint(length) }
        props.appendVarint(options.versionSuffix)
        let propsHandle = appendBlock(props, compress: false)
        for (offset, size) in [filter, tomb, indexHandle, propsHandle] {
            output.appendFixed64(offset)
            output.appendFixed32(size)
        }
        output.appendFixed32(TableFormat.version)
        output.appendFixed64(TableFormat.magic)
        self.output = output
        let size = written + output.count
        try drain(force: true)
        let meta = TableMeta(id: id, size: size, smallest: smallestKey, largest: largestKey,
                             entries: entries, tombstones: tombstones.count, largestExclusive: exclusive,
                             valueRefs: pointed.sorted { $0.key < $1.key }.map { ValueRef(segment: $0.key, bytes: $0.value) })
        return (self.output, meta)
    }
}
