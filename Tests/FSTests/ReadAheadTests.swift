// Read-ahead: a sequential reader's next ranges are read on the read-ahead thread, bytes
// and all, and the read that asks for one takes its bytes without reading the store; a
// change to the file, or a rollback, between the two makes the read read the store
// again. Small reads are not followed.

import Engine
@testable import FS
import Foundation
import KVTestSupport
import LSMBackend
import MemoryBackend
import Synchronization
import Testing

/// A KVBackend that forwards to another and records the keys read, by the thread that
/// made it (the test's) and by the others (the read-ahead thread). `onReadAhead` runs on
/// the read-ahead thread before each read there.
final class ReadAheadRecorder: ForwardingBackend, @unchecked Sendable {
    let keys = Mutex<[[UInt8]]>([])
    let ownKeys = Mutex<[[UInt8]]>([])
    let onReadAhead = Mutex<(@Sendable ([UInt8]) -> Void)?>(nil)
    private let testThread = pthread_self()

    override func get(_ key: [UInt8]) throws -> [UInt8]? {
        if pthread_equal(pthread_self(), testThread) == 0 {
            keys.withLock { $0.append(key) }
            onReadAhead.withLock { $0 }?(key)
        } else {
            ownKeys.withLock { $0.append(key) }
        }
        return try inner.get(key)
    }
}

@Suite struct ReadAheadTests {
    private func withFile(_ body: (FileSystem, UInt64, ReadAheadRecorder) throws -> Void) throws {
        let harness = StoreHarness(MemoryBackendFactory())
        defer { harness.cleanUp() }
        let recorder = ReadAheadRecorder(try harness.open(harness.freshPath()))
        let fs = try FileSystem.open(recorder, options: FSOptions())
        defer { try? fs.close() }
        let file = try fs.create(.root, FileSystem.rootInode, Array("f".utf8), mode: 0o644)
        _ = try fs.write(.root, file.ino, offset: 0, [UInt8](repeating: 7, count: 4 << 20))
        try body(fs, file.ino, recorder)
    }

    /// A filesystem on a fresh store of `factory`, and the store.
    private func withFileSystem(_ factory: any KVBackendFactory, _ body: (any KVBackend, FileSystem) throws -> Void) throws {
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let store = try harness.open(harness.freshPath())
        let fs = try FileSystem.open(store, options: FSOptions())
        defer { try? fs.close() }
        try body(store, fs)
    }

    /// Waits up to 30 s for the range of `ino` at `offset` to be kept read ahead.
    private func prepared(_ fs: FileSystem, _ ino: UInt64, at offset: Int) -> Bool {
        let deadline = Date().addingTimeInterval(30)
        while !fs.pool.preparedReads.holds(fs.place(ino, UInt64(offset))) {
            if Date() >= deadline { return false }
            usleepMilliseconds(5)
        }
        return true
    }

    /// The chunk keys of `ino` among `keys`.
    private func chunkKeys(_ keys: [[UInt8]], _ ino: UInt64) -> Int {
        keys.filter { $0.starts(with: FSKeys.chunkPrefix(ino)) }.count
    }

    /// The chunk indexes of `ino` read on the read-ahead thread, waiting up to 30 s for `count`.
    private func chunksReadAhead(_ recorder: ReadAheadRecorder, _ ino: UInt64, count: Int) -> Set<UInt64> {
        let deadline = Date().addingTimeInterval(30)
        var found: Set<UInt64> = []
        repeat {
            let keys = recorder.keys.withLock { $0 }
            found = Set((0..<128 as Range<UInt64>).filter { index in keys.contains { $0.starts(with: FSKeys.chunk(ino, index)) } })
            if found.count >= count { break }
            usleepMilliseconds(10)
        } while Date() < deadline
        return found
    }

    /// The read of a range read ahead takes its bytes: it reads no chunk itself, and
    /// gets the file's bytes, even after the reader's atime was written.
    @Test func aReadOfARangeReadAheadReadsNoChunk() throws {
        try withFile { fs, ino, recorder in
            let count = 256 << 10
            _ = try fs.write(.root, ino, offset: UInt64(count), (0..<count).map { UInt8(truncatingIfNeeded: $0 * 7) })
            _ = try fs.read(.root, ino, offset: 0, count: count)
            #expect(prepared(fs, ino, at: count))
            // The first read's atime, written meanwhile, leaves the range good.
            #expect(try fs.flushAccessTimes() == 1)
            recorder.ownKeys.withLock { $0.removeAll() }
            let second = try fs.read(.root, ino, offset: UInt64(count), count: count)
            let same = second.data == (0..<count).map { UInt8(truncatingIfNeeded: $0 * 7) }
            #expect(same, "the bytes read differ from those written")
            #expect(!second.eof)
            #expect(chunkKeys(recorder.ownKeys.withLock { $0 }, ino) == 0, "the read read the store")
            #expect(!fs.pool.preparedReads.holds(fs.place(ino, UInt64(count))), "the range was kept after its read")
        }
    }

    /// A range read ahead after a read into a buffer that held a header (an NFS reply's)
    /// comes back after the next read's header, whether that is as long or not.
    @Test func aRangeReadAheadFollowsTheCallersHeader() throws {
        try withFile { fs, ino, _ in
            let count = 256 << 10
            let pattern = (0..<(4 * count)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
            _ = try fs.write(.root, ino, offset: 0, pattern)
            var out: [UInt8] = [1, 2, 3, 4, 5]
            _ = try fs.read(.root, ino, offset: 0, count: count, appendingTo: &out)
            let first = out == [1, 2, 3, 4, 5] + pattern[0..<count]
            #expect(first)
            #expect(prepared(fs, ino, at: count) && prepared(fs, ino, at: 2 * count))
            out = [9, 8, 7, 6, 5]
            #expect(try !fs.read(.root, ino, offset: UInt64(count), count: count, appendingTo: &out))
            let second = out == [9, 8, 7, 6, 5] + pattern[count..<(2 * count)]
            #expect(second)
            out = [4, 4]
            _ = try fs.read(.root, ino, offset: UInt64(2 * count), count: count, appendingTo: &out)
            let third = out == [4, 4] + pattern[(2 * count)..<(3 * count)]
            #expect(third)
        }
    }

    /// A write, a truncation or a rollback after a range was read ahead: the read that
    /// asks for it gets the file as it is now.
    @Test func aChangeAfterTheReadAheadIsSeenByTheRead() throws {
        try withFile { fs, ino, _ in
            let count = 256 << 10
            _ = try fs.read(.root, ino, offset: 0, count: count)
            #expect(prepared(fs, ino, at: count))
            _ = try fs.write(.root, ino, offset: UInt64(count) + 10, [1, 2, 3])
            var expected = [UInt8](repeating: 7, count: count)
            expected.replaceSubrange(10..<13, with: [1, 2, 3])
            let written = try fs.read(.root, ino, offset: UInt64(count), count: count).data == expected
            #expect(written, "the write is not seen")

            // The read at `count` went on from the first: it asked for the range at 3 x count.
            #expect(prepared(fs, ino, at: 3 * count))
            _ = try fs.setattr(.root, ino, SetAttributes(size: UInt64(3 * count) + 100))
            let cut = try fs.read(.root, ino, offset: UInt64(3 * count), count: count)
            #expect(cut.data == [UInt8](repeating: 7, count: 100) && cut.eof)
        }
    }

    @Test func aRollbackAfterTheReadAheadIsSeenByTheRead() throws {
        try withFile { fs, ino, _ in
            let count = 256 << 10
            _ = try fs.pool.snapshot("root", "sevens")
            _ = try fs.write(.root, ino, offset: 0, [UInt8](repeating: 9, count: 4 << 20))
            _ = try fs.read(.root, ino, offset: 0, count: count)
            #expect(prepared(fs, ino, at: count))
            try fs.pool.rollback("root", to: "sevens")
            let rolledBack = try fs.read(.root, ino, offset: UInt64(count), count: count).data == [UInt8](repeating: 7, count: count)
            #expect(rolledBack, "the rollback is not seen")
        }
    }

    /// A write that lands while the read-ahead thread is reading the range (between two of
    /// its chunks): the range is not kept, and the read gets the written bytes.
    @Test func aWriteDuringTheReadAheadIsNotHidden() throws {
        try withFile { fs, ino, recorder in
            let count = 256 << 10
            let chunk = FSOptions().chunkSize
            let started = Locked(false)
            let written = Locked(false)
            recorder.onReadAhead.withLock {
                $0 = { [fs] key in
                    // At the range's third chunk, write into its first.
                    guard key.starts(with: FSKeys.chunk(ino, UInt64(count / chunk + 2))),
                          !started.withLock({ was in defer { was = true }; return was }) else { return }
                    _ = try? fs.write(.root, ino, offset: UInt64(count), [42])
                    written.withLock { $0 = true }
                }
            }
            _ = try fs.read(.root, ino, offset: 0, count: count)
            let deadline = Date().addingTimeInterval(30)
            while !written.withLock({ $0 }), Date() < deadline { usleepMilliseconds(5) }
            let wrote = written.withLock { $0 }
            #expect(wrote)
            // The second range (at 2 x count) may still be read ahead; the first was dropped.
            usleepMilliseconds(100)
            #expect(!fs.pool.preparedReads.holds(fs.place(ino, UInt64(count))), "a range read across a write was kept")
            let read = try fs.read(.root, ino, offset: UInt64(count), count: count).data
            #expect(read.first == 42 && read.dropFirst().allSatisfy { $0 == 7 })
        }
    }

    @Test func aSequentialReaderHasTheNextRangesReadAhead() throws {
        try withFile { fs, ino, recorder in
            let chunk = UInt64(FSOptions().chunkSize)
            let count = 256 << 10
            let ahead = ReadAhead.rangesAhead
            // The first read asks for the ranges after it.
            let read1 = try fs.read(.root, ino, offset: 0, count: count).data.count
            #expect(read1 == count)
            let first = chunksReadAhead(recorder, ino, count: ahead * count / Int(chunk))
            #expect(first == Set((UInt64(count) / chunk)..<(UInt64((1 + ahead) * count) / chunk)))
            // The next read continues it: one more range follows.
            let read2 = try fs.read(.root, ino, offset: UInt64(count), count: count).data.count
            #expect(read2 == count)
            let second = chunksReadAhead(recorder, ino, count: (1 + ahead) * count / Int(chunk))
            #expect(second == Set((UInt64(count) / chunk)..<(UInt64((2 + ahead) * count) / chunk)))
        }
    }

    /// On the lsm, whose chunks flushed to tables stay in WAL segments and are read ahead
    /// straight into the kept range (KVReader.withValues): raw and compressed chunks, a hole, a
    /// shrunk tail and a short last chunk read as they were written.
    @Test func rangesReadAheadFromTheLSMHoldTheFile() throws {
        try withFileSystem(LSMBackendFactory()) { store, fs in
            let count = 256 << 10
            let ino = try fs.create(.root, FileSystem.rootInode, Array("f".utf8), mode: 0o644).ino
            // Pseudo-random bytes: zstd cannot shrink them.
            var random = SeededGenerator(seed: 7)
            var expected = (0..<(2 * count)).map { _ in UInt8.random(in: 0...255, using: &random) }
            expected += [UInt8](repeating: 0x61, count: count)        // compressible
            expected += [UInt8](repeating: 0, count: count)           // a hole
            expected += (0..<(count + 5000)).map { UInt8(truncatingIfNeeded: $0 &* 13) }
            // Durable writes: their records are appended to a WAL segment (buffered ones still
            // waiting at the flush would be written as an object of their own, not pointed at).
            _ = try fs.write(.root, ino, offset: 0, Array(expected[0..<(3 * count)]), durable: true)
            _ = try fs.write(.root, ino, offset: UInt64(4 * count), Array(expected[(4 * count)...]), durable: true)
            // Shrink into the last range and grow again: the cut bytes read as zeros.
            _ = try fs.setattr(.root, ino, SetAttributes(size: UInt64(4 * count + 3000)))
            _ = try fs.setattr(.root, ino, SetAttributes(size: UInt64(expected.count)))
            for i in (4 * count + 3000)..<expected.count { expected[i] = 0 }
            _ = try store.createCheckpoint(named: "flush")
            try store.deleteCheckpoint(named: "flush")
            try store.settleBackgroundWork()

            var offset = 0
            while offset < expected.count {
                if offset > 0 { #expect(prepared(fs, ino, at: offset), "nothing read ahead at \(offset)") }
                let read = try fs.read(.root, ino, offset: UInt64(offset), count: count)
                let upper = min(expected.count, offset + count)
                let same = read.data == Array(expected[offset..<upper])
                #expect(same, "the bytes at \(offset) differ")
                #expect(read.eof == (upper == expected.count))
                offset += count
            }
        }
    }

    /// Readers of several files, while the read-ahead thread is busy: each file's job
    /// waits its turn (none replaces another file's), so every file gets its range.
    @Test func readersOfSeveralFilesEachHaveTheirRangesReadAhead() throws {
        try withFile { fs, ino, recorder in
            let count = 256 << 10
            let others = try (0..<2).map { i -> UInt64 in
                let file = try fs.create(.root, FileSystem.rootInode, Array("g\(i)".utf8), mode: 0o644)
                _ = try fs.write(.root, file.ino, offset: 0, [UInt8](repeating: UInt8(i), count: 2 * count))
                return file.ino
            }
            let release = DispatchSemaphore(value: 0)
            let held = Locked(false)
            recorder.onReadAhead.withLock {
                $0 = { _ in
                    // The first read of the read-ahead thread waits until both others asked.
                    if !held.withLock({ was in defer { was = true }; return was }) { release.wait() }
                }
            }
            _ = try fs.read(.root, ino, offset: 0, count: count)
            let deadline = Date().addingTimeInterval(30)
            while !held.withLock({ $0 }), Date() < deadline { usleepMilliseconds(5) }
            for other in others { _ = try fs.read(.root, other, offset: 0, count: count) }
            release.signal()
            for other in others { #expect(prepared(fs, other, at: count), "file \(other) has nothing read ahead") }
            #expect(prepared(fs, ino, at: count))
        }
    }

    /// A sequential reader while a writer stamps the whole file again and again (seeded
    /// pauses; `ZEROFS_SEED` replays them): every read shows one stamp (no range mixing
    /// two writes) and none older than the last write finished before the read began (no
    /// range kept across a write).
    @Test(arguments: [MemoryBackendFactory() as any KVBackendFactory, LSMBackendFactory()])
    func readsDuringWritesShowWholeCurrentStamps(_ factory: any KVBackendFactory) throws {
        var random = SeededGenerator(seed: TestSeed.resolve("readsDuringWritesShowWholeCurrentStamps"))
        let pauses = (0..<100).map { _ in Int.random(in: 0...2000, using: &random) }
        let sizes = (0..<64).map { _ in Bool.random(using: &random) ? 128 << 10 : 256 << 10 }
        try withFileSystem(factory) { _, fs in
            let fileSize = 1 << 20
            let ino = try fs.create(.root, FileSystem.rootInode, Array("f".utf8), mode: 0o644).ino
            _ = try fs.write(.root, ino, offset: 0, [UInt8](repeating: 0, count: fileSize))
            let finished = Locked(0)
            let writer = Thread {
                for (i, pause) in pauses.enumerated() {
                    _ = try? fs.write(.root, ino, offset: 0, [UInt8](repeating: UInt8(i + 1), count: fileSize))
                    finished.withLock { $0 = i + 1 }
                    usleep(UInt32(pause))
                }
            }
            writer.start()
            var reads = 0
            var problems: [String] = []
            while finished.withLock({ $0 }) < pauses.count, problems.isEmpty {
                var offset = 0
                var step = 0
                while offset < fileSize, problems.isEmpty {
                    let floor = finished.withLock { $0 }
                    let data = try fs.read(.root, ino, offset: UInt64(offset), count: sizes[step % sizes.count]).data
                    let stamp = data.first ?? 0
                    if !data.allSatisfy({ $0 == stamp }) { problems.append("a read at \(offset) mixes stamps") }
                    if Int(stamp) < floor { problems.append("a read at \(offset) shows stamp \(stamp) after write \(floor) finished") }
                    offset += data.count
                    step += 1
                    reads += 1
                }
            }
            while finished.withLock({ $0 }) < pauses.count { usleepMilliseconds(5) }
            #expect(problems.isEmpty, "\(problems.first ?? "")")
            #expect(reads > 0)
        }
    }

    @Test func smallAndNonSequentialReadsAreNotFollowed() throws {
        try withFile { fs, ino, recorder in
            for i in 0..<8 { _ = try fs.read(.root, ino, offset: UInt64(i) * 4096, count: 4096) }
            _ = try fs.read(.root, ino, offset: 1 << 20, count: 256 << 10)
            _ = try fs.read(.root, ino, offset: 3 << 20, count: 256 << 10)
            usleepMilliseconds(200)
            #expect(recorder.keys.withLock { $0 }.isEmpty)
        }
    }
}
