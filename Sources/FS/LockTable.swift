// Per-inode lock striping: an operation locks the stripes of every inode it changes, in
// ascending stripe order (so two operations never wait on each other in a cycle).

import Foundation

final class LockTable: @unchecked Sendable {
    // NSLock is thread-safe; the array itself is never mutated after init.
    private let stripes: [NSLock]

    init(count: Int = 256) {
        stripes = (0..<count).map { _ in NSLock() }
    }

    func withLocks<R>(_ inodes: [UInt64], _ body: () throws(FSError) -> R) throws(FSError) -> R {
        let indices = Set(inodes.map { Int($0 % UInt64(stripes.count)) }).sorted()
        for i in indices { stripes[i].lock() }
        defer { for i in indices.reversed() { stripes[i].unlock() } }
        return try body()
    }
}

/// A plain lock whose body may throw FSError.
final class PlainLock: @unchecked Sendable {
    private let lock = NSLock()

    func withLock<R>(_ body: () throws(FSError) -> R) throws(FSError) -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}
