// Read-ahead for sequential readers. After a large read that continues the previous read
// of the same file (or starts at its beginning), the range two reads ahead is read on a
// background thread, so its blocks are in the store's cache when the reader asks for
// them: the reader's turn then skips the storage reads and checksums. (One read ahead
// raced the reader: both read the same blocks.) Advisory only: failures are ignored, and a newer request replaces one that
// has not started.

import Engine
import Foundation
import Synchronization

final class ReadAhead: Sendable {
    private let loop = BackgroundLoop()
    private struct State {
        var started = false
        var stopped = false
        var next: (@Sendable () -> Void)?
    }
    private let state = Locked(State())

    /// Reads smaller than this are not followed (small files, random access).
    static let minimumRead = 128 << 10
    /// Bytes of chunks read ahead between yields of the core (`FileSystem.prefetch`). A
    /// server worker polling for calls yields its core while it waits; the read-ahead
    /// thread, given it, had read a whole range (about 90 µs a MiB) before the worker
    /// looked again, and a call that came meanwhile waited that long (Docs/nfs.md,
    /// "Loopback clients").
    static let yieldBytes = 128 << 10

    /// Runs `job` on the read-ahead thread, replacing a job not yet started.
    func submit(_ job: @escaping @Sendable () -> Void) {
        let start = state.withLock { s -> Bool in
            guard !s.stopped else { return false }
            s.next = job
            defer { s.started = true }
            return !s.started
        }
        if start {
            loop.start(name: "zerofs-read-ahead", interval: 60) { [self] in
                while let job = state.withLock({ s -> (@Sendable () -> Void)? in
                    defer { s.next = nil }
                    return s.next
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
            s.next = nil
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
}
