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
        // Sorted and without repeats; an operation locks one to four inodes, so an
        // insertion sort of one small array (no set to hash into).
        var indices: [Int] = []
        indices.reserveCapacity(inodes.count)
        for ino in inodes {
            let stripe = Int(ino % UInt64(stripes.count))
            var at = indices.count
            while at > 0, indices[at - 1] > stripe { at -= 1 }
            if at > 0, indices[at - 1] == stripe { continue }
            indices.insert(stripe, at: at)
        }
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

/// A dataset's barrier: operations hold it shared from reading the head version until
/// their batch is applied; snapshot, rollback, delete and property changes hold it
/// exclusively, so they see no operation half done. Writer-preferring: a waiting
/// exclusive holder stops new shared holders, so a snapshot never starves.
final class Barrier: @unchecked Sendable {
    // All fields are guarded by `condition`.
    private let condition = NSCondition()
    private var shared = 0
    private var exclusive = false
    private var waitingExclusive = 0

    func withShared<R>(_ body: () throws(FSError) -> R) throws(FSError) -> R {
        condition.lock()
        while exclusive || waitingExclusive > 0 { condition.wait() }
        shared += 1
        condition.unlock()
        defer {
            condition.lock()
            shared -= 1
            if shared == 0 { condition.broadcast() }
            condition.unlock()
        }
        return try body()
    }

    func lockExclusive() {
        condition.lock()
        waitingExclusive += 1
        while exclusive || shared > 0 { condition.wait() }
        waitingExclusive -= 1
        exclusive = true
        condition.unlock()
    }

    func unlockExclusive() {
        condition.lock()
        exclusive = false
        condition.broadcast()
        condition.unlock()
    }
}
