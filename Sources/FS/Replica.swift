// A pool on a read-only replica store (KVBackendFactory.openReplica): the writer runs
// elsewhere, so the forest, the registry and the statistics this pool holds in memory
// go stale as the writer works. Every `replicaPollMilliseconds` a background thread
// catches the store up and, when it moved, loads them again from one consistent read view
// and brings every open handle up to date: a dataset whose head moved (a snapshot, a
// rollback) shows its new head, a deleted one answers ESTALE, a new one can be opened.
// What a handle remembered of where inode records live came from the writer's commits
// and is forgotten. Clients see the writer's changes within the poll interval; an
// operation that runs while the replica moves may see the state before or after (each
// KV read is consistent, an operation of several reads is not pinned to one).

import Engine
import Foundation
import Synchronization

extension Pool {
    /// For a pool on a replica: catches the store up with the writer and, when it showed
    /// something new, reloads the pool's state and refreshes every handle. Returns whether
    /// it did. Other pools return false.
    @discardableResult
    public func followWriter() throws(FSError) -> Bool {
        guard store.isReplica else { return false }
        let generation = try kv { try store.catchUp() }
        guard followedGeneration.withLock({ $0 }) != generation else { return false }
        let view = try kv { try store.readView() }
        defer { view.close() }
        let loaded = try Self.load(view)
        state.withLock { $0 = loaded }
        followedGeneration.withLock { $0 = generation }
        usedCache.withLock { $0.removeAll() }
        refreshHandles()
        for handle in handles.withLock({ Array($0.values) }) { handle.inodeVersions.reset() }
        return true
    }

    func startFollowing() {
        let interval = Double(options.replicaPollMilliseconds) / 1000
        follower.start(name: "zerofs-follow", interval: interval, runAtOnce: false) { [weak self] in
            // A failed round (the object store unreachable, or the store made anew in its
            // place) is tried again next time; the replica keeps serving what it showed.
            // Each new failure is told once on standard error.
            guard let self else { return }
            do {
                try followWriter()
                followFailure.withLock { $0 = nil }
            } catch {
                let message = "\(error)"
                let told = followFailure.withLock { last -> Bool in
                    defer { last = message }
                    return last == message
                }
                if !told {
                    printError("zerofs: replica: catching up with the writer failed (serving what it showed): \(message)")
                }
            }
        }
    }
}
