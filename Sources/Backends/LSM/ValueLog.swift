// Values kept in the WAL (lsm.md, "Values in the WAL"): a large value that reached a WAL
// segment is not written again by the flush; the table holds a pointer entry to its bytes
// in the segment instead (format-sstable.md, "Pointer entries"):
//
//   segment id u64 | offset u64 | length u32 | masked CRC-32C of the value u32
//
// Segments live as long as a table of the current manifest or of a checkpoint points
// into them (garbage collection), and compaction writes the values of mostly dead
// segments back inline so those segments can go.

import Engine
import ObjectStore
import Synchronization

/// Where a value lies in a WAL segment.
struct ValuePointer: Equatable {
    static let size = 24
    var segment: UInt64
    var offset: Int
    var length: Int
    /// Masked CRC-32C of the value.
    var crc: UInt32

    func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.size)
        bytes.appendFixed64(segment)
        bytes.appendFixed64(UInt64(offset))
        bytes.appendFixed32(UInt32(length))
        bytes.appendFixed32(crc)
        return bytes
    }
}

extension ValuePointer {
    /// Decodes a pointer entry's value; nil when it is not 24 bytes.
    init?(_ raw: UnsafeRawBufferPointer) {
        guard raw.count == Self.size else { return nil }
        segment = raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
        offset = Int(truncatingIfNeeded: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian)
        length = Int(raw.loadUnaligned(fromByteOffset: 16, as: UInt32.self).littleEndian)
        crc = raw.loadUnaligned(fromByteOffset: 20, as: UInt32.self).littleEndian
    }
}

/// A value a table points at, found by `LSMStore.withValues` and not yet read: the
/// `index`th key's, with room for its bytes after the head (exactly as many).
struct PointedValue {
    var index: Int
    var object: any ReadableObject
    var pointer: ValuePointer
    var table: String
    var tail: UnsafeMutableRawBufferPointer
}

/// What one table points at in one segment.
struct ValueRef: Sendable, Equatable {
    var segment: UInt64
    var bytes: Int
}

/// Opens WAL segments for the tables that point into them. A table opens the segments
/// of its value references when it is opened and holds them as long as it is open, as
/// it holds its own file: a reader of an older version (a read view, a replica a poll
/// behind, a checkpoint opened read-only) reads its values even after garbage collection
/// deleted the segment. Tables share one open segment (weakly cached here).
final class ValueLog: Sendable {
    let objects: any ObjectStore
    private let cache = Locked<[UInt64: WeakSegment]>([:])

    struct WeakSegment { weak var object: (any ReadableObject)? }

    init(objects: any ObjectStore) { self.objects = objects }

    /// The segment `id`, open; nil when it does not exist.
    func segment(_ id: UInt64) throws -> (any ReadableObject)? {
        if let found = cache.withLock({ $0[id]?.object }) { return found }
        let name = WALFormat.name(id)
        let opened: (any ReadableObject)?
        do { opened = try objects.open(name) } catch {
            throw error as? KVError ?? KVError(.io, "open failed", path: name)
        }
        guard let opened else { return nil }
        return cache.withLock { cache in
            if let raced = cache[id]?.object { return raced }
            if cache.count >= 1024 { cache = cache.filter { $0.value.object != nil } }
            cache[id] = WeakSegment(object: opened)
            return opened
        }
    }

    /// The segments a table points into, opened; those missing are left out (reading a
    /// value there reports it).
    func open(_ refs: [ValueRef]) -> [UInt64: any ReadableObject] {
        var opened: [UInt64: any ReadableObject] = [:]
        for ref in refs { if let segment = try? segment(ref.segment) { opened[ref.segment] = segment } }
        return opened
    }

    /// The segment and place of the value `raw` (a pointer entry's value) points at,
    /// checked to lie within the segment. `table` names the table for errors.
    static func locate(
        _ raw: UnsafeRawBufferPointer, in segment: (UInt64) throws -> (any ReadableObject)?, table: String
    ) throws -> (object: any ReadableObject, pointer: ValuePointer) {
        guard let pointer = ValuePointer(raw) else {
            throw KVError(.corruption, "pointer entry of \(raw.count) bytes (not \(ValuePointer.size))", path: table)
        }
        // The segment's name only for errors: made at every read, it was 5% of a
        // sequential read's time.
        guard let object = try segment(pointer.segment) else {
            let name = WALFormat.name(pointer.segment)
            throw KVError(.corruption, "WAL segment \(name) that \(table) points into is missing", path: name)
        }
        let (end, overflow) = pointer.offset.addingReportingOverflow(pointer.length)
        guard pointer.offset >= 0, !overflow, end <= object.size else {
            let name = WALFormat.name(pointer.segment)
            throw KVError(.corruption, "pointer entry points outside \(name) (\(pointer.offset)+\(pointer.length) of \(object.size) bytes)", path: table)
        }
        return (object, pointer)
    }

    /// Reads a located value into `buffer` (its length) and checks it against the CRC.
    /// A located value read whole into a new array, checked against its CRC.
    static func read(_ located: (object: any ReadableObject, pointer: ValuePointer), table: String) throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: located.pointer.length) { buffer, count in
            try read(located, into: UnsafeMutableRawBufferPointer(buffer), table: table)
            count = located.pointer.length
        }
    }

    static func read(_ located: (object: any ReadableObject, pointer: ValuePointer), into buffer: UnsafeMutableRawBufferPointer, table: String) throws {
        let (object, pointer) = located
        do { try object.read(offset: pointer.offset, into: buffer) } catch {
            throw error as? KVError ?? KVError(.io, "read failed", path: object.name)
        }
        guard CRC32C.mask(CRC32C.checksum(UnsafeRawBufferPointer(buffer))) == pointer.crc else {
            throw KVError(.corruption, "value checksum mismatch at \(object.name) offset \(pointer.offset) (pointed at by \(table))", path: object.name)
        }
    }

    /// Reads values found by `LSMStore.withValues`, each one's first `head` bytes to the
    /// side and the rest into its tail, and passes `body` each value's index, first bytes
    /// and the count put in its tail once its CRC matches. Neighbours in a segment (in the
    /// order given, at most `gapLimit` bytes apart: the records' framing and keys) are read
    /// with one vectored read, the bytes between them into scratch: a range of a file
    /// written in order costs one system call, not one per chunk.
    static func read(
        _ values: [PointedValue], head: Int, _ body: (_ index: Int, _ head: UnsafeRawBufferPointer, _ placed: Int) throws -> Void
    ) throws {
        guard !values.isEmpty else { return }
        let heads = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, values.count * head), alignment: 8)
        defer { heads.deallocate() }
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: gapLimit, alignment: 8)
        defer { scratch.deallocate() }
        func headOf(_ k: Int) -> UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(rebasing: heads[(k * head)..<((k + 1) * head)]) }
        func gap(_ k: Int) -> Int? {
            guard k > 0, values[k].object === values[k - 1].object else { return nil }
            let between = values[k].pointer.offset - (values[k - 1].pointer.offset + values[k - 1].pointer.length)
            return between >= 0 && between <= gapLimit ? between : nil
        }
        var start = 0
        while start < values.count {
            var parts = [headOf(start), values[start].tail]
            var end = start + 1
            while end < values.count, let between = gap(end) {
                parts += [UnsafeMutableRawBufferPointer(rebasing: scratch[..<between]), headOf(end), values[end].tail]
                end += 1
            }
            let first = values[start]
            do { try first.object.read(offset: first.pointer.offset, into: parts) } catch {
                throw error as? KVError ?? KVError(.io, "read failed", path: first.object.name)
            }
            for k in start..<end {
                let value = values[k]
                let crc = CRC32C.extend(CRC32C.checksum(UnsafeRawBufferPointer(headOf(k))), UnsafeRawBufferPointer(value.tail))
                guard CRC32C.mask(crc) == value.pointer.crc else {
                    throw KVError(.corruption, "value checksum mismatch at \(value.object.name) offset \(value.pointer.offset) (pointed at by \(value.table))", path: value.object.name)
                }
                try body(value.index, UnsafeRawBufferPointer(headOf(k)), value.tail.count)
            }
            start = end
        }
    }

    /// The most bytes between two values read with one vectored read.
    static let gapLimit = 4096

    /// A segment's size in bytes, or nil when it cannot be opened.
    func size(of id: UInt64) -> Int? {
        (try? segment(id))??.size
    }
}
