// Crash-point scenarios: for each named crash point, one operation on a prepared tree.
// The harness runs the operation with the point armed (the filesystem stops there),
// reopens the store, runs fsck, and compares the tree with the state before and after
// the operation: a stop before the commit must leave the operation fully absent, a stop
// after it fully applied. Reclaim points must leave a queue that completes after reopen.

import Engine
import FS
import Testing

public struct CrashPointCase: Sendable, CustomTestStringConvertible {
    public let point: String
    public let factory: any KVBackendFactory
    public var testDescription: String { "\(factory.name): \(point)" }

    public static func all(for factory: any KVBackendFactory) -> [CrashPointCase] {
        CrashPoints.all.map { CrashPointCase(point: $0, factory: factory) }
    }

    static var options: FSOptions {
        var options = FSFixture.testOptions
        options.reclaimBatchSize = 2
        return options
    }

    public func run() throws {
        let op = String(point.split(separator: ".")[0])
        if op.hasPrefix("reclaim") { return try runReclaim() }
        let before = try FSFixture(factory, options: Self.options)
        defer { before.close() }
        try Self.prepare(before.fs)
        let expectedBefore = try fingerprint(before.fs)

        let after = try FSFixture(factory, options: Self.options)
        defer { after.close() }
        try Self.prepare(after.fs)
        try Self.perform(op, after.fs)
        let expectedAfter = try fingerprint(after.fs)
        #expect(expectedBefore != expectedAfter, "\(op) changes the tree")

        let crashed = try FSFixture(factory, options: Self.options)
        defer { crashed.close() }
        try Self.prepare(crashed.fs)
        crashed.fs.crashPoints.arm(point)
        #expect(throws: FSError.self, "the operation stops at \(point)") { try Self.perform(op, crashed.fs) }
        #expect(crashed.fs.crashPoints.stopped)
        try crashed.reopen()
        try crashed.expectClean("after stopping at \(point)")
        let state = try fingerprint(crashed.fs)
        if point.hasSuffix("before-commit") {
            #expect(state == expectedBefore, "stopped before its commit, \(op) must be absent")
        } else {
            #expect(state == expectedAfter, "stopped after its commit, \(op) must be applied")
        }
        try crashed.fs.pool.reclaimNow()
        try crashed.expectClean("after reclaim following \(point)")
    }

    private func runReclaim() throws {
        let f = try FSFixture(factory, options: Self.options)
        defer { f.close() }
        try Self.prepare(f.fs)
        try f.fs.unlink(.root, FileSystem.rootInode, n("f"))
        try f.fs.setattr(.root, try f.fs.lookup(.root, FileSystem.rootInode, n("g")).ino, SetAttributes(size: 5))
        let expected = try fingerprint(f.fs)
        f.fs.crashPoints.arm(point)
        #expect(throws: FSError.self) { try f.fs.pool.reclaimNow() }
        try f.reopen()
        try f.expectClean("after stopping at \(point)")
        #expect(try fingerprint(f.fs) == expected)
        try f.fs.pool.reclaimNow()
        #expect(UInt64(try chunkCount(f.fs.store)) == 2, "only the first chunks of g and d/x are left")
        try f.expectClean("after the reclaim resumed")
    }

    /// Root: d/ (holding x), e/ (empty), f (4 chunks of data), g (3 chunks).
    static func prepare(_ fs: FileSystem) throws {
        let root = FileSystem.rootInode
        let d = try fs.mkdir(.root, root, n("d"), mode: 0o755)
        _ = try fs.mkdir(.root, root, n("e"), mode: 0o755)
        let x = try fs.create(.root, d.ino, n("x"), mode: 0o644)
        try fs.write(.root, x.ino, offset: 0, n("x data"))
        let f = try fs.create(.root, root, n("f"), mode: 0o644)
        try fs.write(.root, f.ino, offset: 0, randomBytes(3 * fs.chunkSize + 100, seed: 11))
        let g = try fs.create(.root, root, n("g"), mode: 0o600)
        try fs.write(.root, g.ino, offset: 0, randomBytes(2 * fs.chunkSize + 1, seed: 12))
    }

    static func perform(_ op: String, _ fs: FileSystem) throws {
        let root = FileSystem.rootInode
        let d = try fs.lookup(.root, root, n("d")).ino
        let f = try fs.lookup(.root, root, n("f")).ino
        switch op {
        case "create": _ = try fs.create(.root, d, n("new"), mode: 0o644, exclusive: true)
        case "mkdir": _ = try fs.mkdir(.root, d, n("newdir"), mode: 0o755)
        case "symlink": _ = try fs.symlink(.root, d, n("link"), target: n("../f"))
        case "mknod": _ = try fs.mknod(.root, d, n("fifo"), type: .fifo, mode: 0o644)
        case "link": _ = try fs.link(.root, f, d, n("f2"))
        case "unlink": try fs.unlink(.root, root, n("f"))
        case "rmdir": try fs.rmdir(.root, root, n("e"))
        case "rename": try fs.rename(.root, d, n("x"), try fs.lookup(.root, root, n("e")).ino, n("moved"))
        case "write": try fs.write(.root, f, offset: UInt64(fs.chunkSize - 10), [UInt8](repeating: 0xAB, count: fs.chunkSize + 20))
        case "setattr": try fs.setattr(.root, f, SetAttributes(size: UInt64(fs.chunkSize + 17)))
        default: Issue.record("no scenario for \(op)")
        }
    }

    /// The tree as text: paths, types, modes, link counts, sizes, data and targets.
}
