// The memtable: a skiplist whose nodes live in an arena of large chunks (no allocation
// per entry), ordered by key ascending, then sequence number descending, so a reader at
// sequence s takes the first node of a key with seq <= s. Every write adds a node (old
// versions stay for read views); range deletes are kept in a side list with their
// sequence numbers. One writer at a time (writers hold the store's state monitor);
// readers share a reader-writer lock with it.
//
// Node: seq<<8|kind u64 | key length u32 | value length u32 | height u32 | pad u32 |
//       next pointers (8 bytes x height) | key | value, or, for a value kept in place
//       (kind 2), the address of its bytes in the batch it came in

import Engine
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

final class Memtable: @unchecked Sendable {
    // All mutable state is guarded by `lock` (writers exclusive, readers shared); node
    // memory never moves or frees until the memtable is released.
    static let maxHeight = 12
    private let lock = ReadWriteLock()
    /// Arena chunks, mapped with mmap so that releasing a memtable always returns its
    /// memory to the system (malloc's moving mmap threshold would keep it in the heap).
    private var chunks: [(base: UnsafeMutableRawPointer, size: Int, mapped: Bool)] = []
    private var chunkUsed = 0
    private var chunkSize = 0
    private let head: UnsafeMutableRawPointer
    private var height = 1
    private var random: UInt64 = 0x2545_F491_4F6C_DD1D
    private(set) var approximateBytes = 0
    /// Key and value bytes added, by the key's first byte (an empty key counts as 0), every
    /// version counted: what a flush decides its cuts by (`LSMStore.flushCuts`).
    private var bytesByFirstByte = [Int](repeating: 0, count: 256)
    private(set) var entryCount = 0
    /// The largest sequence number added.
    private(set) var largestSeq: UInt64 = 0
    /// Point deletions added.
    private(set) var deletions = 0
    private var rangeDeletes: [(start: [UInt8], end: [UInt8], seq: UInt64)] = []
    /// The first WAL object holding this memtable's data. Moved up (`moveFirstWAL`) only
    /// before any of its data is written, when the frozen memtable's last records had to go
    /// to a later WAL object than planned (an upload cut short, LSMStore+WAL.swift).
    var firstWAL: UInt64 { firstWALValue.load(ordering: .acquiring) }
    private let firstWALValue: Atomic<UInt64>

    func moveFirstWAL(to id: UInt64) {
        firstWALValue.store(id, ordering: .releasing)
    }
    /// Set when frozen (under the store's state lock): the WAL position (`walAppended`) of
    /// its last record. Its flush commits only once the WAL is written up to there.
    var walEnd: UInt64 = 0
    /// Set when frozen (under the store's state lock) because it sat idle holding
    /// deletions: its flush's commit asks for an L0 compaction (`LSMStore.idleCompaction`).
    var frozenWhenIdle = false
    private static let standardChunk = 1 << 20
    /// Values of at least this many bytes stay where their batch holds them (`keep`).
    static let inPlaceBytes = 2048
    /// Encoded batches (`WriteBatch.rep`) whose bytes hold values of this memtable in
    /// place: such a value is not copied into the arena, its node points into the batch,
    /// kept here unchanged until the memtable is released. A file chunk was otherwise
    /// copied twice on its way in, into the batch and then here. Only batches that are
    /// mostly such values are kept (`LSMStore.apply`), and their whole allocation counts.
    private var batches: [(rep: [UInt8], seq: UInt64)] = []

    init(firstWAL: UInt64) {
        firstWALValue = Atomic(firstWAL)
        head = UnsafeMutableRawPointer.allocate(byteCount: 24 + 8 * Self.maxHeight, alignment: 8)
        head.initializeMemory(as: UInt8.self, repeating: 0, count: 24 + 8 * Self.maxHeight)
    }

    deinit {
        head.deallocate()
        for chunk in chunks {
            if chunk.mapped {
                if chunk.size != Self.standardChunk || !Self.spares.keep(chunk.base) { munmap(chunk.base, chunk.size) }
            } else {
                chunk.base.deallocate()
            }
        }
    }

    /// Standard chunks of released memtables, kept for the next memtables up to 16 MiB (one
    /// default memtable): a chunk fresh from mmap takes a page fault per 4 KiB on first
    /// touch, which was nine tenths of the time a memtable took to take in file data.
    /// Nodes are written whole, so a reused chunk needs no clearing.
    private final class Spares: @unchecked Sendable {
        // Guarded by `lock`.
        private var chunks: [UnsafeMutableRawPointer] = []
        private let lock = NSLock()
        static let limit = 16

        func keep(_ base: UnsafeMutableRawPointer) -> Bool {
            lock.lock()
            defer { lock.unlock() }
            guard chunks.count < Self.limit else { return false }
            chunks.append(base)
            return true
        }

        func take() -> UnsafeMutableRawPointer? {
            lock.lock()
            defer { lock.unlock() }
            return chunks.popLast()
        }
    }

    private static let spares = Spares()

    /// A region of `size` bytes straight from the system (page-aligned), or from the
    /// allocator if mapping fails; a standard chunk is a spare when there is one.
    private static func map(_ size: Int) -> (base: UnsafeMutableRawPointer, size: Int, mapped: Bool) {
        if size == standardChunk, let base = spares.take() { return (base, size, true) }
        let region = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let region, region != MAP_FAILED else {
            return (UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8), size, false)
        }
        return (region, size, true)
    }

    // MARK: Node access

    @inline(__always) private static func seqKind(_ n: UnsafeRawPointer) -> UInt64 { n.load(as: UInt64.self) }
    @inline(__always) private static func keyLength(_ n: UnsafeRawPointer) -> Int { Int(n.load(fromByteOffset: 8, as: UInt32.self)) }
    @inline(__always) private static func valueLength(_ n: UnsafeRawPointer) -> Int { Int(n.load(fromByteOffset: 12, as: UInt32.self)) }
    @inline(__always) private static func nodeHeight(_ n: UnsafeRawPointer) -> Int { Int(n.load(fromByteOffset: 16, as: UInt32.self)) }
    @inline(__always) static func next(_ n: UnsafeRawPointer, _ level: Int) -> UnsafeMutableRawPointer? {
        n.load(fromByteOffset: 24 + 8 * level, as: UnsafeMutableRawPointer?.self)
    }
    @inline(__always) private static func setNext(_ n: UnsafeMutableRawPointer, _ level: Int, _ to: UnsafeMutableRawPointer?) {
        n.storeBytes(of: to, toByteOffset: 24 + 8 * level, as: UnsafeMutableRawPointer?.self)
    }
    @inline(__always) static func key(_ n: UnsafeRawPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: n + 24 + 8 * nodeHeight(n), count: keyLength(n))
    }
    @inline(__always) static func value(_ n: UnsafeRawPointer) -> UnsafeRawBufferPointer {
        let at = n + 24 + 8 * nodeHeight(n) + keyLength(n)
        if seqKind(n) & 0xFF == Self.kindInPlace {
            return UnsafeRawBufferPointer(start: at.loadUnaligned(as: UnsafeRawPointer.self), count: valueLength(n))
        }
        return UnsafeRawBufferPointer(start: at, count: valueLength(n))
    }
    @inline(__always) static func seq(_ n: UnsafeRawPointer) -> UInt64 { seqKind(n) >> 8 }
    @inline(__always) static func isDelete(_ n: UnsafeRawPointer) -> Bool { seqKind(n) & 0xFF == 0 }
    /// The node's value lies in a kept batch (`keep`).
    @inline(__always) static func isInPlace(_ n: UnsafeRawPointer) -> Bool { seqKind(n) & 0xFF == kindInPlace }
    private static let kindInPlace: UInt64 = 2

    /// Orders (key, seq): key ascending, then seq descending.
    @inline(__always)
    private static func compare(_ n: UnsafeRawPointer, _ key: UnsafeRawBufferPointer, _ seq: UInt64) -> Int {
        let c = Bytes.compare(Self.key(n), key)
        if c != 0 { return c }
        let s = Self.seq(n)
        return s > seq ? -1 : (s < seq ? 1 : 0)
    }

    private func allocate(_ bytes: Int) -> UnsafeMutableRawPointer {
        let size = (bytes + 7) & ~7
        if size > Self.standardChunk / 4 {
            let chunk = Self.map(size)
            chunks.insert(chunk, at: max(chunks.count - 1, 0))
            return chunk.base
        }
        if chunks.isEmpty || chunkUsed + size > chunkSize {
            chunks.append(Self.map(Self.standardChunk))
            chunkSize = Self.standardChunk
            chunkUsed = 0
        }
        defer { chunkUsed += size }
        return chunks[chunks.count - 1].base + chunkUsed
    }

    private func randomHeight() -> Int {
        var h = 1
        while h < Self.maxHeight {
            random ^= random << 13
            random ^= random >> 7
            random ^= random << 17
            if random & 3 != 0 { break }
            h += 1
        }
        return h
    }

    // MARK: Writing (one writer at a time)

    /// Keeps `rep`, the encoded batch whose bytes the values added next with `inPlace`
    /// point into, and counts its whole allocation. The caller passes those values from
    /// this very array's storage.
    /// `seq` is the batch's first sequence number (its WAL record's).
    func keep(_ rep: [UInt8], seq: UInt64) {
        lock.writeLocked {
            batches.append((rep, seq))
            approximateBytes += rep.capacity
        }
    }

    /// The kept batches (`keep`): where each one's bytes start, how many, and its first
    /// sequence number, sorted by address (a flush finds the batch of an in-place value).
    func keptBatches() -> [(base: UnsafeRawPointer, count: Int, seq: UInt64)] {
        lock.readLocked {
            batches.map { batch in (batch.rep.withUnsafeBytes { UnsafeRawPointer($0.baseAddress!) }, batch.rep.count, batch.seq) }
                .sorted { $0.base < $1.base }
        }
    }

    /// Adds a node. With `inPlace`, the value's bytes are not copied: they belong to a
    /// batch given to `keep` first, and stay there as long as this memtable.
    func add(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, seq: UInt64, isDelete: Bool, inPlace: Bool = false) {
        let h = randomHeight()
        let inPlace = inPlace && !isDelete && value.count > 0
        let size = 24 + 8 * h + key.count + (inPlace ? 8 : value.count)
        lock.writeLocked {
            let node = allocate(size)
            node.storeBytes(of: seq << 8 | (isDelete ? 0 : inPlace ? Self.kindInPlace : 1), as: UInt64.self)
            node.storeBytes(of: UInt32(key.count), toByteOffset: 8, as: UInt32.self)
            node.storeBytes(of: UInt32(value.count), toByteOffset: 12, as: UInt32.self)
            node.storeBytes(of: UInt32(h), toByteOffset: 16, as: UInt32.self)
            node.storeBytes(of: UInt32(0), toByteOffset: 20, as: UInt32.self)
            let body = node + 24 + 8 * h
            bytesByFirstByte[Int(key.first ?? 0)] += key.count + value.count
            if key.count > 0 { body.copyMemory(from: key.baseAddress!, byteCount: key.count) }
            if inPlace {
                (body + key.count).storeBytes(of: UnsafeRawPointer(value.baseAddress!), as: UnsafeRawPointer.self)
            } else if value.count > 0 {
                (body + key.count).copyMemory(from: value.baseAddress!, byteCount: value.count)
            }
            // Find predecessors at every level (a fixed-size stack buffer, no allocation).
            var predStorage: (UnsafeMutableRawPointer, UnsafeMutableRawPointer, UnsafeMutableRawPointer, UnsafeMutableRawPointer,
                              UnsafeMutableRawPointer, UnsafeMutableRawPointer, UnsafeMutableRawPointer, UnsafeMutableRawPointer,
                              UnsafeMutableRawPointer, UnsafeMutableRawPointer, UnsafeMutableRawPointer, UnsafeMutableRawPointer)
                = (head, head, head, head, head, head, head, head, head, head, head, head)
            withUnsafeMutableBytes(of: &predStorage) { raw in
            let preds = raw.bindMemory(to: UnsafeMutableRawPointer.self)
            _ = descend(key, seq, recording: preds)
            if h > height {
                for l in height..<h { preds[l] = head }
                height = h
            }
            for l in 0..<h {
                Self.setNext(node, l, Self.next(preds[l], l))
                Self.setNext(preds[l], l, node)
            }
            }
            approximateBytes += size + 16
            entryCount += 1
            largestSeq = max(largestSeq, seq)
            if isDelete { deletions += 1 }
        }
    }

    var rangeDeleteCount: Int { lock.readLocked { rangeDeletes.count } }

    func addRangeDelete(_ start: UnsafeRawBufferPointer, _ end: UnsafeRawBufferPointer, seq: UInt64) {
        guard Bytes.compare(start, end) < 0 else { return }
        lock.writeLocked {
            rangeDeletes.append((Array(start), Array(end), seq))
            approximateBytes += start.count + end.count + 64
        }
    }

    // MARK: Reading

    /// The last node before (key, seq) (or the head), noting at every level the node the
    /// descent turned down at when `preds` is given. REQUIRES: the lock is held.
    private func descend(
        _ key: UnsafeRawBufferPointer, _ seq: UInt64, recording preds: UnsafeMutableBufferPointer<UnsafeMutableRawPointer>? = nil
    ) -> UnsafeMutableRawPointer {
        var x = head
        var level = height - 1
        while true {
            if let n = Self.next(x, level), Self.compare(n, key, seq) < 0 {
                x = n
            } else {
                preds?[level] = x
                if level == 0 { return x }
                level -= 1
            }
        }
    }

    /// The first node at or after (key, seq). REQUIRES: the read lock is held.
    private func seekNode(_ key: UnsafeRawBufferPointer, _ seq: UInt64) -> UnsafeMutableRawPointer? {
        Self.next(descend(key, seq), 0)
    }

    /// The highest sequence number (at most `seq`) of a range delete covering `key`, or 0.
    func rangeDeleteSeq(_ key: UnsafeRawBufferPointer, atOrBelow seq: UInt64) -> UInt64 {
        lock.readLocked { coveringSeq(key, seq) }
    }

    private func coveringSeq(_ key: UnsafeRawBufferPointer, _ seq: UInt64) -> UInt64 {
        var best: UInt64 = 0
        for r in rangeDeletes where r.seq <= seq && r.seq > best {
            if Bytes.compare(key, r.start) >= 0 && Bytes.compare(key, r.end) < 0 { best = r.seq }
        }
        return best
    }

    var hasRangeDeletes: Bool { lock.readLocked { !rangeDeletes.isEmpty } }

    /// Looks `key` up as of `seq`.
    func get(_ key: UnsafeRawBufferPointer, seq: UInt64) -> Lookup<[UInt8]> {
        lock.readLocked {
            let covered = rangeDeletes.isEmpty ? 0 : coveringSeq(key, seq)
            if let n = seekNode(key, seq), Bytes.compare(Self.key(n), key) == 0, Self.seq(n) > covered {
                return Self.isDelete(n) ? .deleted : .value(Array(Self.value(n)))
            }
            return covered > 0 ? .deleted : .absent
        }
    }

    /// Key and value bytes added by first key byte (`bytesByFirstByte`).
    var firstByteSizes: [Int] { lock.readLocked { bytesByFirstByte } }

    /// Range deletes visible at `seq`, sorted by start (for flushing and merging).
    func rangeDeletes(atOrBelow seq: UInt64) -> [(start: [UInt8], end: [UInt8], seq: UInt64)] {
        lock.readLocked { rangeDeletes.filter { $0.seq <= seq }.sorted { Bytes.compare($0.start, $1.start) < 0 } }
    }

    // MARK: Cursor support (the cursor holds the memtable alive)

    func first() -> UnsafeMutableRawPointer? { lock.readLocked { Self.next(head, 0) } }

    func seek(_ key: UnsafeRawBufferPointer) -> UnsafeMutableRawPointer? {
        lock.readLocked { seekNode(key, UInt64.max >> 8) }
    }

    func successor(_ node: UnsafeRawPointer) -> UnsafeMutableRawPointer? { lock.readLocked { Self.next(node, 0) } }

    /// Runs `body` holding the read lock (to read node bytes safely while writers insert).
    func reading<R>(_ body: () throws -> R) rethrows -> R { try lock.readLocked(body) }
}

/// A cursor over one memtable as of a sequence number: it yields each key once, at its
/// newest version with seq <= the cursor's, deletions included.
struct MemtableCursor {
    let table: Memtable
    let seq: UInt64
    private(set) var node: UnsafeMutableRawPointer?

    init(_ table: Memtable, seq: UInt64) {
        self.table = table
        self.seq = seq
    }

    var isValid: Bool { node != nil }

    mutating func seekToFirst() {
        node = table.first()
        settle()
    }

    mutating func seek(_ key: UnsafeRawBufferPointer) {
        node = table.seek(key)
        settle()
    }

    /// Skips versions newer than `seq`.
    private mutating func settle() {
        while let n = node, Memtable.seq(n) > seq { node = table.successor(n) }
    }

    mutating func step() {
        guard let current = node else { return }
        let seq = seq
        // Skip the remaining (older) versions of the current key, then versions newer than
        // the cursor's sequence number, under one read lock.
        node = table.reading {
            var n = Memtable.next(current, 0)
            let key = Memtable.key(current)
            while let x = n, Bytes.compare(Memtable.key(x), key) == 0 { n = Memtable.next(x, 0) }
            while let x = n, Memtable.seq(x) > seq { n = Memtable.next(x, 0) }
            return n
        }
    }
}
