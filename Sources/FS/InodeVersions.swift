// Where a handle last found each inode's record. A dataset with snapshots reads an inode
// record with a search over its versions (one firstVersion per gap); knowing the version,
// the read is one point get, as on a dataset without snapshots.
//
// Sound because an entry can only be wrong by naming a version that is no longer the
// newest visible record of the inode, and a newer visible record appears only
//   - by a commit at the head, which notes the head here for every inode it touches;
//   - by a change of the handle's view that brings in versions it did not have. A
//     snapshot brings only a fresh, empty head; a rollback to a snapshot of this branch
//     (an ancestor) brings only that, and drops the versions in between; the collector
//     only drops versions. Those keep every entry: one naming a version that left the view
//     is no guess (the read checks that its view sees a guess). Any other change (a
//     rollback to a snapshot on another branch, which shows records newer than ones
//     remembered on this one) empties the map.
// The collector moves a record only by deleting the old key in the same batch (down into
// a child, or up into a dead parent when absorbing), so a stale version misses and the
// read searches from the head. A read fills an entry only if no commit or view change
// was noted since it began (the generation).

import Engine
import Synchronization

final class InodeVersions: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var versions: [UInt64: UInt64] = [:]
    }

    private let state = Locked(State())
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
    func committed(_ inodes: [UInt64], at head: UInt64) {
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

    /// The view moved from `old` to `new`. When `new` holds no version `old` did not,
    /// except a fresh head above all of them (a snapshot; a rollback to an ancestor; the
    /// collector merging versions away), every entry stays; any other change starts
    /// over. O(versions in the views).
    func moved(from old: VersionView, to new: VersionView) {
        let before = Set([old.head] + old.ancestors)
        if new.ancestors.allSatisfy(before.contains) && (new.head > old.head || before.contains(new.head)) {
            state.withLock { $0.generation &+= 1 }
        } else {
            reset()
        }
    }

    var count: Int { state.withLock { $0.versions.count } }
}
