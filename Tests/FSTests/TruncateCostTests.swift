// Truncating down is O(1) in the file's size: it writes a shrink mark, never one
// deletion per chunk (DESIGN.md, "Traps to design for"). Checked by counting the key
// operations of the truncate's write batch, not by timing.

import Engine
import FS
import FSTestSupport
import KVTestSupport
import MemoryBackend
import Synchronization
import Testing

/// A KVBackend that forwards to another and counts the operations of written batches.
final class CountingBackend: ForwardingBackend, @unchecked Sendable {
    let operations = Mutex(0)

    override func write(_ batch: WriteBatch, durable: Bool) throws {
        operations.withLock { $0 += batch.count }
        try inner.write(batch, durable: durable)
    }
}

/// A KVBackend that counts the entries its iterators lend out (scans): `lent`, every
/// entry, with its value or with its value's length only (`withCurrentKey`); `chunkValues`,
/// the chunk entries lent with their values.
final class ScanCountingBackend: ForwardingBackend, @unchecked Sendable {
    let lent = Mutex(0)
    let chunkValues = Mutex(0)

    override func makeIterator(_ range: KeyRange) throws -> any KVIterator {
        CountingIterator(try inner.makeIterator(range), self)
    }

    final class CountingIterator: ForwardingIterator {
        let owner: ScanCountingBackend

        init(_ base: any KVIterator, _ owner: ScanCountingBackend) {
            self.owner = owner
            super.init(base)
        }

        override func withCurrent<R>(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> R) throws -> R {
            owner.lent.withLock { $0 += 1 }
            return try super.withCurrent { key, value in
                if key.first == KeyKind.chunk.rawValue { owner.chunkValues.withLock { $0 += 1 } }
                return try body(key, value)
            }
        }

        override func withCurrentKey<R>(_ body: (UnsafeRawBufferPointer, Int) throws -> R) throws -> R {
            owner.lent.withLock { $0 += 1 }
            return try super.withCurrentKey(body)
        }
    }
}

/// Options of the cost tests: 4 KiB chunks, and reclaim only when a test runs it
/// (`reclaimNow`), so background deletions never mix into what a test counts.
func costTestOptions() -> FSOptions {
    var options = FSOptions()
    options.chunkSize = 4096
    options.backgroundReclaim = false
    return options
}

@Suite struct TruncateCostTests {
    /// Key operations written by truncating a file of `chunks` written chunks to 100 bytes.
    private func truncateCost(chunks: Int) throws -> Int {
        let harness = StoreHarness(MemoryBackendFactory())
        defer { harness.cleanUp() }
        let counting = CountingBackend(try harness.open(harness.freshPath()))
        // Reclaim's deletions come later and are not the truncate's.
        let fs = try FileSystem.open(counting, options: costTestOptions())
        defer { try? fs.close() }
        let file = try fs.create(.root, FileSystem.rootInode, Array("f".utf8), mode: 0o644)
        _ = try fs.write(.root, file.ino, offset: 0, [UInt8](repeating: 7, count: chunks * 4096))
        let before = counting.operations.withLock { $0 }
        _ = try fs.setattr(.root, file.ino, SetAttributes(size: 100))
        let cost = counting.operations.withLock { $0 } - before
        #expect(try fs.read(.root, file.ino, offset: 0, count: 200).data == [UInt8](repeating: 7, count: 100))
        // The chunks beyond the new size are reclaimed later, in batches of their own.
        _ = try fs.pool.reclaimNow()
        #expect(try Fsck.check(counting).problems.isEmpty)
        return cost
    }

    /// Reclaiming what a truncate hid, in many small batches, after a writer rewrote most
    /// of the file in the new epoch: the pass reads each chunk entry about once, not once
    /// per batch.
    @Test func aShrinkReclaimReadsEachChunkAboutOnce() throws {
        try withFileOf400Chunks { counting, fs, file in
            _ = try fs.setattr(.root, file.ino, SetAttributes(size: 0))
            _ = try fs.write(.root, file.ino, offset: 0, [UInt8](repeating: 8, count: 300 * 4096))
            let before = counting.lent.withLock { $0 }
            _ = try fs.pool.reclaimNow()
            let read = counting.lent.withLock { $0 } - before
            // 400 chunk entries (300 rewritten, 100 hidden), deleted 10 at a time: starting each
            // batch over from the first chunk read about 20 times as many.
            #expect(read < 2 * 400, "the reclaim read \(read) entries")
            #expect(try fs.read(.root, file.ino, offset: 0, count: 400 * 4096).data == [UInt8](repeating: 8, count: 300 * 4096))
            #expect(try Fsck.check(counting).problems.isEmpty)
        }
    }

    /// Reclaiming a deleted file in many small batches, with a snapshot holding its older
    /// chunks between the head's keys: each batch goes on after the last one, so the pass
    /// reads each entry about once (starting over at chunk 0 stepped over the snapshot's
    /// chunks again at every batch: time in the square of the file's size), and walks keys
    /// alone: no chunk's bytes are read (a store that keeps file data apart from its keys,
    /// lsm, would read the whole file back to delete it).
    @Test func aDeletedFilesReclaimReadsEachChunkAboutOnce() throws {
        try withFileOf400Chunks { counting, fs, file in
            try fs.pool.snapshot("root", "s")
            let head = try fs.pool.filesystem(named: "root")
            _ = try head.write(.root, file.ino, offset: 0, [UInt8](repeating: 8, count: 400 * 4096))
            try head.unlink(.root, FileSystem.rootInode, Array("f".utf8))
            let before = counting.lent.withLock { $0 }
            let valuesBefore = counting.chunkValues.withLock { $0 }
            _ = try fs.pool.reclaimNow()
            let read = counting.lent.withLock { $0 } - before
            // 800 chunk entries (400 at the head, deleted 10 at a time; 400 in the snapshot):
            // starting each batch over read about ten times as many.
            #expect(read < 2 * 800, "the reclaim read \(read) entries")
            #expect(read >= 400, "the reclaim walked \(read) entries")
            #expect(counting.chunkValues.withLock { $0 } == valuesBefore, "the reclaim read chunks' bytes")
            #expect(try Fsck.check(counting).problems.isEmpty)
            let snapshot = try fs.pool.filesystem(named: "root@s")
            let kept = try #require(try snapshot.lookup(.root, FileSystem.rootInode, Array("f".utf8)))
            #expect(try snapshot.read(.root, kept.ino, offset: 0, count: 400 * 4096).data == [UInt8](repeating: 7, count: 400 * 4096))
        }
    }

    /// Runs `body` with a filesystem over a scan-counting store, reclaiming 10 chunks per
    /// batch, and a file "f" of 400 chunks of sevens.
    private func withFileOf400Chunks(_ body: (ScanCountingBackend, FileSystem, Inode) throws -> Void) throws {
        let harness = StoreHarness(MemoryBackendFactory())
        defer { harness.cleanUp() }
        let counting = ScanCountingBackend(try harness.open(harness.freshPath()))
        var options = costTestOptions()
        options.reclaimBatchSize = 10
        let fs = try FileSystem.open(counting, options: options)
        defer { try? fs.close() }
        let file = try fs.create(.root, FileSystem.rootInode, Array("f".utf8), mode: 0o644)
        _ = try fs.write(.root, file.ino, offset: 0, [UInt8](repeating: 7, count: 400 * 4096))
        try body(counting, fs, file)
    }

    @Test func truncatingDownWritesTheSameKeysWhateverTheSize() throws {
        let small = try truncateCost(chunks: 10)
        let large = try truncateCost(chunks: 1000)
        #expect(small == large, "truncate wrote \(small) key operations for 10 chunks and \(large) for 1,000")
        #expect(large < 20)
    }
}
