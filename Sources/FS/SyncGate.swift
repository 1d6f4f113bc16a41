// Group commit for the FS: callers that need their applied batch durable share syncs.
// Each commit takes a sequence number when its batch is applied; a caller waits until a
// sync that started after its batch was applied has finished, or runs that sync itself.
// With N concurrent metadata operations, about two syncs serve all N, on every backend.
//
// Before its sync, the caller that runs it waits (briefly) for the changes in progress
// when it got there to apply their batches: they then share its sync instead of waiting
// for it to end and paying for a sync of their own. A lone operation never waits.
//
// A caller that answers later (the NFS server) need not wait at all: it runs its
// operation inside `DurabilityDeferral.deferring`, which hands it the sync the operation
// still needs, and passes that to `whenDurable` with what to do once it is durable (send
// the reply). If a thread serves callbacks, the callback joins its queue; if no sync
// runs, this thread runs syncs until no callback is left. So only the thread that syncs
// waits, and the others go on serving calls. A thread blocked in `waitDurable` (a
// dataset operation, a caller of the FS API) never serves callbacks: while it syncs,
// `whenDurable` waits for it like another waiter.

import Engine
import Foundation
import Synchronization

final class SyncGate: @unchecked Sendable {
    typealias Callback = (sequence: UInt64, then: @Sendable (FSError?) -> Void)

    // `applied`, `synced`, `syncing`, `serving` and `callbacks` are guarded by `condition`.
    private let condition = NSCondition()
    private var applied: UInt64 = 0
    private var synced: UInt64 = 0
    private var syncing = false
    /// The syncing thread serves `whenDurable`'s callbacks. Invariant: `callbacks` is
    /// empty unless `serving`.
    private var serving = false
    /// Callbacks of `whenDurable` not yet served, in arrival order.
    private var callbacks: [Callback] = []

    /// Changes that entered and left their locked section (`beginChange`, `endChange`).
    private let entered = Atomic<UInt64>(0)
    private let left = Atomic<UInt64>(0)
    /// True while a syncing caller waits on `drain` for changes in progress.
    private let draining = Atomic<Bool>(false)
    private let drain = NSCondition()
    /// The longest a sync waits for changes in progress.
    let gatherLimit: Duration

    init(gatherLimit: Duration = .microseconds(100)) {
        self.gatherLimit = gatherLimit
    }

    /// A change starts: its batch will be applied before the matching `endChange`.
    func beginChange() {
        entered.add(1, ordering: .sequentiallyConsistent)
    }

    /// A change has applied its batch, or given up.
    func endChange() {
        left.add(1, ordering: .sequentiallyConsistent)
        if draining.load(ordering: .sequentiallyConsistent) {
            drain.lock()
            drain.signal()
            drain.unlock()
        }
    }

    /// Waits until as many changes have ended as had begun on entry, or `gatherLimit`.
    private func gather() {
        let goal = entered.load(ordering: .sequentiallyConsistent)
        if left.load(ordering: .sequentiallyConsistent) >= goal { return }
        let limit = gatherLimit.components
        let deadline = Date().addingTimeInterval(Double(limit.seconds) + Double(limit.attoseconds) / 1e18)
        drain.lock()
        draining.store(true, ordering: .sequentiallyConsistent)
        while left.load(ordering: .sequentiallyConsistent) < goal {
            if !drain.wait(until: deadline) { break }
        }
        draining.store(false, ordering: .sequentiallyConsistent)
        drain.unlock()
    }

    /// Called under the commit lock, right after a batch is applied: its sequence number.
    func noteApplied() -> UInt64 {
        condition.lock()
        defer { condition.unlock() }
        applied += 1
        return applied
    }

    /// The sequence number of the last applied batch.
    var lastApplied: UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return applied
    }

    /// Returns once every batch up to `sequence` is durable. Never runs a callback of
    /// `whenDurable`: while this thread syncs, callers of `whenDurable` wait for it.
    func waitDurable(_ sequence: UInt64, _ sync: () throws(FSError) -> Void) throws(FSError) {
        condition.lock()
        while synced < sequence {
            if syncing {
                condition.wait()
                continue
            }
            syncing = true
            condition.unlock()
            // No callback waits while `serving` is false, so this sync serves none.
            let (result, _) = syncOnce(sync)
            condition.lock()
            syncing = false
            condition.broadcast()
            if case .failure(let error) = result {
                condition.unlock()
                throw error
            }
        }
        condition.unlock()
    }

    /// Calls `then` once every batch up to `sequence` is durable (nil) or a sync meant to
    /// cover it failed (its error): at once, after this thread's own syncs, or from the
    /// thread serving callbacks now. Waits only for a sync of `waitDurable`'s (rare: the
    /// NFS server defers every change).
    func whenDurable(_ sequence: UInt64, _ sync: () throws(FSError) -> Void, then: @escaping @Sendable (FSError?) -> Void) {
        condition.lock()
        while true {
            if synced >= sequence {
                condition.unlock()
                return then(nil)
            }
            if syncing && serving {
                callbacks.append((sequence, then))
                condition.unlock()
                return
            }
            guard syncing else { break }
            condition.wait()
        }
        syncing = true
        serving = true
        callbacks.append((sequence, then))
        condition.unlock()
        serveCallbacks(sync)
    }

    /// Runs syncs until no callback waits, calling each after the sync meant to cover it.
    /// REQUIRES: `syncing` and `serving` set by this thread; clears both.
    private func serveCallbacks(_ sync: () throws(FSError) -> Void) {
        while true {
            let (result, due) = syncOnce(sync)
            for (_, then) in due { then(result.error) }
            // Stopping is decided under the lock that `whenDurable` appends under, so no
            // callback can arrive after the last look and find nobody serving.
            condition.lock()
            if callbacks.isEmpty {
                syncing = false
                serving = false
                condition.broadcast()
                condition.unlock()
                return
            }
            condition.unlock()
        }
    }

    /// One sync, by the thread that set `syncing` (it stays set): gathers the changes in
    /// progress, syncs, wakes the waiters, and returns the callbacks it was meant to cover
    /// (their batches were applied before it started) for the caller to run.
    private func syncOnce(_ sync: () throws(FSError) -> Void) -> (Result<Void, FSError>, [Callback]) {
        let (target, result) = Blocking.during { () -> (UInt64, Result<Void, FSError>) in
            gather()
            condition.lock()
            let target = applied
            condition.unlock()
            return (target, Result { () throws(FSError) in try sync() })
        }
        condition.lock()
        if case .success = result { synced = max(synced, target) }
        // Those with later batches wait for the next sync, whatever became of this one.
        let due = callbacks.filter { $0.sequence <= target }
        callbacks.removeAll { $0.sequence <= target }
        condition.broadcast()
        condition.unlock()
        return (result, due)
    }
}

/// Hands a mutation's durability wait to its caller: `FileSystem` operations run inside
/// `deferring` apply their batches and return without waiting for the sync they need;
/// the caller gets that sync and must not answer before it (`Pool.whenDurable`).
public final class DurabilityDeferral: @unchecked Sendable {
    // Used by the one thread running the deferred operations only.
    @TaskLocal static var current: DurabilityDeferral?
    var pending = PendingSync.none

    /// Runs `body`; returns its result and the sync its operations still need.
    public static func deferring<R, E: Error>(_ body: () throws(E) -> R) -> (Result<R, E>, PendingSync) {
        let deferral = DurabilityDeferral()
        let result = Result { () throws(E) -> R in try $current.withValue(deferral, typed: body) }
        return (result, deferral.pending)
    }
}

extension Result {
    var error: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
