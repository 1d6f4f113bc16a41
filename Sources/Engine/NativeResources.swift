// Native objects (C iterators, snapshots, transactions, cursors) that must be freed
// exactly once: by their Swift owner when it is released, or by the store's close if the
// owner outlives the store. Used with LifetimeGuard so a free never races a use.

import Synchronization

/// One native object and the action that frees it.
public final class NativeResource: Sendable {
    private let action: Locked<(@Sendable () -> Void)?>
    /// Lower ranks are freed first at close (cursors before their transactions).
    public let rank: Int

    public init(rank: Int = 0, free: @escaping @Sendable () -> Void) {
        self.rank = rank
        action = Locked(free)
    }

    /// Frees the object the first time; later calls do nothing.
    public func free() {
        let pending = action.withLock { current -> (@Sendable () -> Void)? in
            defer { current = nil }
            return current
        }
        pending?()
    }
}

/// The live native objects of one store.
public final class NativeResources: Sendable {
    private let live = Locked<[ObjectIdentifier: NativeResource]>([:])
    private let lifetime: LifetimeGuard

    public init(lifetime: LifetimeGuard) {
        self.lifetime = lifetime
    }

    public func register(_ resource: NativeResource) {
        live.withLock { $0[ObjectIdentifier(resource)] = resource }
    }

    /// Frees `resource` now if the store is still open (after close it is already freed).
    public func release(_ resource: NativeResource) {
        lifetime.ifOpen { resource.free() }
        live.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(resource)) }
    }

    /// Frees everything still registered, lowest rank first. REQUIRES: called inside the
    /// store's `LifetimeGuard.close`, so no other thread uses these objects.
    public func freeAll() {
        let all = live.withLock { live in
            defer { live.removeAll() }
            return live.values.sorted { $0.rank < $1.rank }
        }
        for resource in all { resource.free() }
    }
}
