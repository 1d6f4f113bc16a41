// The POSIX-semantics suite (in the spirit of pjdfstest), written once and run on every
// backend:
//
//   @Test(arguments: POSIXSuite.cases(for: RocksDBBackendFactory()))
//   func posix(_ check: FSCase) throws { try check.run() }
//
// Every case ends with fsck, so a case that leaves the store inconsistent fails.

import Engine
import FS

public struct FSCase: Sendable, CustomTestStringConvertible {
    public let name: String
    public let factory: any KVBackendFactory
    let body: @Sendable (FSFixture) throws -> Void

    public var testDescription: String { "\(factory.name): \(name)" }

    public func run() throws {
        let fixture = try FSFixture(factory)
        defer { fixture.close() }
        try body(fixture)
        try fixture.fs.pool.reclaimNow()
        try fixture.expectClean("after \(name)")
    }
}

import Testing

public enum POSIXSuite {
    public static func cases(for factory: any KVBackendFactory) -> [FSCase] {
        all.map { FSCase(name: $0.0, factory: factory, body: $0.1) }
    }

    typealias Body = @Sendable (FSFixture) throws -> Void
    static let all: [(String, Body)] = [
        ("create, lookup and getattr", createAndLookup),
        ("exclusive and plain create", exclusiveCreate),
        ("names: length, bytes, '/', NUL, dots", names),
        ("mkdir, rmdir and directory link counts", mkdirRmdir),
        ("symlink and readlink", symlinks),
        ("mknod: FIFOs, sockets, devices", mknod),
        ("hard links", hardLinks),
        ("unlink", unlink),
        ("rename: files", renameFiles),
        ("rename: directories", renameDirectories),
        ("permissions: owner, group, other, root", permissions),
        ("permissions: sticky and setgid directories", stickyAndSetgid),
        ("setattr: mode, owner, group, times", setattrRules),
        ("timestamps move as POSIX says", timestamps),
        ("read and write: holes, extension, EOF", readWrite),
        ("bad input gives POSIX errors", badInput),
        ("readdir cookies are stable across changes", readdirCookies),
        ("statfs accounting is exact", statfsAccounting),
        ("everything survives a reopen", reopen),
        ("relatime", relatime),
        ("chunk compression on and off", compression),
        ("reclaim of a deleted file resumes after a restart", reclaimResumes),
    ]
}
