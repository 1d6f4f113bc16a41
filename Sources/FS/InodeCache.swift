// Decoded inode records of one handle's view, so that the reads every NFS call repeats
// (a directory's inode at each LOOKUP, a file's at each GETATTR, ACCESS and READ) skip the
// key, the store's lookup and the decoding. Direct-mapped by inode number (numbers are
// handed out in sequence, so neighbours share no slot); a slot holds one inode or none.
//
// Sound because every change to an inode record passes through `Pool.commit` after it is
// applied to the store, while the changing operation holds the inode's lock:
//   - a batch of the handle's dataset stores what it wrote (FSBatch.inodes) in its slots,
//     so the next read finds the new record without a miss;
//   - a batch of no dataset (the collector moving records between versions and raising
//     their content versions, the reclaimer at a frozen version) empties the slots of
//     every inode whose record it writes, in every handle;
//   - a change of the handle's view (a snapshot, a rollback, a merge, a deletion, a
//     replica catching up) empties every slot.
// A read that misses fills its slot only when neither happened since it began: it takes a
// ticket (the cache's epoch and the slot's stamp) before it reads the store, and each of
// the above moves one of them. A commit stores its records after applying them and before
// its operation releases the lock, so two writers of one inode store in their order.

import Engine

final class InodeCache: Sendable {
    struct Ticket {
        fileprivate let epoch: UInt64
        fileprivate let stamp: UInt64
    }

    private struct Slot {
        var stamp: UInt64 = 0
        var inode: Inode?
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

    private func index(_ ino: UInt64) -> Int { Int(truncatingIfNeeded: ino) & (capacity - 1) }

    /// The cached inode `ino`, or the ticket to fill its slot with after reading it.
    func lookup(_ ino: UInt64) -> (inode: Inode?, ticket: Ticket) {
        state.withLock { s in
            guard !s.slots.isEmpty else { return (nil, Ticket(epoch: s.epoch, stamp: 0)) }
            let slot = s.slots[index(ino)]
            if let inode = slot.inode, inode.ino == ino { return (inode, Ticket(epoch: s.epoch, stamp: slot.stamp)) }
            return (nil, Ticket(epoch: s.epoch, stamp: slot.stamp))
        }
    }

    /// Keeps `inode`, read from the store after `ticket` was taken, unless its slot or the
    /// whole cache changed since.
    func fill(_ inode: Inode, _ ticket: Ticket) {
        guard capacity > 0 else { return }
        state.withLock { s in
            guard s.epoch == ticket.epoch else { return }
            if s.slots.isEmpty { s.slots = Array(repeating: Slot(), count: capacity) }
            let i = index(inode.ino)
            guard s.slots[i].stamp == ticket.stamp else { return }
            s.slots[i].inode = inode
        }
    }

    /// A batch of this handle's dataset, applied, wrote these records (nil: removed), in order.
    func committed(_ records: [(ino: UInt64, inode: Inode?)]) {
        guard capacity > 0, !records.isEmpty else { return }
        state.withLock { s in
            guard !s.slots.isEmpty else { return }
            for (ino, inode) in records {
                let i = index(ino)
                s.slots[i].stamp &+= 1
                if let inode {
                    s.slots[i].inode = inode
                } else if s.slots[i].inode?.ino == ino {
                    s.slots[i].inode = nil
                }
            }
        }
    }

    /// Records of `inodes` changed in a way the cache cannot follow: forgets them.
    func forget(_ inodes: [UInt64]) {
        guard capacity > 0, !inodes.isEmpty else { return }
        state.withLock { s in
            guard !s.slots.isEmpty else { return }
            for ino in inodes {
                let i = index(ino)
                s.slots[i].stamp &+= 1
                if s.slots[i].inode?.ino == ino { s.slots[i].inode = nil }
            }
        }
    }

    /// The view changed: nothing cached holds any more.
    func reset() {
        state.withLock { s in
            s.epoch &+= 1
            s.slots = []
        }
    }

    /// The inodes cached now (for tests).
    var cachedInodes: [UInt64] { state.withLock { s in s.slots.compactMap { $0.inode?.ino } } }
}
