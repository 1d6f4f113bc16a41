// The reclaimer: deletes, in the background, the chunks named by the reclaim queue
// (0x07). A record (ino, version) says either "the inode is gone, delete every chunk of
// that version" or "delete the chunks its shrink marks hide, then drop the marks". It
// deletes only entries of the record's version, never what another version still shows,
// in batches, and removes the record last, so after a restart it simply resumes.

import Engine
import Foundation

/// Wakes the background reclaim thread and tells it to stop.
final class ReclaimSignal: @unchecked Sendable {
    // All fields are guarded by `condition`.
    private let condition = NSCondition()
    private var pending = true
    private var stopping = false
    private var running = false
    let runLock = PlainLock()

    func wake() {
        condition.lock()
        pending = true
        condition.signal()
        condition.unlock()
    }

    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while running { condition.wait() }
        condition.unlock()
    }

    func start(_ body: @escaping @Sendable () -> Void) {
        condition.lock()
        running = true
        condition.unlock()
        let thread = Thread { [self] in
            while true {
                // Run when woken, and at least once a second (a queue left by a crash, or
                // records that failed and must be retried).
                condition.lock()
                if !pending && !stopping { _ = condition.wait(until: Date(timeIntervalSinceNow: 1)) }
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
        thread.name = "zerofs-reclaim"
        thread.start()
    }
}

extension FileSystem {
    func startReclaimer() {
        reclaimer.start { [weak self] in
            _ = try? self?.reclaimNow()
        }
    }

    /// Works through the whole reclaim queue now; returns the number of records finished.
    @discardableResult
    public func reclaimNow() throws(FSError) -> Int {
        try reclaimer.runLock.withLock { () throws(FSError) -> Int in
            try crashPoints.checkRunning()
            // Nothing can be deleted in a read-only store; its queue waits for a writable open.
            if store.isReadOnly { return 0 }
            var records: [(UInt64, UInt64, ReclaimKind)] = []
            var bad = 0
            try kv {
                try store.scan(.prefix([KeyKind.reclaim.rawValue])) { key, value in
                    // A damaged record (bad key or unknown kind) is skipped and counted, so
                    // it never blocks the records behind it; fsck names it.
                    guard key.count == 17, value.count == 1, let kind = ReclaimKind(rawValue: value[0]) else {
                        bad += 1
                        return true
                    }
                    records.append((key.readBigEndian(at: 1), key.readBigEndian(at: 9), kind))
                    return true
                }
            }
            skippedReclaimRecords.withLock { $0 = bad }
            for (ino, version, kind) in records {
                switch kind {
                case .deleteFile: try reclaimDeleted(ino, version)
                case .shrink: try reclaimShrunk(ino, version)
                }
            }
            return records.count
        }
    }

    /// Damaged reclaim records the last pass skipped (fsck names each one).
    public var damagedReclaimRecords: Int { skippedReclaimRecords.withLock { $0 } }

    private func reclaimDeleted(_ ino: UInt64, _ version: UInt64) throws(FSError) {
        while true {
            let keys = try chunkKeys(ino, version, from: 0) { _, _ in true }
            if keys.isEmpty { break }
            try deleteChunks(keys, ino)
        }
        var batch = FSBatch(view: view)
        batch.deleteUnversioned(FSKeys.reclaim(ino, version))
        _ = try commit(&batch, op: "reclaim-finish", durable: false)
    }

    private func reclaimShrunk(_ ino: UInt64, _ version: UInt64) throws(FSError) {
        var deletedMeanwhile = false
        while true {
            let done = try locked([ino]) { () throws(FSError) -> Bool in
                guard version == view.head, let value = try reads.get(FSKeys.inode(ino)) else {
                    // The inode went after the queue was read: unlink replaced this record
                    // with a delete record, which must survive.
                    let record = try kv { try store.get(FSKeys.reclaim(ino, version)) }
                    if record == [ReclaimKind.deleteFile.rawValue] {
                        deletedMeanwhile = true
                        return true
                    }
                    var batch = FSBatch(view: view)
                    batch.deleteUnversioned(FSKeys.reclaim(ino, version))
                    _ = try commit(&batch, op: "reclaim-finish", durable: false)
                    return true
                }
                var file = try withBytes(value) { raw throws(FSError) in try Inode.decode(ino: ino, raw) }
                let first = (file.shrinkMarks.map(\.size).min() ?? UInt64.max).quotientRoundingUp(chunkSize)
                let hidden = try chunkKeys(ino, version, from: first) { index, epoch in
                    file.hides(chunkIndex: index, epoch: epoch, chunkSize: chunkSize)
                }
                if !hidden.isEmpty {
                    try deleteChunks(hidden, ino)
                    return false
                }
                file.shrinkMarks = []
                var batch = FSBatch(view: view)
                batch.putInode(file)
                batch.deleteUnversioned(FSKeys.reclaim(ino, version))
                _ = try commit(&batch, op: "reclaim-finish", durable: false)
                return true
            }
            if done { break }
        }
        if deletedMeanwhile { try reclaimDeleted(ino, version) }
    }

    private func deleteChunks(_ keys: [[UInt8]], _ ino: UInt64) throws(FSError) {
        var batch = FSBatch(view: view)
        for key in keys { batch.deleteUnversioned(key) }
        batch.chunkDelta = -Int64(keys.count)
        batch.touched.insert(ino)
        _ = try commit(&batch, op: "reclaim", durable: false)
    }

    /// Up to one batch of chunk keys of exactly `version`, from chunk index `from` on,
    /// that `select(index, epoch)` accepts.
    private func chunkKeys(
        _ ino: UInt64, _ version: UInt64, from: UInt64, _ select: (UInt64, UInt64) -> Bool
    ) throws(FSError) -> [[UInt8]] {
        guard from != UInt64.max else { return [] }
        var keys: [[UInt8]] = []
        let limit = options.reclaimBatchSize
        let range = KeyRange(start: FSKeys.chunk(ino, from), end: Bytes.prefixSuccessor(FSKeys.chunkPrefix(ino)))
        try kv {
            try store.scan(range) { key, value in
                guard key.count == 25, UInt64.max - key.readBigEndian(at: 17) == version else { return true }
                let epoch = value.count >= 10 ? value.readBigEndian(at: 2) : 0
                if select(key.readBigEndian(at: 9), epoch) { keys.append(Array(key)) }
                return keys.count < limit
            }
        }
        return keys
    }
}

extension UInt64 {
    func quotientRoundingUp(_ divisor: Int) -> UInt64 {
        // Without `self + divisor - 1`, which overflows for a damaged size near the maximum.
        self == .max ? .max : self / UInt64(divisor) + (self % UInt64(divisor) == 0 ? 0 : 1)
    }
}
