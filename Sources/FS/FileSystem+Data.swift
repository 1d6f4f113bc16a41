// File data: read, write, truncate and fsync over fixed-size chunks (0xFE). A chunk never
// written, or hidden by a shrink mark, reads as zeros (a hole). Truncating down rewrites
// the boundary chunk with its tail cut and hides every chunk past the new size with one
// shrink mark: O(1) whatever the file's size; the reclaimer deletes the hidden chunks.

import Engine
#if canImport(Glibc)
import Glibc
#endif

public struct ReadResult: Sendable, Equatable {
    public var data: [UInt8]
    public var eof: Bool

    public init(data: [UInt8], eof: Bool) {
        self.data = data
        self.eof = eof
    }
}

extension FileSystem {
    public func read(_ cred: Credentials, _ ino: UInt64, offset: UInt64, count: Int) throws(FSError) -> ReadResult {
        var data: [UInt8] = []
        let eof = try read(cred, ino, offset: offset, count: count, appendingTo: &data)
        return ReadResult(data: data, eof: eof)
    }

    /// Reads as `read` does, appending the bytes to `out` (the NFS server's reply, so that
    /// 1 MiB read is copied once, from the stored chunks or a range read ahead); returns
    /// eof. After a throw, `out` may hold part of the data.
    public func read(_ cred: Credentials, _ ino: UInt64, offset: UInt64, count: Int, appendingTo out: inout [UInt8]) throws(FSError) -> Bool {
        guard count >= 0 else { throw FSError(.EINVAL, "negative read count") }
        pool.preparedReads.awaitReading(place(ino, offset))
        let before = out.count
        let eof = try reading { () throws(FSError) in try readLocked(cred, ino, offset: offset, count: count, appendingTo: &out) }
        let got = out.count - before
        if got >= ReadAhead.minimumRead, got <= ReadAhead.maximumRead, !eof, !store.isReplica,
           sequentialReads.withLock({ $0.note(ino, offset: offset, count: got) }) {
            // The next `rangesAhead` ranges, nearest first; those kept already are skipped.
            // Room for what `out` held before the data, unless that is more than a header.
            let headroom = before <= ReadAhead.maximumHeadroom ? before : 0
            pool.readAhead.submit(for: ReadAhead.File(dataset: dataset, ino: ino)) { [weak self] in
                for k in 1...UInt64(ReadAhead.rangesAhead) {
                    guard let self, self.prepare(ino, from: offset + k * UInt64(got), count: got, headroom: headroom) else { return }
                }
            }
        }
        return eof
    }

    /// Reads `count` bytes of `ino` from `from` (fewer at its end) and keeps them, after
    /// `headroom` bytes of room, for the read that will ask for them (PreparedReads),
    /// unless they are kept already or the reader has passed them. The chunks are read
    /// without the inode's lock, so that the reader's own reads never wait for this one;
    /// the lock stripe's generation, read before and after, says whether the file changed
    /// meanwhile (then nothing is kept). Errors are ignored: the real read reports them.
    /// The range's chunks are read with one `KVReader.withValues` (on the lsm, one vectored
    /// read for chunks written in order). False when there is nothing more to read ahead
    /// (the range is past the file's end, or an error).
    func prepare(_ ino: UInt64, from: UInt64, count: Int, headroom: Int = 0) -> Bool {
        (try? reading { () throws(FSError) in prepareOpen(ino, from: from, count: count, headroom: headroom) }) ?? false
    }

    private func prepareOpen(_ ino: UInt64, from: UInt64, count: Int, headroom: Int) -> Bool {
        if let next = sequentialReads.withLock({ $0.next(ino) }), next > from { return true }
        let plain = reads
        let generation = { () -> (UInt64, Inode)? in
            try? self.locks.withLocks([ino], change: false) { () throws(FSError) in (self.locks.generation(ino), try self.inode(ino)) }
        }
        guard let (before, file) = generation(), file.type == .regular else { return false }
        guard pool.preparedReads.begin(place(ino, from), generation: before, view: plain.view) else { return true }
        var kept: PreparedReads.Range?
        defer { pool.preparedReads.end(keeping: kept) }
        let size = min(file.size, FSOptions.maxFileSize)
        guard from < size else { return false }
        let end = min(size, from + UInt64(count))
        let length = Int(end - from)
        var failed = false
        // Room for the reply's padding after the data too (8 bytes).
        let bytes = [UInt8](unsafeUninitializedCapacity: headroom + length + 8) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            UnsafeMutableRawBufferPointer(rebasing: raw[0..<headroom]).initializeMemory(as: UInt8.self, repeating: 0)
            let cs = UInt64(chunkSize)
            do throws(FSError) {
                try copyChunks(file, (from / cs)..<((end - 1) / cs + 1), from: from, to: end,
                               into: UnsafeMutableRawBufferPointer(rebasing: raw[headroom..<(headroom + length)]), reads: plain)
                initialized = headroom + length
            } catch {
                failed = true
                initialized = 0
            }
        }
        if failed { return false }
        guard let (after, _) = generation(), after == before else { return true }
        kept = PreparedReads.Range(place: place(ino, from), bytes: bytes, headroom: headroom, generation: before, view: plain.view)
        return end < size
    }

    /// Where a range of `ino` at `offset` in this dataset starts (PreparedReads).
    func place(_ ino: UInt64, _ offset: UInt64) -> PreparedReads.Place {
        PreparedReads.Place(file: ReadAhead.File(dataset: dataset, ino: ino), offset: offset)
    }

    private func readLocked(_ cred: Credentials, _ ino: UInt64, offset: UInt64, count: Int, appendingTo out: inout [UInt8]) throws(FSError) -> Bool {
        try locked([ino], change: false) { () throws(FSError) -> Bool in
            var file = try inode(ino)
            try checkRegular(file)
            try file.requireIO(cred, .read)
            // A size past the maximum can only be damage: read as if at the maximum, so
            // the offset arithmetic below cannot overflow.
            let size = min(file.size, FSOptions.maxFileSize)
            guard offset < size, count > 0 else { return offset >= size }
            let end = min(size, offset + UInt64(min(count, 64 << 20)))
            let plain = reads
            let length = Int(end - offset)
            if var prepared = pool.preparedReads.take(place(ino, offset), length: length, generation: locks.generation(ino), view: plain.view) {
                if prepared.headroom == out.count, prepared.count == length {
                    // The range becomes the buffer, what `out` held going in its room. Moved
                    // out of `prepared`, so that writing to it copies nothing.
                    var bytes: [UInt8] = []
                    swap(&bytes, &prepared.bytes)
                    bytes.withUnsafeMutableBytes { room in out.withUnsafeBytes { room.copyMemory(from: $0) } }
                    out = bytes
                } else {
                    out.append(contentsOf: prepared.bytes[prepared.headroom..<(prepared.headroom + length)])
                }
            } else {
                // Room for a few bytes more: the NFS reply's padding after the data.
                out.reserveCapacity(out.count + length + 8)
                let cs = UInt64(chunkSize)
                var index = offset / cs
                while index * cs < end {
                    let chunkStart = index * cs
                    try appendChunk(file, index, from: Int(max(offset, chunkStart) - chunkStart), to: Int(min(end, chunkStart + cs) - chunkStart), &out, reads: plain)
                    index += 1
                }
            }
            try touchAccessTime(&file)
            return end == size
        }
    }

    /// Appends bytes `from..<to` of chunk `index` as reads through `reads` see it: zeros
    /// where it holds none (a hole, a hidden chunk, past a short chunk's end).
    private func appendChunk(_ file: Inode, _ index: UInt64, from: Int, to: Int, _ out: inout [UInt8], reads: VersionedStore) throws(FSError) {
        try withVisibleChunk(file, index, reads: reads) { (chunk: StoredChunk?) throws(FSError) in
            let held = chunk.map { min(to, $0.length) } ?? from
            if let chunk, from < held {
                if chunk.encoding == .raw {
                    out.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk.body[from..<held]))
                } else {
                    out.append(contentsOf: try ChunkRecord.content(chunk.encoding, chunk.length, chunk.body)[from..<held])
                }
            }
            let zeros = to - max(from, held)
            if zeros > 0 { out.append(contentsOf: repeatElement(0, count: zeros)) }
        }
    }

    /// Writes the bytes of chunks `indices` that lie in `from..<end` of the file, as reads
    /// through `reads` see them, into `range` (which holds the file's bytes from `from`),
    /// as `appendChunk` appends them. Whole chunks are read with their place in `range` as
    /// the room for their values' tails (KVReader.withValues): a store that reads values
    /// from files puts the chunks' bytes straight there, neighbours with one system call.
    private func copyChunks(_ file: Inode, _ indices: Range<UInt64>, from: UInt64, to end: UInt64,
                            into range: UnsafeMutableRawBufferPointer, reads: VersionedStore) throws(FSError) {
        let cs = UInt64(chunkSize)
        // Each chunk's bytes lower..<upper, and where they go in `range`.
        let parts = indices.map { index -> (lower: Int, upper: Int, region: UnsafeMutableRawBufferPointer) in
            let chunkStart = index * cs
            let (lower, upper) = (max(from, chunkStart) - chunkStart, min(end, chunkStart + cs) - chunkStart)
            let at = Int(chunkStart + lower - from)
            return (Int(lower), Int(upper), UnsafeMutableRawBufferPointer(rebasing: range[at..<(at + Int(upper - lower))]))
        }
        let tails = parts.map { $0.lower == 0 && $0.upper == chunkSize ? $0.region : nil }
        try reads.withValues(indices.map { FSKeys.chunk(file.ino, $0) }, below: file.contentVersion, head: Self.chunkHeaderSize,
                             tails: tails) { k, raw, placed throws(FSError) in
            let part = parts[k]
            try placeChunk(file, indices.lowerBound + UInt64(k), part.lower, part.upper, into: part.region, raw: raw, placed: placed)
        }
    }

    /// Writes bytes `from..<to` of chunk `index` into `region` (`to - from` bytes) from its
    /// stored value `raw` (nil for none; with `placed`, only the value's first bytes, the
    /// `placed` after them being in `region` already): zeros where it holds none.
    private func placeChunk(_ file: Inode, _ index: UInt64, _ from: Int, _ to: Int, into region: UnsafeMutableRawBufferPointer,
                            raw: UnsafeRawBufferPointer?, placed: Int?) throws(FSError) {
        var held = from
        if let raw {
            let chunk = try ChunkRecord.header(raw, chunkSize: chunkSize, placed: placed)
            if !file.hides(chunkIndex: index, epoch: chunk.epoch, chunkSize: chunkSize) {
                held = max(from, min(to, chunk.length))
                if placed != nil, chunk.encoding == .raw {
                    // In place already (from is 0 here).
                } else if let placed {
                    let content = try ChunkRecord.content(chunk.encoding, chunk.length, UnsafeRawBufferPointer(rebasing: region[0..<placed]))
                    content.withUnsafeBytes { region.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<held])) }
                } else if chunk.encoding == .raw {
                    region.copyMemory(from: UnsafeRawBufferPointer(rebasing: chunk.body[from..<held]))
                } else {
                    let content = try ChunkRecord.content(chunk.encoding, chunk.length, chunk.body)
                    content.withUnsafeBytes { region.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[from..<held])) }
                }
            }
        }
        if held < to {
            UnsafeMutableRawBufferPointer(rebasing: region[(held - from)...]).initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    /// A chunk's stored form, valid only inside `withVisibleChunk`.
    typealias StoredChunk = (epoch: UInt64, encoding: ChunkEncoding, length: Int, body: UnsafeRawBufferPointer)

    /// Runs `body` on chunk `index` as reads see it, without copying its bytes: nil for a
    /// hole or a chunk a shrink mark hides.
    private func withVisibleChunk<R>(_ file: Inode, _ index: UInt64, reads: VersionedStore? = nil, _ body: (StoredChunk?) throws(FSError) -> R) throws(FSError) -> R {
        let chunkSize = chunkSize
        return try (reads ?? self.reads).withValue(FSKeys.chunk(file.ino, index), below: file.contentVersion) { raw throws(FSError) -> R in
            guard let raw else { return try body(nil) }
            let chunk = try ChunkRecord.header(raw, chunkSize: chunkSize)
            return try body(file.hides(chunkIndex: index, epoch: chunk.epoch, chunkSize: chunkSize) ? nil : chunk)
        }
    }

    /// Writes `data` at `offset`. With `durable` the data is durable before return
    /// (NFS FILE_SYNC); otherwise it waits for fsync or the next durable batch.
    @discardableResult
    public func write(_ cred: Credentials, _ ino: UInt64, offset: UInt64, _ data: [UInt8], durable: Bool = false) throws(FSError) -> Inode {
        try withBytes(data) { raw throws(FSError) in try write(cred, ino, offset: offset, raw, durable: durable) }
    }

    /// Writes `data` at `offset` (as above), copying a whole chunk's bytes straight from
    /// `data` into the batch.
    @discardableResult
    public func write(_ cred: Credentials, _ ino: UInt64, offset: UInt64, _ data: UnsafeRawBufferPointer, durable: Bool = false) throws(FSError) -> Inode {
        let (end, overflow) = offset.addingReportingOverflow(UInt64(data.count))
        guard !overflow, end <= FSOptions.maxFileSize else {
            throw FSError(.EFBIG, "a write ending at \(overflow ? "overflow" : "\(end)") exceeds the maximum file size")
        }
        guard data.count <= FSOptions.maxWriteSize else {
            throw FSError(.EINVAL, "a write of \(data.count) bytes exceeds the limit of \(FSOptions.maxWriteSize) bytes per call")
        }
        return try mutate([ino]) { () throws(FSError) -> (Inode, PendingSync) in
            var file = try inode(ino)
            try checkRegular(file)
            try file.requireIO(cred, .write)
            guard !data.isEmpty else { return (file, .none) }
            var batch = FSBatch(view: view)
            let cs = UInt64(chunkSize)
            // The chunks' bytes plus, per chunk, its key and header, and the inode.
            batch.batch.reserve(data.count + (data.count / chunkSize + 2) * 64 + 512)
            var index = offset / cs
            // Chunks this write stores raw without trying zstd: after one that zstd found
            // incompressible, the next three (filesystem.md, "File data").
            var unprobed = 0
            while index * cs < end {
                let chunkStart = index * cs
                let from = max(offset, chunkStart)
                let to = min(end, chunkStart + cs)
                let whole = from == chunkStart && to == chunkStart + cs
                let (stored, old) = try headAndVisibleChunk(file, index, needsContent: !whole)
                if whole {
                    let compress = options.compressChunks && unprobed == 0
                    let incompressible = putChunk(
                        &batch, file, index, UnsafeRawBufferPointer(rebasing: data[Int(from - offset)..<Int(to - offset)]),
                        replacing: stored, compress: compress)
                    if !compress {
                        unprobed = max(unprobed - 1, 0)
                    } else if incompressible {
                        unprobed = 3
                    }
                } else {
                    var bytes = old?.data ?? []
                    let needed = Int(to - chunkStart)
                    if bytes.count < needed { bytes.append(contentsOf: repeatElement(0, count: needed - bytes.count)) }
                    bytes.withUnsafeMutableBytes { dst in
                        dst.baseAddress!.advanced(by: Int(from - chunkStart))
                            .copyMemory(from: data.baseAddress!.advanced(by: Int(from - offset)), byteCount: Int(to - from))
                    }
                    putChunk(&batch, file, index, bytes, replacing: stored)
                }
                index += 1
            }
            let now = Self.now()
            file.contentVersion = batch.view.head
            if end > file.size { batch.bytesDelta += Int64(end - file.size) }
            file.size = max(file.size, end)
            file.mtime = now
            file.ctime = now
            if !cred.isRoot { file.mode = Self.killingSetID(file.mode) }
            batch.putInode(file)
            return (file, try commit(&batch, op: "write", durable: durable))
        }
    }

    /// Makes everything written so far durable.
    public func fsync(_ ino: UInt64) throws(FSError) {
        _ = try getattr(ino)
        try awaitDurable(PendingSync(sequence: syncGate.lastApplied))
    }

    /// Sets the size of a locked regular file inode in `batch`. REQUIRES: its lock.
    func truncate(_ batch: inout FSBatch, _ file: inout Inode, to size: UInt64) throws(FSError) {
        guard size <= FSOptions.maxFileSize else { throw FSError(.EFBIG, "size \(size) exceeds the maximum file size") }
        let cs = UInt64(chunkSize)
        batch.bytesDelta += size >= file.size ? Int64(size - file.size) : -Int64(file.size - size)
        defer { file.size = size }
        guard size < file.size else { return }
        if size % cs != 0 {
            let (stored, boundary) = try headAndVisibleChunk(file, size / cs)
            let keep = Int(size % cs)
            if let boundary, boundary.data.count > keep {
                putChunk(&batch, file, size / cs, Array(boundary.data[0..<keep]), replacing: stored)
                file.contentVersion = batch.view.head
            }
        }
        // Chunks starting at or past `size` exist only below the old size (or are hidden already).
        let firstBeyond = (size + cs - 1) / cs
        let oldEnd = file.size.quotientRoundingUp(chunkSize)
        guard oldEnd > firstBeyond else { return }
        file.shrinkMarks.removeAll { $0.size >= size }
        guard file.shrinkMarks.count < Inode.maxShrinkMarks else {
            throw FSError(.ENOSPC, "inode \(file.ino) has \(Inode.maxShrinkMarks) truncations whose chunks wait for the reclaimer (below a snapshot they wait until it is deleted)")
        }
        file.dataEpoch += 1
        file.shrinkMarks.append(ShrinkMark(epoch: file.dataEpoch, size: size))
        batch.putUnversioned(FSKeys.reclaim(file.ino, view.head), [ReclaimKind.shrink.rawValue])
    }

    func checkRegular(_ file: Inode) throws(FSError) {
        switch file.type {
        case .regular: return
        case .directory: throw FSError(.EISDIR, "inode \(file.ino) is a directory")
        default: throw FSError(.EINVAL, "inode \(file.ino) is not a regular file")
        }
    }

    /// Puts chunk `index` at the head; `replacing` is the stored size of the chunk entry
    /// the head already holds there (nil: none), for WRITTEN.
    private func putChunk(_ batch: inout FSBatch, _ file: Inode, _ index: UInt64, _ bytes: [UInt8], replacing: Int?) {
        bytes.withUnsafeBytes { _ = putChunk(&batch, file, index, $0, replacing: replacing, compress: options.compressChunks) }
    }

    /// The same from bytes in place: trailing zeros are left out, and a raw body is copied
    /// once, into the batch. Returns whether zstd was tried and found the chunk
    /// incompressible (not: a chunk of zeros, or one too short to try).
    private func putChunk(
        _ batch: inout FSBatch, _ file: Inode, _ index: UInt64, _ bytes: UnsafeRawBufferPointer, replacing: Int?, compress: Bool
    ) -> Bool {
        var length = bytes.count
        while length > 0 && bytes[length - 1] == 0 { length -= 1 }
        let trimmed = UnsafeRawBufferPointer(rebasing: bytes[0..<length])
        let (head, packed) = ChunkRecord.parts(epoch: file.dataEpoch, data: trimmed, compress: compress)
        if let packed {
            packed.withUnsafeBytes { batch.put(FSKeys.chunk(file.ino, index), head: head, body: $0) }
        } else {
            batch.put(FSKeys.chunk(file.ino, index), head: head, body: trimmed)
        }
        batch.addWritten(batch.view.head, head.count + (packed?.count ?? length) - (replacing ?? 0))
        return compress && length >= ChunkRecord.smallestCompressed && packed == nil
    }

    /// The chunk a read sees (nil for a hole).
    func visibleChunk(_ file: Inode, _ index: UInt64) throws(FSError) -> ChunkRecord? {
        try withVisibleChunk(file, index) { (chunk: StoredChunk?) throws(FSError) -> ChunkRecord? in
            guard let chunk else { return nil }
            return ChunkRecord(epoch: chunk.epoch, data: try ChunkRecord.content(chunk.encoding, chunk.length, chunk.body))
        }
    }

    /// The stored size of the chunk entry at exactly the head version (nil: none; for
    /// WRITTEN), and what reads see (nil when not `needsContent`: a write replacing the
    /// whole chunk). One point get when the head has no ancestors, or when the head holds
    /// the chunk; none when the head holds none of the file's chunks and the content is
    /// not needed.
    private func headAndVisibleChunk(_ file: Inode, _ index: UInt64, needsContent: Bool = true) throws(FSError) -> (Int?, ChunkRecord?) {
        let view = self.view
        // Content older than the head: the head holds none of this file's chunks.
        if !view.ancestors.isEmpty, file.contentVersion != 0, file.contentVersion < view.head {
            return (nil, needsContent ? try visibleChunk(file, index) : nil)
        }
        let raw = try kv { try store.get(FSKeys.versioned(FSKeys.chunk(file.ino, index), view.head)) }
        let stored = raw.map(\.count)
        guard let raw, raw.first == ValueTag.live.rawValue else {
            if raw != nil || view.ancestors.isEmpty || !needsContent { return (stored, nil) }
            return (nil, try visibleChunk(file, index))
        }
        guard needsContent else { return (stored, nil) }
        let chunk = try withBytes(raw) { raw throws(FSError) in try ChunkRecord.decode(raw, chunkSize: chunkSize) }
        return (stored, file.hides(chunkIndex: index, epoch: chunk.epoch, chunkSize: chunkSize) ? nil : chunk)
    }
}
