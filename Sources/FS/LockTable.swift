// Per-inode lock striping: an operation locks the stripes of every inode it changes, in
// ascending stripe order (so two operations never wait on each other in a cycle).

import Foundation

final class LockTable: @unchecked Sendable {
    // NSLock is thread-safe; the array itself is never mutated after init.
    private let stripes: [NSLock]
    /// Per stripe, how many holders that may have changed its inodes have let it go; each
    /// read and written only under its stripe's lock (PreparedReads).
    private let generations: UnsafeMutablePointer<UInt64>

    init(count: Int = 256) {
        stripes = (0..<count).map { _ in NSLock() }
        generations = .allocate(capacity: count)
        generations.initialize(repeating: 0, count: count)
    }

    deinit { generations.deallocate() }

    /// Runs `body` holding the stripes of `inodes`. With `change` (the body may change
    /// what reads of their bytes return: data, size, or the inodes themselves) each
    /// stripe's generation moves on before it is let go.
    func withLocks<R>(_ inodes: [UInt64], change: Bool = true, _ body: () throws(FSError) -> R) throws(FSError) -> R {
        // Sorted and without repeats; an operation locks one to four inodes, so an
        // insertion sort of one small array (no set to hash into).
        var indices: [Int] = []
        indices.reserveCapacity(inodes.count)
        for ino in inodes {
            let stripe = self.stripe(ino)
            var at = indices.count
            while at > 0, indices[at - 1] > stripe { at -= 1 }
            if at > 0, indices[at - 1] == stripe { continue }
            indices.insert(stripe, at: at)
        }
        for i in indices { stripes[i].lock() }
        defer {
            for i in indices.reversed() {
                if change { generations[i] &+= 1 }
                stripes[i].unlock()
            }
        }
        return try body()
    }

    /// The generation of `ino`'s stripe: it moves on whenever a holder that may have changed
    /// `ino` lets the stripe go, so two equal readings mean `ino` did not change between
    /// them. REQUIRES: the caller holds `ino`'s stripe (inside `withLocks`).
    func generation(_ ino: UInt64) -> UInt64 { generations[stripe(ino)] }

    private func stripe(_ ino: UInt64) -> Int { Int(ino % UInt64(stripes.count)) }
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
