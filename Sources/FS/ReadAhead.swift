// Read-ahead for sequential readers. After a large read that continues the previous read
// of the same file (or starts at its beginning), the next `rangesAhead` ranges of its size
// are read on a background thread, bytes and all, and kept (PreparedReads) for the reads
// that will ask for them: such a read only copies them, while the storage reads,
// checksums and lookups of its range were done as the client took in earlier replies.
// Advisory only: failures are ignored. Files' jobs wait in turn; a newer request for a
// file replaces its one that has not started (it covers the same ranges but the one
// being read).

import Engine
import Foundation
import Synchronization

final class ReadAhead: Sendable {
    private let loop = BackgroundLoop()
    /// The file a job reads ahead: its dataset and inode.
    struct File: Equatable {
        var dataset: UInt64
        var ino: UInt64
    }
    private struct State {
        var started = false
        var stopped = false
        /// Jobs not yet started, oldest first, one per file.
        var pending: [(file: File, job: @Sendable () -> Void)] = []
    }
    private let state = Locked(State())
    /// The most jobs waiting (for as many files); a job past it drops the oldest.
    static let pendingLimit = 16

    /// Reads smaller than this are not followed (small files, random access).
    static let minimumRead = 128 << 10
    /// The largest range read ahead (a larger read is not followed): NFS's largest READ.
    static let maximumRead = 1 << 20
    /// How many ranges the size of the last read are kept read ahead of a sequential reader.
    static let rangesAhead = 3
    /// The most room kept before a range's bytes for what the reader's buffer held before
    /// the data (PreparedReads): an NFS reply's header is 128 bytes.
    static let maximumHeadroom = 4096

    /// Runs `job` for `file` on the read-ahead thread, after the jobs of other files
    /// waiting before it; it replaces a job of the same file not yet started (it covers
    /// that one's ranges but the one being read now).
    func submit(for file: File, _ job: @escaping @Sendable () -> Void) {
        let start = state.withLock { s -> Bool in
            guard !s.stopped else { return false }
            if let at = s.pending.firstIndex(where: { $0.file == file }) {
                s.pending[at].job = job
            } else {
                if s.pending.count >= Self.pendingLimit { s.pending.removeFirst() }
                s.pending.append((file, job))
            }
            defer { s.started = true }
            return !s.started
        }
        if start {
            loop.start(name: "zerofs-read-ahead", interval: 60) { [self] in
                while let job = state.withLock({ s -> (@Sendable () -> Void)? in
                    s.pending.isEmpty ? nil : s.pending.removeFirst().job
                }) {
                    job()
                }
            }
        } else {
            loop.wake()
        }
    }

    /// Stops the thread (a job in progress finishes); later submissions are dropped.
    func stop() {
        state.withLock { s in
            s.stopped = true
            s.pending.removeAll()
        }
        loop.stop()
    }
}

/// Per file: where its next sequential read would start.
struct SequentialReads {
    private var next: [UInt64: UInt64] = [:]

    /// Notes a read of `count` bytes at `offset` of `ino`; true when it continues the
    /// previous one (or starts the file).
    mutating func note(_ ino: UInt64, offset: UInt64, count: Int) -> Bool {
        let sequential = offset == 0 || next[ino] == offset
        if next.count >= 256, next[ino] == nil { next.removeAll(keepingCapacity: true) }
        next[ino] = offset + UInt64(count)
        return sequential
    }

    /// Where the next sequential read of `ino` would start, if it is followed.
    func next(_ ino: UInt64) -> UInt64? { next[ino] }
}

/// Ranges of files read ahead, with their bytes (ReadAhead), until the read that asks for
/// one takes it; one set for the pool, so that what is held is bounded whatever the
/// number of datasets. A range's bytes follow room for what the reader's buffer held
/// before the data at its last read (an NFS reply's header), so that they can become the
/// reply without being copied (`FileSystem.read(appendingTo:)`). A range is good only for
/// a read of the same view whose inode's lock stripe generation (LockTable) is the one
/// read before and after the range was read: no change to the file, no rollback or
/// snapshot of its dataset, came in between. At most `capacity` ranges are kept (16 MiB);
/// the oldest goes first. A read that asks for the range being read ahead waits for it
/// (`awaitReading`) rather than read it twice.
final class PreparedReads: @unchecked Sendable {
    /// Where a range starts: a file and an offset in it.
    struct Place: Equatable {
        var file: ReadAhead.File
        var offset: UInt64
    }

    struct Range {
        var place: Place
        /// `headroom` bytes of room, then the range's bytes, with spare capacity for 8 more.
        var bytes: [UInt8]
        var headroom: Int
        var generation: UInt64
        var view: VersionView

        var count: Int { bytes.count - headroom }

        /// Whether the range still shows the file as it is (no change and no new view since).
        func isCurrent(generation: UInt64, view: VersionView) -> Bool {
            self.generation == generation && self.view == view
        }
    }

    static let capacity = 16
    /// How long a read waits for its range being read ahead before it reads it itself.
    static let waitLimit: TimeInterval = 2

    // All fields are guarded by `condition`.
    private let condition = NSCondition()
    private var ranges: [Range] = []
    private var reading: Place?

    /// Notes that the range at `place` is being read ahead; false (and nothing noted) when
    /// it is kept already as the file is now (`generation`, `view`). A kept one that is
    /// stale is dropped.
    func begin(_ place: Place, generation: UInt64, view: VersionView) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if let at = ranges.firstIndex(where: { $0.place == place }) {
            if ranges[at].isCurrent(generation: generation, view: view) { return false }
            ranges.remove(at: at)
        }
        reading = place
        return true
    }

    /// Ends the reading `begin` noted, keeping `range` (nil: it could not be read, or the
    /// file changed meanwhile), and wakes the reads waiting for it.
    func end(keeping range: Range?) {
        condition.lock()
        defer { condition.unlock() }
        reading = nil
        if let range {
            if ranges.count >= Self.capacity { ranges.removeFirst() }
            ranges.append(range)
        }
        condition.broadcast()
    }

    /// Waits while the range at `place` is being read ahead (at most `waitLimit`), as a
    /// blocked thread (Blocking: a server worker waiting here lets another run).
    func awaitReading(_ place: Place) {
        condition.lock()
        defer { condition.unlock() }
        guard reading == place else { return }
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(Self.waitLimit * 1e9)
        Blocking.during {
            while reading == place {
                let now = DispatchTime.now().uptimeNanoseconds
                guard now < deadline else { return }
                _ = condition.wait(until: Date().addingTimeInterval(Double(deadline - now) / 1e9))
            }
        }
    }

    /// Whether the range at `place` is kept.
    func holds(_ place: Place) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return ranges.contains { $0.place == place }
    }

    /// Takes the kept range at `place` (a stale one is dropped): the range when it holds at
    /// least `length` bytes and still shows the file as it is (`generation`, read under the
    /// inode's lock, and `view`), or nil.
    func take(_ place: Place, length: Int, generation: UInt64, view: VersionView) -> Range? {
        condition.lock()
        defer { condition.unlock() }
        guard let at = ranges.firstIndex(where: { $0.place == place }) else { return nil }
        let range = ranges.remove(at: at)
        guard range.isCurrent(generation: generation, view: view), range.count >= length else { return nil }
        return range
    }

    /// Drops the ranges of `dataset` (its view moved: they can serve no read).
    func removeAll(_ dataset: UInt64) {
        condition.lock()
        defer { condition.unlock() }
        ranges.removeAll { $0.place.file.dataset == dataset }
    }
}
