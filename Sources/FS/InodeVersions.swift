// Where a handle last found each inode's record. A dataset with snapshots reads an inode
// record with a search over its versions (one firstVersion per gap); knowing the version,
// the read is one point get, as on a dataset without snapshots.
//
// Sound because an entry can only be wrong by naming a version that is no longer the
// newest visible record of the inode, and a newer visible record appears only
//   - by a commit at the head, which notes the head here for every inode it touches;
//   - by a change of the handle's view, which shows versions the old view did not (a
//     rollback to a snapshot on another branch can show records newer than those
//     remembered). A change keeps an entry only if the new view sees its version and shows
//     no version newer than it that the old view did not show: every version both views
//     show above it held no record of the inode, or the old view would have found that
//     one. A new head is exempt: heads are made fresh, empty, when a snapshot or a
//     rollback moves the view. So a snapshot keeps the whole map, as does a view that
//     only lost versions.
// The collector moves records to newer versions only by deleting the old key in the same
// batch, so a stale version misses and the read searches from the head. A read fills an
// entry only if no commit or view change was noted since it began (the generation).

import Synchronization

final class InodeVersions: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var versions: [UInt64: UInt64] = [:]
    }

    private let state = Mutex(State())
    /// Entries kept at most; the map starts over when full.
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// The version to probe for `ino` (0 when unknown) and the generation to fill with.
    func guess(_ ino: UInt64) -> (version: UInt64, generation: UInt64) {
        state.withLock { ($0.versions[ino] ?? 0, $0.generation) }
    }

    /// Notes that `ino`'s record was found at `version` by a read that began at
    /// `generation`; ignored when something changed since.
    func found(_ ino: UInt64, at version: UInt64, generation: UInt64) {
        guard capacity > 0 else { return }
        state.withLock { s in
            guard s.generation == generation, s.versions[ino] != version else { return }
            if s.versions.count >= capacity { s.versions.removeAll(keepingCapacity: true) }
            s.versions[ino] = version
        }
    }

    /// A commit at `head` wrote the records of `inodes` (live, whiteout or deleted).
    func committed(_ inodes: Set<UInt64>, at head: UInt64) {
        state.withLock { s in
            s.generation &+= 1
            guard capacity > 0 else { return }
            for ino in inodes {
                if s.versions.count >= capacity { s.versions.removeAll(keepingCapacity: true) }
                s.versions[ino] = head
            }
        }
    }

    /// The view changed: nothing known holds any more.
    func reset() {
        state.withLock { s in
            s.generation &+= 1
            s.versions.removeAll()
        }
    }

    /// The view moved from `old` to `new`: keeps the entries that still hold (see above).
    /// O(1) for a snapshot (a fresh head on top of the old view) and for a view that only
    /// lost versions (the collector merged one away: a remembered version that went
    /// misses, and the read searches); otherwise one pass over the map.
    func moved(from old: VersionView, to new: VersionView) {
        let snapshot = new.head > old.head && new.ancestors == [old.head] + old.ancestors
        let shrank = new.head == old.head && Set(new.ancestors).isSubset(of: old.ancestors)
        if snapshot || shrank {
            state.withLock { $0.generation &+= 1 }
            return
        }
        let shown = Set([old.head] + old.ancestors)
        var newest: UInt64 = 0  // the newest version only the new view shows, but a fresh head
        for version in [new.head] + new.ancestors where !shown.contains(version) {
            if version == new.head { continue }
            newest = max(newest, version)
        }
        state.withLock { s in
            s.generation &+= 1
            s.versions = s.versions.filter { new.sees($0.value) && $0.value > newest }
        }
    }

    var count: Int { state.withLock { $0.versions.count } }
}
