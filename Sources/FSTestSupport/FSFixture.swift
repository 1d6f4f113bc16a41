// A filesystem on a fresh store of one backend, for one test: open, reopen (as after a
// restart or a crash), fsck, and short helpers for names, credentials and errors.

import Engine
import FS
import KVTestSupport
import Testing

public final class FSFixture: @unchecked Sendable {
    // Used by the single test that owns it (the FileSystem inside is thread-safe).
    public let harness: StoreHarness
    public let path: String
    public var options: FSOptions
    public private(set) var store: any KVBackend
    public private(set) var fs: FileSystem

    public init(_ factory: any KVBackendFactory, options: FSOptions = FSFixture.testOptions) throws {
        harness = StoreHarness(factory)
        path = harness.freshPath("fs")
        self.options = options
        store = try harness.open(path)
        fs = try FileSystem.open(store, options: options)
        // Every user may create at the top; cases build their own restricted directories.
        try fs.setattr(.root, FileSystem.rootInode, SetAttributes(mode: 0o777))
    }

    /// Tests drive the reclaimer themselves unless they ask for the thread.
    public static var testOptions: FSOptions {
        var options = FSOptions()
        options.backgroundReclaim = false
        return options
    }

    /// Closes and reopens the store and the filesystem. After a crash point the filesystem
    /// is not flushed: what the store holds is what a stopped process leaves.
    public func reopen() throws {
        try? fs.close()
        try store.close()
        store = try harness.open(path)
        fs = try FileSystem.open(store, options: options)
    }

    public func fsck() throws -> FsckReport { try Fsck.check(store) }

    /// Runs the reclaimer and the collector to the end, then records an issue naming every
    /// problem fsck finds, a version the collector left unpruned included.
    public func expectCleanAfterCollecting(_ context: String = "", sourceLocation: SourceLocation = #_sourceLocation) throws {
        try fs.pool.collectGarbage()
        let report = try Fsck.check(store, collectorIdle: true)
        #expect(report.problems == [], "fsck \(context)", sourceLocation: sourceLocation)
    }

    /// Records an issue naming every problem fsck finds, and every inode and entry
    /// the open filesystem's caches hold otherwise than the store.
    public func expectClean(_ context: String = "", sourceLocation: SourceLocation = #_sourceLocation) throws {
        let report = try fsck()
        #expect(report.problems == [], "fsck \(context)", sourceLocation: sourceLocation)
        let mismatches = try fs.cacheMismatches()
        #expect(mismatches == [], "caches \(context): \(mismatches)", sourceLocation: sourceLocation)
    }

    public func close() {
        try? fs.close()
        try? store.close()
        harness.cleanUp()
    }

    deinit { close() }
}

public func n(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Every name under `fs`'s root with its type, mode, link count, size, a hash of its data
/// and its symlink target: equal fingerprints mean equal trees.
public func fingerprint(_ fs: FileSystem) throws -> [String] {
    var lines: [String] = []
    func walk(_ dir: UInt64, _ path: String) throws {
        var cookie: UInt64 = 0
        while true {
            let page = try fs.readdir(.root, dir, after: cookie, limit: 50)
            for entry in page.entries {
                let node = try fs.getattr(entry.ino)
                let name = path + "/" + String(decoding: entry.name, as: UTF8.self)
                var line = "\(name) \(node.type) \(String(node.mode, radix: 8)) nlink \(node.nlink) size \(node.size)"
                if node.type == .regular {
                    let data = try fs.read(.root, node.ino, offset: 0, count: Int(node.size)).data
                    line += " data \(data.reduce(UInt64(14_695_981_039_346_656_037)) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 })"
                }
                if node.type == .symlink { line += " -> " + String(decoding: try fs.readlink(node.ino), as: UTF8.self) }
                lines.append(line)
                if node.type == .directory { try walk(node.ino, name) }
            }
            guard let last = page.entries.last, !page.eof else { break }
            cookie = last.cookie
        }
    }
    try walk(fs.root, "")
    return lines
}

/// The chunk entries in `store`, of every version.
public func chunkCount(_ store: any KVReader) throws -> Int {
    var count = 0
    try store.scan(.prefix([KeyKind.chunk.rawValue])) { _, _ in
        count += 1
        return true
    }
    return count
}

public enum Users {
    public static let root = Credentials.root
    public static let alice = Credentials(uid: 1000, gid: 1000)
    public static let bob = Credentials(uid: 1001, gid: 1001)
    /// In alice's group as a supplementary group.
    public static let carol = Credentials(uid: 1002, gid: 1002, groups: [1000])
}

/// Expects `body` to fail with `code`; records an issue otherwise.
public func expectErrno(
    _ code: FSError.Code, _ what: String = "", sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) {
    expectFailure(code, what, sourceLocation: sourceLocation, body) { (error: FSError) in error.code }
}

/// Expects `body` to fail with an error of type `E` whose `kind` is `expected`; records an
/// issue otherwise (success, another error type, another kind).
public func expectFailure<E: Error, K: Equatable>(
    _ expected: K, _ what: String, sourceLocation: SourceLocation, _ body: () throws -> Void, kind: (E) -> K
) {
    do {
        try body()
        Issue.record("expected \(expected) \(what), but it succeeded", sourceLocation: sourceLocation)
    } catch let error as E {
        #expect(kind(error) == expected, "\(what): \(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(expected) \(what), got \(error)", sourceLocation: sourceLocation)
    }
}

/// Bytes that compress poorly (seeded).
public func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var generator = SeededGenerator(seed: seed)
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
}
