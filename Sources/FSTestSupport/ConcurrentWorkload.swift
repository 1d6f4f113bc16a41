// A randomized workload from several threads over a small shared namespace, so
// operations collide often (same names, same files, renames across directories). Each
// thread's operation list comes from the seed; the interleaving is the scheduler's. Only
// POSIX errors a racing client can meet are accepted; anything else fails the run.

import FS
import KVTestSupport
import Synchronization

public struct ConcurrentWorkload: Sendable {
    public var threads = 4
    public var operationsPerThread = 400
    public var directories = 4
    public var names = 12
    public var seed: UInt64

    public init(seed: UInt64) { self.seed = seed }

    /// EPERM: a hard link to a name that is a directory at that moment.
    static let pinnedNames: [[UInt8]] = (0..<3).map { n("keep\($0)") }

    /// A listing that broke the readdir contract (not a POSIX error: the run fails).
    struct ListingError: Error, CustomStringConvertible {
        var description: String
    }

    static let tolerated: Set<FSError.Code> = [.ENOENT, .EEXIST, .ENOTEMPTY, .ENOTDIR, .EISDIR, .EINVAL, .ESTALE, .EPERM]

    /// Runs the workload on `fs`; returns the unexpected errors (empty when all went well)
    /// and the number of operations that succeeded.
    public func run(_ fs: FileSystem) throws -> (unexpected: [String], succeeded: Int) {
        var dirs: [UInt64] = [FileSystem.rootInode]
        for d in 0..<directories {
            dirs.append(try fs.mkdir(.root, FileSystem.rootInode, n("dir\(d)"), mode: 0o777).ino)
        }
        // Names outside the workload's namespace: they exist throughout, so every paged
        // listing must show each of them exactly once.
        for dir in dirs {
            for k in 0..<ConcurrentWorkload.pinnedNames.count {
                _ = try fs.create(.root, dir, ConcurrentWorkload.pinnedNames[k], mode: 0o644)
            }
        }
        let fixedDirs = dirs
        let unexpected = Mutex<[String]>([])
        let succeeded = Counter()
        let workload = self
        runOnThreads(threads) { thread in
            var random = SeededGenerator(seed: workload.seed &+ UInt64(thread) &* 0x9E37_79B9)
            for step in 0..<workload.operationsPerThread {
                let op = Int.random(in: 0..<12, using: &random)
                do {
                    try workload.perform(op, fs, fixedDirs, &random)
                    succeeded.add()
                } catch let error as FSError where ConcurrentWorkload.tolerated.contains(error.code) {
                    continue
                } catch {
                    unexpected.withLock { $0.append("thread \(thread) step \(step) op \(op): \(error)") }
                }
            }
        }
        return (unexpected.withLock { $0 }, succeeded.value)
    }

    private func perform(_ op: Int, _ fs: FileSystem, _ dirs: [UInt64], _ random: inout SeededGenerator) throws {
        let dir = dirs.randomElement(using: &random)!
        let name = n("n\(Int.random(in: 0..<names, using: &random))")
        let otherDir = dirs.randomElement(using: &random)!
        let otherName = n("n\(Int.random(in: 0..<names, using: &random))")
        let chunk = fs.chunkSize
        switch op {
        case 0, 1:
            _ = try fs.create(.root, dir, name, mode: 0o644, exclusive: Bool.random(using: &random))
        case 2:
            let file = try fs.lookup(.root, dir, name)
            let offset = UInt64.random(in: 0...UInt64(4 * chunk), using: &random)
            let length = Int.random(in: 1...(2 * chunk), using: &random)
            _ = try fs.write(.root, file.ino, offset: offset, [UInt8](repeating: UInt8(truncatingIfNeeded: offset), count: length))
        case 3:
            let file = try fs.lookup(.root, dir, name)
            _ = try fs.read(.root, file.ino, offset: UInt64.random(in: 0...UInt64(4 * chunk), using: &random), count: chunk)
        case 4:
            let file = try fs.lookup(.root, dir, name)
            try fs.setattr(.root, file.ino, SetAttributes(size: UInt64.random(in: 0...UInt64(3 * chunk), using: &random)))
        case 5:
            try fs.unlink(.root, dir, name)
        case 6:
            _ = try fs.mkdir(.root, dir, name, mode: 0o755)
        case 7:
            try fs.rmdir(.root, dir, name)
        case 8, 9:
            try fs.rename(.root, dir, name, otherDir, otherName)
        case 10:
            let file = try fs.lookup(.root, dir, name)
            _ = try fs.link(.root, file.ino, otherDir, otherName)
        default:
            // Cookies strictly increase across pages (no entry is returned twice; a name
            // removed and created again meanwhile is a new entry with a new cookie), and
            // every pinned name, which exists throughout, appears exactly once.
            var cookie: UInt64 = 0
            var listed: [[UInt8]] = []
            while true {
                let page = try fs.readdir(.root, dir, after: cookie, limit: 3)
                for entry in page.entries {
                    guard entry.cookie > cookie else {
                        throw ListingError(description: "directory \(dir): cookie \(entry.cookie) after \(cookie)")
                    }
                    cookie = entry.cookie
                    listed.append(entry.name)
                }
                if page.eof || page.entries.isEmpty { break }
            }
            for pinned in Self.pinnedNames where listed.filter({ $0 == pinned }).count != 1 {
                let count = listed.filter { $0 == pinned }.count
                throw ListingError(description: "directory \(dir): \(String(decoding: pinned, as: UTF8.self)) listed \(count) times")
            }
        }
    }
}
