// DatasetError: the errors of dataset and snapshot operations, one kind per cause, so the
// command line, gRPC and NFS can each answer precisely. Storage trouble underneath is
// `.storage`, carrying the FSError.

public struct DatasetError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        /// A name breaks the rules: 1 to 255 bytes, no '@', no control character, '/' only
        /// between non-empty parts (dataset names), no part ".", ".." or ".snapshots".
        case invalidName
        /// The name is taken.
        case exists
        /// No such dataset or snapshot.
        case notFound
        /// The default dataset cannot be deleted.
        case isDefault
        /// The root dataset (id 0) cannot be deleted.
        case isRoot
        /// A snapshot was given where a writable dataset is needed (snapshotting a snapshot).
        case isSnapshot
        /// A writable dataset was given where a snapshot is needed (cloning a dataset).
        case notSnapshot
        /// Deleting needs `recursive`: the dataset has snapshots, clones or nested datasets.
        case hasDependents
        /// The snapshot belongs to another dataset (rollback).
        case wrongDataset
        /// A dataset cannot move inside itself.
        case invalidMove
        /// The storage failed underneath.
        case storage
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    static func storage(_ error: FSError) -> DatasetError {
        DatasetError(.storage, error.description)
    }

    public var description: String { "\(kind): \(message)" }
}

/// Runs `body`, turning an FSError into `DatasetError.storage`.
func storage<T>(_ body: () throws(FSError) -> T) throws(DatasetError) -> T {
    do {
        return try body()
    } catch {
        throw DatasetError.storage(error)
    }
}
