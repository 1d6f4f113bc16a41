// Read-ahead: a sequential reader's next ranges are read on the read-ahead thread (so
// the store caches them before the reader asks); small reads are not followed.

import Engine
@testable import FS
import Foundation
import KVTestSupport
import MemoryBackend
import Synchronization
import Testing

/// A KVBackend that forwards to another and records the keys read by threads other than
/// the one that made it (the test's): the read-ahead thread's.
/// With `gainsNothing`, it says of every read made to read ahead that reading ahead there
/// gains nothing (as the lsm does of values in a local folder).
final class ReadAheadRecorder: ForwardingBackend, @unchecked Sendable {
    let keys = Mutex<[[UInt8]]>([])
    private let testThread = pthread_self()
    var gainsNothing = false

    override func get(_ key: [UInt8]) throws -> [UInt8]? {
        if pthread_equal(pthread_self(), testThread) == 0 { keys.withLock { $0.append(key) } }
        if gainsNothing { ReadPurpose.prefetch?.noteNothingToGain() }
        return try inner.get(key)
    }
}

@Suite struct ReadAheadTests {
    private func withFile(gainsNothing: Bool = false, _ body: (FileSystem, UInt64, ReadAheadRecorder) throws -> Void) throws {
        let harness = StoreHarness(MemoryBackendFactory())
        defer { harness.cleanUp() }
        let recorder = ReadAheadRecorder(try harness.open(harness.freshPath()))
        recorder.gainsNothing = gainsNothing
        let fs = try FileSystem.open(recorder, options: FSOptions())
        defer { try? fs.close() }
        let file = try fs.create(.root, FileSystem.rootInode, Array("f".utf8), mode: 0o644)
        _ = try fs.write(.root, file.ino, offset: 0, [UInt8](repeating: 7, count: 4 << 20))
        try body(fs, file.ino, recorder)
    }

    /// The chunk indexes of `ino` read on the read-ahead thread, waiting up to 10 s for `count`.
    private func chunksReadAhead(_ recorder: ReadAheadRecorder, _ ino: UInt64, count: Int) -> Set<UInt64> {
        let deadline = Date().addingTimeInterval(10)
        var found: Set<UInt64> = []
        repeat {
            let keys = recorder.keys.withLock { $0 }
            found = Set((0..<128 as Range<UInt64>).filter { index in keys.contains { $0.starts(with: FSKeys.chunk(ino, index)) } })
            if found.count >= count { break }
            usleepMilliseconds(10)
        } while Date() < deadline
        return found
    }

    /// A store that says reading ahead gains nothing (values in a local folder, which
    /// the kernel reads ahead itself) has one chunk of each range looked up, not all.
    @Test func aStoreThatGainsNothingFromReadAheadEndsTheRangeAtOnce() throws {
        try withFile(gainsNothing: true) { fs, ino, recorder in
            let chunk = UInt64(FSOptions().chunkSize)
            let count = 256 << 10
            _ = try fs.read(.root, ino, offset: 0, count: count)
            let first = chunksReadAhead(recorder, ino, count: 1)
            usleepMilliseconds(300)
            let all = chunksReadAhead(recorder, ino, count: 1)
            #expect(first == [UInt64(count) / chunk] && all == first, "read ahead: \(all.sorted())")
        }
    }

    @Test func aSequentialReaderHasTheNextRangesReadAhead() throws {
        try withFile { fs, ino, recorder in
            let chunk = UInt64(FSOptions().chunkSize)
            let count = 256 << 10
            // The first read asks for the two reads after it.
            let read1 = try fs.read(.root, ino, offset: 0, count: count).data.count
            #expect(read1 == count)
            let first = chunksReadAhead(recorder, ino, count: 2 * count / Int(chunk))
            #expect(first == Set((UInt64(count) / chunk)..<(UInt64(3 * count) / chunk)))
            // The next read continues it: the range two reads ahead follows.
            let read2 = try fs.read(.root, ino, offset: UInt64(count), count: count).data.count
            #expect(read2 == count)
            let second = chunksReadAhead(recorder, ino, count: 3 * count / Int(chunk))
            #expect(second == Set((UInt64(count) / chunk)..<(UInt64(4 * count) / chunk)))
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
