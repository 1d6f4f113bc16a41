// The reclaimer: deletes, in the background, the chunks named by the reclaim queue
// (0x07). A record (ino, version) says either "the inode is gone, delete every chunk of
// that version" or "delete the chunks its shrink marks hide, then drop the marks". It
// deletes only entries of the record's version, never what another version still shows,
// in batches, and removes the record last, so after a restart it simply resumes. Marks are
// dropped only at a head with no ancestors: an ancestor may still hold chunks they hide.
// The same thread then collects dead versions (Collector.swift).

import Engine
import Foundation
import Synchronization

/// A background thread that runs its body when woken and at least every `interval`
/// seconds, until stopped: the reclaimer (woken by deletes) and a replica's follower.
final class BackgroundLoop: @unchecked Sendable {
    // All fields are guarded by `condition`.
    private let condition = NSCondition()
    private var pending = true
    private var stopping = false
    private var running = false
    /// Held by whoever runs the reclaimer's work (the thread, or a direct call).
    let runLock = PlainLock()

    func wake() {
        condition.lock()
        pending = true
        condition.signal()
        condition.unlock()
    }

    /// Stops the thread (waits for a running body); harmless when never started.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while running { condition.wait() }
        condition.unlock()
    }

    /// `nice`: the thread's nice value (background work yields the processor to clients).
    /// `runAtOnce`: the first run comes right away rather than after one interval.
    func start(name: String, interval: Double, nice: Int32 = 0, runAtOnce: Bool = true, _ body: @escaping @Sendable () -> Void) {
        condition.lock()
        running = true
        pending = runAtOnce
        condition.unlock()
        startThread(named: name, nice: nice) { [self] in
            while true {
                condition.lock()
                if !pending && !stopping { _ = condition.wait(until: Date(timeIntervalSinceNow: interval)) }
                let stop = stopping
                pending = false
                condition.unlock()
                if stop { break }
                body()
            }
            condition.lock()
            running = false
            condition.broadcast()
            condition.unlock()
        }
    }
}

/// Paces the background worker: after each of its batches it rests twice as long as the
/// batch took (at most 50 ms), so reclaiming and collecting take about a third of one core
/// and clients keep their latency. Work run directly (tests, `collectGarbage`) is not paced.
final class Pacer: Sendable {
    private let state = Locked<(active: Bool, since: UInt64)>((false, 0))

    func setActive(_ active: Bool) {
        state.withLock { $0 = (active, Pacer.now()) }
    }

    /// Called after each background batch, by the worker once it holds no inode lock and
    /// no barrier: clients must not wait for it to rest.
    func step() {
        let rest = state.withLock { s -> UInt64 in
            guard s.active else { return 0 }
            return min(2 * (Pacer.now() &- s.since), 50_000_000)
        }
        guard rest > 0 else { return }
        Thread.sleep(forTimeInterval: Double(rest) / 1e9)
        state.withLock { $0.since = Pacer.now() }
    }

    static func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }
}

extension Pool {
    func startWorker() {
        // Run when woken, and at least once a second (a queue left by a crash, or records
        // that failed and must be retried). Nice 10: it yields the processor to clients.
        worker.start(name: "fs-reclaim", interval: 1, nice: 10) { [weak self] in
            guard let self else { return }
            pacer.setActive(true)
            defer { pacer.setActive(false) }
            _ = try? reclaimNow()
            _ = try? collectNow()
            _ = try? flushAccessTimes()
        }
    }

    /// Works through the whole reclaim queue now; returns the number of records finished.
    /// A record that fails (its inode damaged, say) stays queued and the pass goes on to
    /// the next: one bad record must not hold up the space of every file after it. The
    /// first failure is thrown at the end; the filesystem stopping ends the pass at once.
    @discardableResult
    public func reclaimNow() throws(FSError) -> Int {
        try worker.runLock.withLock { () throws(FSError) -> Int in
            try crashPoints.checkRunning()
            // Nothing can be deleted in a read-only store; its queue waits for a writable open.
            if store.isReadOnly { return 0 }
            let records = reclaimQueue.withLock { queue in queue.sorted { $0.key < $1.key }.map { ($0.key.ino, $0.key.version, $0.value) } }
            var firstFailure: FSError?
            for (ino, version, kind) in records {
                do throws(FSError) {
                    switch kind {
                    case .deleteFile: try reclaimDeleted(ino, version)
                    case .shrink: try reclaimShrunk(ino, version)
                    }
                } catch {
                    try crashPoints.checkRunning()
                    firstFailure = firstFailure ?? error
                }
            }
            if let firstFailure { throw firstFailure }
            return records.count
        }
    }

    /// Damaged reclaim records the queue skips (fsck names each one).
    public var damagedReclaimRecords: Int { skippedReclaimRecords.withLock { $0 } }

    /// Reads the reclaim queue from the store (at open, before any commit). A damaged
    /// record (bad key or unknown kind) is skipped and counted, so it never blocks the
    /// records behind it; fsck names it.
    func loadReclaimQueue() throws(FSError) {
        var queue: [ReclaimID: ReclaimKind] = [:]
        var bad = 0
        try kv {
            try store.scan(.prefix([KeyKind.reclaim.rawValue])) { key, value in
                guard let id = ReclaimID(key: Array(key)), value.count == 1, let kind = ReclaimKind(rawValue: value[0]) else {
                    bad += 1
                    return true
                }
                queue[id] = kind
                return true
            }
        }
        skippedReclaimRecords.withLock { $0 = bad }
        reclaimQueue.withLock { $0 = queue }
    }

    /// Deletes every chunk of the unlinked (ino, version), a batch at a time. Each batch
    /// goes on from the chunk after the last one deleted: nothing writes chunks to an inode
    /// that is gone, and starting from chunk 0 again stepped over every deletion marker of
    /// the batches before (and every chunk other versions hold), which made a large
    /// file's deletion take time in the square of its size.
    private func reclaimDeleted(_ ino: UInt64, _ version: UInt64) throws(FSError) {
        var from: UInt64 = 0
        while true {
            let found = try chunkEntries(ino, version, from: from, nil)
            guard let last = found.last else { break }
            try deleteChunks(found, version)
            pacer.step()
            let index: UInt64 = last.key.withUnsafeBytes { $0.readBigEndian(at: 9) }
            if index == UInt64.max { break }
            from = index + 1
        }
        var batch = FSBatch(view: VersionView(head: version), background: true)
        batch.deleteUnversioned(FSKeys.reclaim(ino, version))
        _ = try commit(&batch, op: "reclaim-finish", durable: false)
    }

    /// Deletes the chunks of (ino, version) that the inode's shrink marks hide there. At the
    /// head of a dataset this runs under the dataset's barrier and the inode's lock; a
    /// frozen version has no writer. The marks go only at a head without ancestors.
    ///
    /// Each step goes on from the chunk after the last one it deleted, so a pass reads the
    /// file's chunks once (it had started from the first mark again at every step, reading
    /// again, under the inode's lock, every chunk a concurrent writer had rewritten in the
    /// new epoch). A new truncate during the pass (a new data epoch, with its mark) starts
    /// the pass over.
    private func reclaimShrunk(_ ino: UInt64, _ version: UInt64) throws(FSError) {
        var deletedMeanwhile = false
        var resumeAt: UInt64 = 0
        var passEpoch: UInt64?
        while true {
            let (head, view) = state.withLock { s -> (UInt64?, VersionView?) in
                let owner = s.forest.datasets.values.first { !$0.isSnapshot && $0.version == version }
                return (owner?.id, s.forest.versions[version] == nil ? nil : s.forest.view(version))
            }
            // `clearMarks`: at a dataset's head, whether that dataset is writable; nil at a
            // frozen version, whose marks stay.
            let step = { (clearMarks: Bool?) throws(FSError) -> Bool in
                let reads = VersionedStore(store: self.store, view: view ?? VersionView(head: version))
                guard view != nil, let value = try reads.get(FSKeys.inode(ino)) else {
                    // The inode went after the queue was read: unlink replaced this record
                    // with a delete record, which must survive.
                    let record = self.reclaimQueue.withLock { $0[ReclaimID(ino: ino, version: version)] }
                    if record == .deleteFile {
                        deletedMeanwhile = true
                        return true
                    }
                    var batch = FSBatch(view: VersionView(head: version), background: true)
                    batch.deleteUnversioned(FSKeys.reclaim(ino, version))
                    _ = try self.commit(&batch, op: "reclaim-finish", durable: false)
                    return true
                }
                var file = try withBytes(value) { raw throws(FSError) in try Inode.decode(ino: ino, raw) }
                if passEpoch != file.dataEpoch {
                    passEpoch = file.dataEpoch
                    resumeAt = 0
                }
                let first = max(resumeAt, (file.shrinkMarks.map(\.size).min() ?? UInt64.max).quotientRoundingUp(self.chunkSize))
                let hidden = try self.chunkEntries(ino, version, from: first) { index, epoch in
                    file.hides(chunkIndex: index, epoch: epoch, chunkSize: self.chunkSize)
                }
                if let last = hidden.last {
                    try self.deleteChunks(hidden, version)
                    // A damaged key at the last index leaves nothing after it (`.max` ends
                    // the scan).
                    let index: UInt64 = last.key.withUnsafeBytes { $0.readBigEndian(at: 9) }
                    resumeAt = index == UInt64.max ? index : index + 1
                    return false
                }
                var batch = FSBatch(view: VersionView(head: version), background: true)
                if let writable = clearMarks, view?.ancestors.isEmpty == true, !file.shrinkMarks.isEmpty {
                    file.shrinkMarks = []
                    batch.putInode(file)
                    // A read-only dataset takes no change of its own, but the marks hide
                    // nothing any more: clearing them changes nothing a reader sees, and
                    // the record must not go while they stay (fsck). Without the dataset,
                    // the commit clears every cached copy of the inode instead.
                    batch.dataset = writable ? head : nil
                }
                batch.deleteUnversioned(FSKeys.reclaim(ino, version))
                _ = try self.commit(&batch, op: "reclaim-finish", durable: false)
                return true
            }
            let done: Bool
            if let head, let handle = try? filesystem(head) {
                // The head may have moved (a snapshot) since it was looked up: then the
                // version is frozen, and the step below runs without the barrier next time.
                done = try handle.locked([ino]) { () throws(FSError) -> Bool in
                    guard handle.view.head == version else { return false }
                    return try step(handle.isWritable)
                }
            } else {
                done = try locks.withLocks([ino]) { () throws(FSError) in try step(nil) }
            }
            if done { break }
            // Paced with the lock released: clients of the inode (and of the dataset,
            // whose barrier the step held) do not wait out the rest.
            pacer.step()
        }
        if deletedMeanwhile { try reclaimDeleted(ino, version) }
    }

    private func deleteChunks(_ entries: [(key: [UInt8], size: Int)], _ version: UInt64) throws(FSError) {
        var batch = FSBatch(view: VersionView(head: version), background: true)
        for entry in entries {
            batch.deleteUnversioned(entry.key)
            batch.addWritten(version, -entry.size)
        }
        _ = try commit(&batch, op: "reclaim", durable: false)
    }

    /// Every chunk entry (key, stored size) of exactly `version` of `ino`, or nil when
    /// there are more than `atMost` (or more than 8 × `atMost` entries of any version to
    /// step over: the caller then leaves them to the reclaimer).
    func chunkEntries(_ ino: UInt64, _ version: UInt64, atMost: Int) throws(FSError) -> [(key: [UInt8], size: Int)]? {
        let (found, complete) = try chunkEntries(ino, version, from: 0, limit: atMost + 1, steps: 8 * atMost, nil)
        return complete && found.count <= atMost ? found : nil
    }

    /// Up to one batch of chunk entries (key, stored size) of exactly `version`, from chunk
    /// index `from` on, that `select(index, epoch)` accepts (nil: all of them).
    private func chunkEntries(
        _ ino: UInt64, _ version: UInt64, from: UInt64, _ select: ((UInt64, UInt64) -> Bool)?
    ) throws(FSError) -> [(key: [UInt8], size: Int)] {
        try chunkEntries(ino, version, from: from, limit: options.reclaimBatchSize, steps: .max, select).found
    }

    /// Chunk entries of exactly `version` from chunk index `from` on that `select(index,
    /// epoch)` accepts (nil: all of them), at most `limit` of them, stepping over at most
    /// `steps` entries of any version; `complete` when the scan reached the end of the
    /// inode's chunks. Without `select` only keys and value sizes are walked (`scanKeys`):
    /// deleting a file whose data the store keeps apart (lsm: in its WAL) reads none of it.
    private func chunkEntries(
        _ ino: UInt64, _ version: UInt64, from: UInt64, limit: Int, steps: Int, _ select: ((UInt64, UInt64) -> Bool)?
    ) throws(FSError) -> (found: [(key: [UInt8], size: Int)], complete: Bool) {
        guard from != UInt64.max else { return ([], true) }
        var found: [(key: [UInt8], size: Int)] = []
        var complete = true
        var stepped = 0
        // Whether to go on after the entry `key` of `size` bytes, which `selected` says to take.
        func visit(_ key: UnsafeRawBufferPointer, _ size: Int, _ selected: (UInt64) -> Bool) -> Bool {
            stepped += 1
            guard stepped <= steps else {
                complete = false
                return false
            }
            guard key.count == 25, UInt64.max - key.readBigEndian(at: 17) == version else { return true }
            if selected(key.readBigEndian(at: 9)) { found.append((Array(key), size)) }
            if found.count >= limit {
                complete = false
                return false
            }
            return true
        }
        let range = KeyRange(start: FSKeys.chunk(ino, from), end: Bytes.prefixSuccessor(FSKeys.chunkPrefix(ino)))
        try kv {
            if let select {
                try store.scan(range) { key, value in
                    visit(key, value.count) { index in select(index, value.count >= 10 ? value.readBigEndian(at: 2) : 0) }
                }
            } else {
                try store.scanKeys(range) { key, size in visit(key, size) { _ in true } }
            }
        }
        return (found, complete)
    }
}

extension UInt64 {
    func quotientRoundingUp(_ divisor: Int) -> UInt64 {
        // Without `self + divisor - 1`, which overflows for a damaged size near the maximum.
        self == .max ? .max : self / UInt64(divisor) + (self % UInt64(divisor) == 0 ? 0 : 1)
    }
}
