// The WAL side of the LSM store (format-wal.md): group commit (`flushWAL`), the claims a
// WAL flush takes and writes, where batches landed for tables to point at
// (`walLocations`), the sync of the sealed segments a flush points into (`syncSealed`),
// and freezing the memtable (`rotateMemtable`). The state these guard is declared in
// LSMStore.swift.

import Engine
import ObjectStore

extension LSMStore {
    /// Where the WAL wrote a batch, and the CRCs of its values of at least
    /// `wal_value_min_bytes` by their offset in the batch.
    struct WALLocation {
        var segment: UInt64
        var offset: Int
        var crcs: [Int: UInt32]
    }

    /// Freezes a full memtable for a writer that found it full (`rotationWanted`). Most of
    /// the WAL buffer is written out first, without the state lock, so writers go on
    /// meanwhile.
    ///
    /// With `idleSince`, the newest sequence number an idle memtable held when the WAL
    /// thread found it idle: it is frozen whatever its size, unless a write came since
    /// (then only if it is full).
    func rotateInBackground(idleSince: UInt64? = nil) {
        guard state.withLock({ rotationWanted }) else { return }
        let upTo = wal.withLock { walAppended }
        try? flushWAL(upTo: upTo, sync: false)
        let tail = state.withLock { () -> WALClaim? in
            defer { rotationWanted = false }
            // A writer that filled the memtable meanwhile found the request taken (the idle
            // one) and left it: the size decides too, or the memtable would grow on to
            // twice its size before a writer freezes it.
            let idle = idleSince.map { $0 == lastSeq } ?? false
            guard idle || mem.approximateBytes >= options.memtableBytes, let tail = try? rotateMemtable() else { return nil }
            immutables.last?.frozenWhenIdle = idle
            state.broadcast()
            return tail
        }
        if let tail { try? finishRotation(tail) }
    }

    /// Freezes the memtable. REQUIRES: `state` is held, so no writer appends meanwhile.
    ///
    /// The frozen memtable's records must sit in WAL objects below the new memtable's first
    /// WAL id. Writing the ones still buffered would hold every writer and reader off for as
    /// long as that takes, so they are only claimed here (with the WAL segment, sealed at
    /// once, and the id of a new segment for them if there is none); the caller writes them
    /// with `finishRotation` once it has released `state`. Until then no other WAL flush
    /// starts (the claim holds `walFlushing`), so nothing written later can overtake them,
    /// and the frozen memtable's flush commits only after them (`walEnd`): a WAL object is
    /// never written after a commit made it obsolete, which garbage collection could delete
    /// under a write still retrying (on S3 a retried put-if-absent then found neither its
    /// object nor room to write it: "fenced").
    func rotateMemtable() throws -> WALClaim {
        let (tail, first) = try wal.withLock { () throws -> (WALClaim, UInt64) in
            while walFlushing {
                if let error = walError { throw error }
                wal.wait()
            }
            if let error = walError { throw error }
            let tail = claimWAL(sync: false, sealing: true)
            return (tail, nextWALID)
        }
        mem.walEnd = tail.end
        immutables.append(mem)
        mem = Memtable(firstWAL: first)
        var claim = tail
        claim.nextMemtable = mem
        return claim
    }

    /// Waits until the WAL is written up to `position` (or has failed: its error).
    func waitForWALWritten(_ position: UInt64) throws {
        try wal.withLock {
            while walWritten < position {
                if let error = walError { throw error }
                wal.wait()
            }
        }
    }

    /// Writes the records `rotateMemtable` claimed and seals their segment.
    func finishRotation(_ tail: WALClaim) throws {
        var tail = tail
        let written = writeWAL(&tail)
        try wal.withLock { try settleWAL(tail, written) }
    }

    /// Records taken from the WAL buffer for one write, with where they go.
    struct WALClaim {
        var records: [(seq: UInt64, batch: WriteBatch)]
        /// `walAppended` when they were taken: every record up to it is in `records` or
        /// written before.
        var end: UInt64
        var sync: Bool
        /// Sealed segments to sync (and seal) first.
        var sealed: [(id: UInt64, segment: any AppendableObject)]
        /// The segment to append to (nil: a new one, `id`, when there are records or a
        /// sync marker to leave alone).
        var segment: (any AppendableObject)?
        var id: UInt64
        /// A rotation's claim: the segment is sealed after these records.
        var sealing: Bool
        /// The file offset the first record lands at in the segment.
        var offset: Int
        /// A sync marker goes after the records (format-wal.md): every WAL object below
        /// the segment is durable once the claim's sealed segments are synced. With no
        /// records and no open segment it goes alone into a new segment.
        var marker: Bool
        /// The sync marker goes instead at the end of the last sealed segment, before its
        /// sync (no segment is open, and that one is the newest holding records).
        var markerInSealed: Bool
        /// The segment the records go to held a sync marker already.
        var segmentMarked: Bool
        /// A rotation's claim: the memtable that took the frozen one's place, whose first
        /// WAL object moves up if these records have to go to a later one.
        var nextMemtable: Memtable?
    }

    /// Takes every buffered record for writing and marks the WAL busy (`walFlushing`).
    /// REQUIRES: `wal` is held and no flush is in progress.
    private func claimWAL(sync: Bool, sealing: Bool) -> WALClaim {
        let appendable = objects is any AppendableObjectStore
        walFlushing = true
        var records: [(seq: UInt64, batch: WriteBatch)] = []
        swap(&records, &walPending)
        walPendingBytes = 0
        if let full = walSegment, walSegmentSize >= Self.walSegmentBytes {
            unsyncedSealed.append((walSegmentID, full))
            walSegment = nil
        }
        let sealed = sync ? unsyncedSealed : []
        if sync { unsyncedSealed.removeAll() }
        let segment = appendable ? walSegment : nil
        let segmentMarked = segment != nil && walSegmentMarked
        // A durable write is acknowledged only once a sync marker follows every record
        // written so far (`walUnmarked` false; format-wal.md, "Sync markers"). It leaves one
        // after syncing the sealed segments, so it can say every object below is durable;
        // not while `syncSealed` syncs some (a later durable write leaves it then).
        var marker = false
        var markerInSealed = false
        if appendable && sync && !sealing && sealedSyncing.isEmpty && (walUnmarked || (!records.isEmpty && !segmentMarked)) {
            if segment == nil && records.isEmpty, let last = sealed.last, last.id >= walNewestWritten {
                markerInSealed = true
            } else {
                marker = true
            }
        }
        var id = walSegmentID
        if segment == nil && (!records.isEmpty || marker || (!appendable && !sealing)) {
            id = nextWALID
            nextWALID += 1
        }
        if sealing { walSegment = nil }
        let offset = WALFormat.headerSize + (segment == nil ? 0 : walSegmentSize)
        return WALClaim(records: records, end: walAppended, sync: sync, sealed: sealed, segment: segment, id: id, sealing: sealing,
                        offset: offset, marker: marker, markerInSealed: markerInSealed, segmentMarked: segmentMarked)
    }

    /// Writes a claim's records (no lock held): the segment they went to (nil when none),
    /// or the failure. Where each write is an object of its own, an upload of ours cut
    /// short that the server kept empty moves the records to the next WAL id (`claim.id`
    /// changes): another writer taking over may have read the empty object as the torn
    /// end of the log, so filling it in later would slip records in behind its back.
    /// Readers pass over empty WAL objects (format-wal.md).
    private func writeWAL(_ claim: inout WALClaim) -> Result<(any AppendableObject)?, KVError> {
        do {
            // Records in sealed segments must be durable before this sync promises
            // prefix durability.
            for (index, old) in claim.sealed.enumerated() {
                // Appended unsynced: a synced append would first write zeros ahead of it
                // (reserved space), which sealing cuts off at once.
                if claim.markerInSealed && index == claim.sealed.count - 1 {
                    try old.segment.append(pieces: [WALFormat.syncMarker], sync: false)
                }
                try old.segment.sync()
                old.segment.seal()
            }
            if let appendable = objects as? any AppendableObjectStore {
                var segment = claim.segment
                if segment == nil && (!claim.records.isEmpty || claim.marker) {
                    guard let created = try appendable.createAppendable(WALFormat.name(claim.id), header: WALFormat.header()) else {
                        throw KVError(.fenced, "another writer took over this store (WAL object \(claim.id) exists)", path: objects.location)
                    }
                    segment = created
                }
                guard let segment else { return .success(nil) }
                if claim.records.isEmpty {
                    if claim.marker {
                        try segment.append(pieces: [WALFormat.syncMarker], sync: true)
                    } else if claim.sync {
                        try segment.sync()
                    }
                } else {
                    var pieces: [[UInt8]] = []
                    pieces.reserveCapacity(2 * claim.records.count)
                    // The CRCs of values tables may point at, by record, taken in the pass
                    // that checksums the record.
                    var valueCRCs: [[(offset: Int, crc: UInt32)]] = []
                    let minBytes = options.walValues ? options.walValueMinBytes : Int.max
                    for record in claim.records {
                        var crcs: [(offset: Int, crc: UInt32)] = []
                        pieces.append(WALFormat.recordHeader(seq: record.seq, batch: record.batch, valuesFrom: minBytes, crcs: &crcs))
                        pieces.append(record.batch.rep)
                        if options.walValues { valueCRCs.append(crcs) }
                    }
                    // After the records: their offsets, which tables may point at, stay.
                    if claim.marker { pieces.append(WALFormat.syncMarker) }
                    try segment.append(pieces: pieces, sync: claim.sync)
                    if options.walValues { publishLocations(claim, valueCRCs) }
                }
                return .success(segment)
            } else if !(claim.sealing && claim.records.isEmpty) {
                let object = claim.records.reduce(into: WALFormat.header()) { WALFormat.appendRecord(&$0, seq: $1.seq, batch: $1.batch) }
                var cuts = 0
                while true {
                    switch try objects.putIfAbsentOrCut(WALFormat.name(claim.id), object) {
                    case .written:
                        break
                    case .taken:
                        throw KVError(.fenced, "another writer took over this store (WAL object \(claim.id) exists)", path: objects.location)
                    case .cutShort:
                        cuts += 1
                        guard cuts < Self.cutShortAttempts else {
                            throw KVError(.io, "\(cuts) uploads in a row were cut short", path: WALFormat.name(claim.id))
                        }
                        // Nothing else takes WAL ids while this flush runs (`walFlushing`).
                        let nextMemtable = claim.nextMemtable
                        claim.id = wal.withLock { () -> UInt64 in
                            let id = nextWALID
                            nextWALID += 1
                            nextMemtable?.moveFirstWAL(to: nextWALID)
                            return id
                        }
                        continue
                    }
                    break
                }
            }
            return .success(nil)
        } catch {
            return .failure(error as? KVError ?? KVError(.io, "WAL write failed", path: WALFormat.name(claim.id), cause: "\(error)"))
        }
    }

    /// Records where a claim's batches that may hold in-place values went, with the CRCs
    /// of their large values (`crcs`, by record).
    private func publishLocations(_ claim: WALClaim, _ crcs: [[(offset: Int, crc: UInt32)]]) {
        var offset = claim.offset
        var found: [(UInt64, WALLocation)] = []
        for (index, record) in claim.records.enumerated() {
            if record.batch.rep.count >= Memtable.inPlaceBytes {
                let values = Dictionary(crcs[index].map { ($0.offset, $0.crc) }, uniquingKeysWith: { first, _ in first })
                found.append((record.seq, WALLocation(segment: claim.id, offset: offset + WALFormat.recordHeaderSize, crcs: values)))
            }
            offset += WALFormat.recordHeaderSize + record.batch.rep.count
        }
        guard !found.isEmpty else { return }
        walLocations.withLock { for (seq, at) in found { $0[seq] = at } }
    }

    /// Records what a claim's write did and ends the flush. REQUIRES: `wal` is held.
    private func settleWAL(_ claim: WALClaim, _ written: Result<(any AppendableObject)?, KVError>) throws {
        walFlushing = false
        let appendable = objects is any AppendableObjectStore
        let segment: (any AppendableObject)?
        switch written {
        case .success(let used): segment = used
        case .failure(let failure):
            walError = failure
            wal.broadcast()
            throw failure
        }
        for old in claim.sealed { syncedSealed.insert(old.id) }
        if let segment {
            if claim.sealing {
                unsyncedSealed.append((claim.id, segment))
            } else {
                if walSegment == nil {
                    walSegmentSize = 0
                    walSegmentID = claim.id
                    walSegmentMarked = false
                }
                walSegment = segment
                walSegmentSize += claim.records.reduce(0) { $0 + 16 + $1.batch.rep.count }
                if claim.marker {
                    walSegmentSize += WALFormat.syncMarker.count
                    walSegmentMarked = true
                }
            }
        }
        if claim.marker || claim.markerInSealed {
            walUnmarked = false
        } else if !claim.records.isEmpty && !claim.segmentMarked && appendable {
            walUnmarked = true
        }
        if !claim.records.isEmpty { walNewestWritten = max(walNewestWritten, claim.id) }
        walWritten = claim.end
        // A sealed segment a flush failed to sync (`syncSealed`) holds earlier records:
        // nothing after it is durable.
        if let error = walError {
            wal.broadcast()
            throw error
        }
        if claim.sync || !appendable {
            // Sealed segments still being synced by a flush hold earlier records; and a
            // durable write is acknowledged only once a sync marker follows every record
            // (if this claim could not leave one, the waiters run one more that does).
            if sealedSyncing.isEmpty && !walUnmarked { walDurable = claim.end } else { durableAfterSealed = max(durableAfterSealed, claim.end) }
        }
        wal.broadcast()
    }

    /// Makes the sealed segments `ids` durable, for a flush whose tables point into them:
    /// the ones still waiting in `unsyncedSealed` are synced and sealed here, and those a
    /// syncing WAL flush took are waited for. Only these: not the open segment, which
    /// writers go on appending to, nor records still buffered, and without holding the
    /// WAL's one flush, so buffered writes go on meanwhile. Segments being synced here
    /// are in `sealedSyncing`: a syncing WAL flush that ends meanwhile has not synced
    /// them, so it leaves the durable position (`walDurable`) where it was, and the
    /// position it reached (`durableAfterSealed`) is taken once they are synced (prefix
    /// durability), if a sync marker follows every record (else the waiters' next durable
    /// flush leaves one). A segment found nowhere is not expected; the whole WAL up to
    /// `position` is synced then.
    func syncSealed(_ ids: Set<UInt64>, orUpTo position: UInt64) throws {
        guard !ids.isEmpty else { return }
        wal.lock()
        var fallback = false
        while true {
            if let error = walError {
                wal.unlock()
                throw error
            }
            let mine = unsyncedSealed.filter { ids.contains($0.id) }
            if !mine.isEmpty {
                unsyncedSealed.removeAll { ids.contains($0.id) }
                sealedSyncing.formUnion(mine.map(\.id))
                wal.unlock()
                var failure: KVError?
                do {
                    for old in mine {
                        try old.segment.sync()
                        old.segment.seal()
                    }
                } catch {
                    failure = error as? KVError ?? KVError(.io, "WAL sync failed", cause: "\(error)")
                }
                wal.lock()
                sealedSyncing.subtract(mine.map(\.id))
                if let failure {
                    walError = failure
                    wal.broadcast()
                    wal.unlock()
                    throw failure
                }
                syncedSealed.formUnion(mine.map(\.id))
                // The position a flush reached meanwhile is durable now, but is acknowledged
                // only once a sync marker follows every record: else the waiters run one
                // more durable flush, which leaves it (`claimWAL`).
                if sealedSyncing.isEmpty && !walUnmarked { walDurable = max(walDurable, durableAfterSealed) }
                wal.broadcast()
                continue
            }
            if ids.isSubset(of: syncedSealed) { break }
            // A syncing WAL flush, or another flush's sync, has them.
            if walFlushing || !sealedSyncing.isDisjoint(with: ids) {
                wal.wait()
                continue
            }
            fallback = true
            break
        }
        wal.unlock()
        if fallback { try flushWAL(upTo: position) }
    }

    /// Writes every record up to `position` to the WAL and, with `sync`, makes it durable
    /// (group commit: one thread writes the buffer for everyone waiting; the others wait
    /// for it). Where the object store can append (a local folder), records go into the
    /// current segment, synced only when asked; elsewhere each flush is a new WAL object,
    /// durable when written.
    func flushWAL(upTo position: UInt64, sync: Bool = true) throws {
        wal.lock()
        defer { wal.unlock() }
        while (sync ? walDurable : walWritten) < position {
            if let error = walError { throw error }
            // Synced but for sealed segments a flush is syncing: wait for it.
            if walFlushing || (sync && durableAfterSealed >= position && !sealedSyncing.isEmpty) {
                wal.wait()
                continue
            }
            var claim = claimWAL(sync: sync, sealing: false)
            wal.unlock()
            let written = writeWAL(&claim)
            wal.lock()
            try settleWAL(claim, written)
        }
    }
}
