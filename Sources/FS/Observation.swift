// Attributes taken atomically with a change, for NFS wcc_data: a caller that wants the
// attributes of some inodes just before and just after the batch that changes them runs
// the operation inside `ChangeObserver.observing(inodes)`. The filesystem reads them
// under the locks the operation holds, right before and right after its commit, so no
// other change can fall between the two (an inode an operation touches is always one it
// has locked).

public final class ChangeObserver: @unchecked Sendable {
    // Used by the one thread running the observed operation only.
    public let inodes: Set<UInt64>
    /// Per inode: its attributes before the first batch that touched it, and after the last.
    public private(set) var before: [UInt64: Inode] = [:]
    public private(set) var after: [UInt64: Inode] = [:]

    @TaskLocal static var current: ChangeObserver?

    public init(_ inodes: Set<UInt64>) {
        self.inodes = inodes
    }

    /// Runs `body` (a FileSystem operation) observing `inodes`.
    public static func observing<R, E: Error>(_ inodes: Set<UInt64>, _ body: () throws(E) -> R) throws(E) -> (R, ChangeObserver) {
        let observer = ChangeObserver(inodes)
        return (try $current.withValue(observer, typed: body), observer)
    }

    /// wcc_data's halves for `ino`: before the change, and after it.
    public func change(_ ino: UInt64) -> (before: Inode?, after: Inode?) { (before[ino], after[ino]) }

    func noteBefore(_ ino: UInt64, _ inode: Inode) {
        if before[ino] == nil { before[ino] = inode }
    }

    func noteAfter(_ ino: UInt64, _ inode: Inode) { after[ino] = inode }
}

extension FileSystem {
    /// `pool.commit`, reading the observed inodes the batch touches before and after.
    func observedCommit(_ batch: inout FSBatch, op: String, durable: Bool) throws(FSError) -> PendingSync {
        guard let observer = ChangeObserver.current else { return try pool.commit(&batch, op: op, durable: durable) }
        let watched = observer.inodes.filter { batch.touched.contains($0) }
        for ino in watched {
            if let original = batch.originals.first(where: { $0.ino == ino }) {
                observer.noteBefore(ino, original)
            } else if let inode = try? inode(ino) {
                observer.noteBefore(ino, inode)
            }
        }
        let pending = try pool.commit(&batch, op: op, durable: durable)
        for ino in watched {
            // What the batch wrote is what a read would now find (the operation holds the
            // inode's lock); read only an inode touched otherwise.
            switch batch.lastInode(ino) {
            case .some(.some(let inode)): observer.noteAfter(ino, inode)
            case .some(.none): break
            case .none: if let inode = try? inode(ino) { observer.noteAfter(ino, inode) }
            }
        }
        return pending
    }
}
