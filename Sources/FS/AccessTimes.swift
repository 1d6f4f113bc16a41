// Deferred access times, as Linux's lazytime: a read that moves a file's atime (the
// relatime rule) changes it in memory only, in the handle's inode cache and in a map of
// deferred atimes that every inode read lays over the stored record; the record is
// written later, by any change to the inode (which writes the inode as it reads it, the
// new atime included), by the background worker (about once a second, or when the map
// holds `deferredAccessTimesWake` inodes), before a snapshot of the dataset, and when the
// pool closes; past `deferredAccessTimesLimit` notes a read writes its atime at once. A read used to commit a batch of its own for the atime (the first read of
// every file after a write: 12,000 of an open+read's 136,000 instructions, and a record
// in the WAL); the note costs it about 2,000, the worker's batches about 2,000 more per
// inode. What a crash loses: atimes of the last second or so, which were never durable
// anyway.
//
// Consistency: a deferred atime is noted under the inode's lock, where no change to the
// inode can run. A commit that writes the inode with an atime at least as new drops the
// note; a setattr that sets atime drops it first (it must win over an older read's
// note). A rollback drops the dataset's notes (they belong to the head it discards). A
// note of an inode gone meanwhile writes nothing.

import Engine

extension FileSystem {
    /// Deferred atimes noted before the worker is woken to write them.
    static let deferredAccessTimesWake = 8192
    /// Deferred atimes noted at most: past it (no worker writes them, background work
    /// being off) a read writes its atime at once, as without deferral.
    static let deferredAccessTimesLimit = 1 << 16

    /// relatime: atime moves only when it is not newer than mtime or ctime, or is a day
    /// old. A read-only store (a checkpoint), a snapshot and a read-only dataset keep their
    /// atimes: a read there never writes. REQUIRES: the inode's lock.
    func touchAccessTime(_ file: inout Inode) throws(FSError) {
        guard !store.isReadOnly, isWritable else { return }
        let now = Self.now()
        guard file.atime <= file.mtime || file.atime <= file.ctime || now.seconds - file.atime.seconds >= 86_400 else { return }
        file.atime = now
        let ino = file.ino
        let noted = deferredAccessTimes.withLock { map -> Int? in
            guard map.count < Self.deferredAccessTimesLimit || map[ino] != nil else { return nil }
            map[ino] = now
            return map.count
        }
        guard let noted else {
            var batch = FSBatch(view: view)
            batch.putInode(file)
            _ = try commit(&batch, op: "atime", durable: false)
            return
        }
        inodeCache.apply([(ino, file)])
        if noted >= Self.deferredAccessTimesWake { pool.worker.wake() }
    }

    /// The deferred atime of `ino`, if one is newer than `inode`'s, laid over it.
    func withDeferredAccessTime(_ inode: Inode) -> Inode {
        let ino = inode.ino
        guard let atime = deferredAccessTimes.withLock({ $0.isEmpty ? nil : $0[ino] }), atime > inode.atime else { return inode }
        var moved = inode
        moved.atime = atime
        return moved
    }

    /// A commit of this dataset wrote these inode records: a deferred atime they hold (or
    /// pass) is written, and goes; one newer than a record (the reclaimer rewrites a record
    /// as stored) stays, laid over it. Returns the records as reads now see them, for the
    /// inode cache. REQUIRES: the inodes' locks.
    func accessTimesWritten(_ records: [(ino: UInt64, inode: Inode?)]) -> [(UInt64, Inode?)] {
        deferredAccessTimes.withLock { map in
            records.map { ino, inode -> (UInt64, Inode?) in
                guard !map.isEmpty, let atime = map[ino] else { return (ino, inode) }
                guard var inode, inode.atime < atime else {
                    map[ino] = nil
                    return (ino, inode)
                }
                inode.atime = atime
                return (ino, inode)
            }
        }
    }

    /// A setattr that sets `ino`'s atime: the time it sets wins over a deferred one.
    /// REQUIRES: the inode's lock.
    func dropDeferredAccessTime(_ ino: UInt64) -> Timestamp? {
        deferredAccessTimes.withLock { $0.removeValue(forKey: ino) }
    }

    /// Puts back a note `dropDeferredAccessTime` took, for a change that then failed to
    /// commit (a read may have noted a newer one meanwhile: the newer stays).
    func restoreDeferredAccessTime(_ ino: UInt64, _ atime: Timestamp) {
        deferredAccessTimes.withLock { map in map[ino] = map[ino].map { max($0, atime) } ?? atime }
    }

    /// Forgets every deferred atime (a rollback discards the head they belong to).
    func dropDeferredAccessTimes() {
        deferredAccessTimes.withLock { $0.removeAll() }
    }

    /// Writes the deferred atimes noted so far (not durably, as every atime update);
    /// returns how many inode records it wrote. A handle that cannot write (the dataset
    /// was made read-only or deleted) drops them.
    @discardableResult
    public func flushAccessTimes() throws(FSError) -> Int {
        let noted = deferredAccessTimes.withLock { $0 }
        guard !noted.isEmpty else { return 0 }
        guard isWritable, !store.isReadOnly else {
            // Made read-only (or deleted) since: what the cache shows of them goes too.
            dropDeferredAccessTimes()
            inodeCache.reset()
            return 0
        }
        var written = 0
        // Notes of inodes that could not be read (damage): kept, for the next pass.
        var unreadable: Set<UInt64> = []
        let inodes = noted.keys.sorted()
        // Small groups: the lock table has 256 stripes, shared by every dataset, and a
        // group holds one per inode while it reads them and commits.
        for start in stride(from: 0, to: inodes.count, by: 32) {
            let group = Array(inodes[start..<min(start + 32, inodes.count)])
            written += try locked(group, keepsData: true) { () throws(FSError) -> Int in
                var batch = FSBatch(view: view)
                for ino in group {
                    // A note still there was written by no commit (a commit that writes the
                    // inode drops it), so the inode as reads see it (the cache, or the record
                    // with the note laid over it) is what to write. An inode gone meanwhile
                    // (unlinked) has nothing to write; one that cannot be read is reported by
                    // the reads and fsck, not here.
                    guard let atime = deferredAccessTimes.withLock({ $0[ino] }), atime == noted[ino] else { continue }
                    switch Result(catching: { () throws(FSError) in try inode(ino) }) {
                    case .success(let current):
                        if current.atime >= atime { batch.putInode(current) }
                    case .failure(let error):
                        if error.code != .ESTALE { unreadable.insert(ino) }
                    }
                }
                guard !batch.inodes.isEmpty else { return 0 }
                _ = try commit(&batch, op: "atime", durable: false)
                return batch.inodes.count
            }
        }
        // What was written or found gone; a note made since (a newer read) stays.
        deferredAccessTimes.withLock { map in
            for (ino, atime) in noted where map[ino] == atime && !unreadable.contains(ino) { map[ino] = nil }
        }
        return written
    }
}

extension Pool {
    /// Writes every open handle's deferred atimes (AccessTimes.swift).
    func flushAccessTimes() throws(FSError) {
        var firstFailure: FSError?
        for handle in handles.withLock({ Array($0.values) }) {
            do throws(FSError) {
                try handle.flushAccessTimes()
            } catch {
                firstFailure = firstFailure ?? error
            }
        }
        if let firstFailure { throw firstFailure }
    }
}
