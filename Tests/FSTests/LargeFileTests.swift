// Large files on every backend: a sparse file of 10 GiB logical size, overwrites across
// chunk boundaries checked against an in-memory model, truncation in the middle of a
// chunk, and an O(1) truncate of the 10 GiB file.

import Engine
import FS
import FSTestSupport
import KVTestSupport
import LMDBBackend
import LSMBackend
import MemoryBackend
import RocksDBBackend
import Testing

@Suite struct LargeFileTests {
    static let factories: [any KVBackendFactory & Sendable] = [MemoryBackendFactory(), LSMBackendFactory(), RocksDBBackendFactory(), LMDBBackendFactory()]
    static let names = factories.map(\.name)

    func fixture(_ backend: String) throws -> FSFixture {
        try FSFixture(LargeFileTests.factories.first { $0.name == backend }!)
    }

    @Test(arguments: LargeFileTests.names)
    func aWriteOverTheLimitPerCallIsRefused(_ backend: String) throws {
        let f = try fixture(backend)
        defer { f.close() }
        let file = try f.fs.create(.root, FileSystem.rootInode, n("big"), mode: 0o644)
        try f.fs.write(.root, file.ino, offset: 0, n("kept"))
        let data = [UInt8](repeating: 3, count: FSOptions.maxWriteSize + 1)
        #expect { try f.fs.write(.root, file.ino, offset: 2, data) } throws: { ($0 as? FSError)?.code == .EINVAL }
        #expect(try f.fs.read(.root, file.ino, offset: 0, count: 100) == ReadResult(data: n("kept"), eof: true))
        if backend == "memory" {
            // At the limit it is one batch, under the store's limit.
            try f.fs.write(.root, file.ino, offset: 2, Array(data.dropLast()))
            #expect(try f.fs.getattr(file.ino).size == UInt64(FSOptions.maxWriteSize) + 2)
        }
        try f.expectClean()
    }

    @Test(arguments: LargeFileTests.names)
    func sparseTenGiB(_ backend: String) throws {
        let f = try fixture(backend)
        defer { f.close() }
        let fs = f.fs
        let tenGiB: UInt64 = 10 << 30
        let file = try fs.create(.root, FileSystem.rootInode, n("sparse"), mode: 0o644)
        try fs.write(.root, file.ino, offset: 0, n("head"))
        try fs.write(.root, file.ino, offset: tenGiB - 4, n("tail"))
        try fs.write(.root, file.ino, offset: 5 << 30, n("middle"))
        #expect(try fs.getattr(file.ino).size == tenGiB)
        #expect(UInt64(try chunkCount(fs.store)) == 3, "only written chunks take space")
        #expect(try fs.read(.root, file.ino, offset: tenGiB - 4, count: 100) == ReadResult(data: n("tail"), eof: true))
        #expect(try fs.read(.root, file.ino, offset: 0, count: 6).data == n("head") + [0, 0])
        #expect(try fs.read(.root, file.ino, offset: (5 << 30) - 2, count: 8).data == [0, 0] + n("middle"))
        #expect(try fs.read(.root, file.ino, offset: 7 << 30, count: 1 << 20).data.allSatisfy { $0 == 0 })
        // Truncate to zero is one batch (a shrink mark); the reclaimer frees the chunks.
        try fs.setattr(.root, file.ino, SetAttributes(size: 0))
        #expect(try fs.read(.root, file.ino, offset: 0, count: 10) == ReadResult(data: [], eof: true))
        try fs.setattr(.root, file.ino, SetAttributes(size: tenGiB))
        #expect(try fs.read(.root, file.ino, offset: tenGiB - 4, count: 4).data == [0, 0, 0, 0], "hidden chunks stay hidden")
        #expect(try fs.read(.root, file.ino, offset: 0, count: 4).data == [0, 0, 0, 0])
        try f.expectClean("with hidden chunks")
        try fs.pool.reclaimNow()
        #expect(UInt64(try chunkCount(fs.store)) == 0)
        try f.expectClean()
    }

    @Test(arguments: LargeFileTests.names)
    func overwritesAcrossChunkBoundariesMatchAModel(_ backend: String) throws {
        let f = try fixture(backend)
        defer { f.close() }
        let fs = f.fs
        let seed = TestSeed.resolve("overwritesAcrossChunkBoundariesMatchAModel")
        var random = SeededGenerator(seed: seed)
        let cs = fs.chunkSize
        let file = try fs.create(.root, FileSystem.rootInode, n("f"), mode: 0o644)
        var model: [UInt8] = []
        for step in 0..<200 {
            let offset = Int.random(in: 0...(8 * cs), using: &random)
            switch Int.random(in: 0..<5, using: &random) {
            case 0:
                let size = Int.random(in: 0...(8 * cs), using: &random)
                try fs.setattr(.root, file.ino, SetAttributes(size: UInt64(size)))
                if size < model.count { model.removeSubrange(size...) } else { model += [UInt8](repeating: 0, count: size - model.count) }
            case 1:
                try fs.pool.reclaimNow()
            default:
                let length = Int.random(in: 1...(3 * cs), using: &random)
                let data = (0..<length).map { _ in UInt8.random(in: 0...3, using: &random) }
                try fs.write(.root, file.ino, offset: UInt64(offset), data)
                if model.count < offset + length { model += [UInt8](repeating: 0, count: offset + length - model.count) }
                model.replaceSubrange(offset..<(offset + length), with: data)
            }
            let read = try fs.read(.root, file.ino, offset: 0, count: 16 * cs)
            #expect(read.data == model, "seed \(seed) step \(step)")
            if read.data != model { break }
        }
        try fs.pool.reclaimNow()
        try f.expectClean("seed \(seed)")
        #expect(try fs.pool.storedBytes == f.fsck().storedBytes)
    }

    @Test(arguments: LargeFileTests.names)
    func truncateInTheMiddleOfAChunk(_ backend: String) throws {
        let f = try fixture(backend)
        defer { f.close() }
        let fs = f.fs
        let cs = fs.chunkSize
        let data = [UInt8](repeating: 0x5A, count: 4 * cs)
        let file = try fs.create(.root, FileSystem.rootInode, n("f"), mode: 0o644)
        try fs.write(.root, file.ino, offset: 0, data)
        let cut = UInt64(cs + cs / 2 + 3)
        try fs.setattr(.root, file.ino, SetAttributes(size: cut))
        #expect(try fs.read(.root, file.ino, offset: 0, count: 8 * cs).data == Array(data[0..<Int(cut)]))
        // Growing again shows zeros past the cut, never the old bytes.
        try fs.setattr(.root, file.ino, SetAttributes(size: UInt64(4 * cs)))
        let grown = try fs.read(.root, file.ino, offset: 0, count: 8 * cs).data
        #expect(grown == Array(data[0..<Int(cut)]) + [UInt8](repeating: 0, count: 4 * cs - Int(cut)))
        // A write past the cut after a shrink, before reclaim, is not hidden by the mark.
        try fs.write(.root, file.ino, offset: UInt64(3 * cs), [1, 2, 3])
        #expect(try fs.read(.root, file.ino, offset: UInt64(3 * cs), count: 4).data == [1, 2, 3, 0])
        try f.reopen()
        try f.fs.pool.reclaimNow()
        #expect(try f.fs.read(.root, file.ino, offset: UInt64(3 * cs), count: 4).data == [1, 2, 3, 0])
        #expect(UInt64(try chunkCount(f.fs.store)) == 3)
        try f.expectClean()
    }
}
