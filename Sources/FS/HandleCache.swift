// What a dataset or snapshot handle read, kept decoded so that the reads every NFS call
// repeats skip the key, the store's lookup and the decoding: inodes (a directory's at
// each LOOKUP, a file's at each GETATTR, ACCESS and READ) and directory entries (the
// name each LOOKUP, REMOVE and RENAME resolves, absent names included). Direct-mapped: a
// slot holds one key's value or nothing; inode numbers, handed out in sequence, index
// their slots directly, so recent files do not collide.
//
// Sound because every change to an inode record or an entry passes through
// `Pool.commit` after it is applied to the store, while the changing operation holds the
// lock of the inode (of the directory, for an entry):
//   - a batch of the handle's dataset stores what it wrote (FSBatch.inodes and
//     .entries) in its slots, so the next read finds the new value without a miss;
//   - a batch of no dataset (the collector moving records between versions and raising
//     inodes' content versions) empties the slots of every inode whose record it writes,
//     and every entry, in every handle;
//   - a change of the handle's view (a snapshot, a rollback, a merge, a deletion) empties
//     every slot; a replica, whose records change under it, caches nothing.
// A read that misses fills its slot only when none of this happened to the slot since it
// began: it takes a ticket (the cache's epoch and the slot's stamp) before it reads its
// view and the store, and each of the above moves one of them. A commit stores its values
// after applying them and before its operation releases the lock, so two writers of one
// key store in their order. A new inode's record is the exception: its creator holds only
// the directory's lock, and once the batch is applied another caller may find the inode,
// lock it and commit a change before the creator's commit gets to the cache; so that
// commit forgets the new inode's slot instead (FSBatch.putNewInode).

import Engine

protocol CacheKey: Equatable, Sendable {
    /// Spreads keys over the slots (any bits; the cache keeps the low ones).
    var slotHash: Int { get }
}

extension UInt64: CacheKey {
    var slotHash: Int { Int(truncatingIfNeeded: self) }
}

/// A directory entry's key: the directory and the name.
struct EntryKey: CacheKey {
    var dir: UInt64
    var name: [UInt8]

    var slotHash: Int {
        // FNV-1a over the name from the directory's number, then the high bits folded in.
        var h = dir &* 0x9E37_79B9_7F4A_7C15
        for byte in name { h = (h ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }
}

typealias InodeCache = HandleCache<UInt64, Inode>
/// An entry absent from its directory is cached as nil.
typealias EntryCache = HandleCache<EntryKey, DirEntry?>

final class HandleCache<Key: CacheKey, Value: Sendable>: Sendable {
    struct Ticket {
        fileprivate let epoch: UInt64
        fileprivate let stamp: UInt64
    }

    private struct Slot {
        var stamp: UInt64 = 0
        var held: (key: Key, value: Value)?
    }

    private struct State {
        var epoch: UInt64 = 0
        /// Allocated at the first fill: a handle never read keeps none.
        var slots: [Slot] = []
    }

    private let state = Locked(State())
    /// A power of two, or 0 when the cache is off.
    let capacity: Int

    /// `entries` rounded down to a power of two; 0 turns the cache off.
    init(entries: Int) {
        capacity = entries > 0 ? 1 << (Int.bitWidth - 1 - entries.leadingZeroBitCount) : 0
    }

    private func index(_ key: Key) -> Int { key.slotHash & (capacity - 1) }

    /// The cached value of `key`, or the ticket to fill its slot with after reading it.
    func lookup(_ key: Key) -> (value: Value?, ticket: Ticket) {
        state.withLock { s in
            guard !s.slots.isEmpty else { return (nil, Ticket(epoch: s.epoch, stamp: 0)) }
            let slot = s.slots[index(key)]
            let ticket = Ticket(epoch: s.epoch, stamp: slot.stamp)
            if let held = slot.held, held.key == key { return (held.value, ticket) }
            return (nil, ticket)
        }
    }

    /// Keeps `value`, read from the store after `ticket` was taken, unless its slot or
    /// the whole cache changed since.
    func fill(_ key: Key, _ value: Value, _ ticket: Ticket) {
        guard capacity > 0 else { return }
        state.withLock { s in
            guard s.epoch == ticket.epoch else { return }
            if s.slots.isEmpty { s.slots = Array(repeating: Slot(), count: capacity) }
            let i = index(key)
            guard s.slots[i].stamp == ticket.stamp else { return }
            s.slots[i].held = (key, value)
        }
    }

    /// A batch, applied, wrote these values, in order; nil forgets the key.
    func apply(_ changes: [(key: Key, value: Value?)]) {
        guard capacity > 0, !changes.isEmpty else { return }
        state.withLock { s in
            // No slots yet (none filled, or emptied by a reset): nothing to store, but a read
            // that began before this change holds a ticket of this epoch and must not fill.
            guard !s.slots.isEmpty else {
                s.epoch &+= 1
                return
            }
            for (key, value) in changes {
                let i = index(key)
                s.slots[i].stamp &+= 1
                if let value {
                    s.slots[i].held = (key, value)
                } else if s.slots[i].held?.key == key {
                    s.slots[i].held = nil
                }
            }
        }
    }

    /// Values of `keys` changed in a way the cache cannot follow: forgets them.
    func forget(_ keys: [Key]) { apply(keys.map { ($0, nil) }) }

    /// Nothing cached holds any more (the view changed).
    func reset() {
        state.withLock { s in
            s.epoch &+= 1
            s.slots = []
        }
    }

    /// The keys cached now, with their values (for tests).
    var cached: [(key: Key, value: Value)] { state.withLock { s in s.slots.compactMap(\.held) } }
}
