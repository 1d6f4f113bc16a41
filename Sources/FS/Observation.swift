// Attributes taken atomically with a change, for NFS wcc_data: a caller that wants the
// attributes of some inodes just before and just after the batch that changes them runs
// the operation inside `ChangeObserver.observing(inodes)`. The filesystem reads them
// under the locks the operation holds, right before and right after its commit, so no
// other change can fall between the two (an inode an operation touches is always one it
// has locked).

public final class ChangeObserver: @unchecked Sendable {
    // Used by the one thread running the observed operation only.
    /// One to three inodes: an array, searched in order.
    public let inodes: [UInt64]
    /// Per inode: its attributes before the first batch that touched it, and after the
    /// last. An operation watches one to three inodes: arrays, searched in order.
    private var before: [Inode] = []
    private var after: [Inode] = []

    @TaskLocal static var current: ChangeObserver?

    public init(_ inodes: [UInt64]) {
        self.inodes = inodes
    }

    /// Runs `body` (a FileSystem operation) observing `inodes`.
    public static func observing<R, E: Error>(_ inodes: [UInt64], _ body: () throws(E) -> R) throws(E) -> (R, ChangeObserver) {
        let observer = ChangeObserver(inodes)
        return (try $current.withValue(observer, typed: body), observer)
    }

    /// wcc_data's halves for `ino`: before the change, and after it.
    public func change(_ ino: UInt64) -> (before: Inode?, after: Inode?) {
        (before.first { $0.ino == ino }, after.first { $0.ino == ino })
    }

    func noteBefore(_ inode: Inode) {
        if !before.contains(where: { $0.ino == inode.ino }) { before.append(inode) }
    }

    func noteAfter(_ inode: Inode) {
        if let i = after.firstIndex(where: { $0.ino == inode.ino }) { after[i] = inode } else { after.append(inode) }
    }
}

extension FileSystem {
    /// `pool.commit`, reading the observed inodes the batch touches before and after.
    func observedCommit(_ batch: inout FSBatch, op: String, durable: Bool) throws(FSError) -> PendingSync {
        guard let observer = ChangeObserver.current else { return try pool.commit(&batch, op: op, durable: durable) }
        let watched = observer.inodes.filter { batch.touched.contains($0) }
        for ino in watched {
            if let original = batch.originals.first(where: { $0.ino == ino }) {
                observer.noteBefore(original)
            } else if let inode = try? inode(ino) {
                observer.noteBefore(inode)
            }
        }
        let pending = try pool.commit(&batch, op: op, durable: durable)
        for ino in watched {
            // What the batch wrote is what a read would now find (the operation holds the
            // inode's lock); read only an inode touched otherwise.
            switch batch.lastInode(ino) {
            case .some(.some(let inode)): observer.noteAfter(inode)
            case .some(.none): break
            case .none: if let inode = try? inode(ino) { observer.noteAfter(inode) }
            }
        }
        return pending
    }
}
