// The AdminService (Protos/admin.proto) over one pool and its store: every RPC maps to one
// FS or store call, run on a thread of NIO's blocking-work pool (they block on disk),
// never on an event loop or the cooperative pool; fsck and scrub, which can run for
// hours, each on a thread of their own. Errors map to gRPC status codes (Docs/admin.md).

import Dispatch
import Engine
import FS
import GRPCCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What a background job (the collector, fsck, scrub) has done so far.
public struct JobProgress: Sendable, Equatable {
    public var running = false
    public var done: UInt64 = 0
    public var total: UInt64 = 0
    public var unit = ""
    public var lastFinishedAtNanos: UInt64 = 0
    public var lastProblems: UInt64 = 0
}

/// Calls by name since the server started ("admin.CreateSnapshot"; frontends add theirs).
public final class OperationCounters: Sendable {
    private let counts = Locked<[String: UInt64]>([:])

    public init() {}

    public func add(_ name: String, _ count: UInt64 = 1) {
        counts.withLock { $0[name, default: 0] &+= count }
    }

    public var snapshot: [String: UInt64] { counts.withLock { $0 } }
}

public final class AdminService: Zerofs_Admin_V1_AdminService.SimpleServiceProtocol, Sendable {
    public let pool: Pool
    public let store: any KVBackend
    /// Where the store lives, for GetStats ("lsm at /srv/zerofs").
    public let location: String
    public let counters: OperationCounters
    /// More counters to report (a frontend's calls), read at each GetStats.
    private let extraCounters: @Sendable () -> [String: UInt64]
    /// Monotonic (the wall clock may step back).
    private let started = DispatchTime.now().uptimeNanoseconds
    /// Runs the calls (NIO's shared blocking-work pool unless a test gives its own).
    private let threads: NIOThreadPool
    /// One fsck and one scrub at a time; cancelled when their caller goes away.
    private let fsckJob = BackgroundJob(unit: "keys", busy: "an fsck is already running")
    private let scrubJob = BackgroundJob(unit: "objects", busy: "a scrub is already running")

    public init(
        pool: Pool, store: any KVBackend, location: String, counters: OperationCounters = OperationCounters(),
        extraCounters: @escaping @Sendable () -> [String: UInt64] = { [:] }, threads: NIOThreadPool = .singleton
    ) {
        self.threads = threads
        self.pool = pool
        self.store = store
        self.location = location
        self.counters = counters
        self.extraCounters = extraCounters
    }

    /// Runs `body` on a thread of `threads` (not the cooperative pool, and not an event
    /// loop), counting the call and mapping its errors.
    private func call<T: Sendable>(_ name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        counters.add("admin.\(name)")
        do {
            return try await threads.runIfActive(body)
        } catch {
            throw AdminErrors.status(error)
        }
    }

    /// Runs a long job's `body` (fsck, scrub) on a thread of its own: the blocking-work
    /// pool has a thread per core, and a running fsck and scrub would leave none for the
    /// short calls until they finish.
    private func callOnOwnThread<T: Sendable>(_ name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        counters.add("admin.\(name)")
        do {
            return try await withCheckedThrowingContinuation { continuation in
                let code = startThreadIfPossible(named: "zerofs-\(name.lowercased())") {
                    continuation.resume(with: Result { try body() })
                }
                // No thread, no run: the call fails instead of waiting for ever.
                if code != 0 {
                    continuation.resume(throwing: KVError(.io, "cannot start a thread for \(name)", cause: String(cString: strerror(code))))
                }
            }
        } catch {
            throw AdminErrors.status(error)
        }
    }

    private func requireWritable() throws {
        if store.isReadOnly {
            let what = store.isReplica ? "is a read-only replica; change the store through its writer" : "serves a checkpoint read-only; nothing can change"
            throw RPCError(code: .failedPrecondition, message: "the server \(what)")
        }
    }

    // MARK: datasets

    public func createDataset(request: Zerofs_Admin_V1_CreateDatasetRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_Dataset {
        try await call("CreateDataset") { [pool] in
            try self.requireWritable()
            return AdminMessages.dataset(try pool.info(try pool.createDataset(request.name).id))
        }
    }

    public func listDatasets(request: Zerofs_Admin_V1_ListDatasetsRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_ListDatasetsResponse {
        try await call("ListDatasets") { [pool] in
            var response = Zerofs_Admin_V1_ListDatasetsResponse()
            response.datasets = try pool.listDatasets().map(AdminMessages.dataset)
            return response
        }
    }

    public func deleteDataset(request: Zerofs_Admin_V1_DeleteDatasetRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_DeleteDatasetResponse {
        try await call("DeleteDataset") { [pool] in
            try self.requireWritable()
            try pool.deleteDataset(request.name, recursive: request.recursive)
            return Zerofs_Admin_V1_DeleteDatasetResponse()
        }
    }

    public func getDatasetInfo(request: Zerofs_Admin_V1_GetDatasetInfoRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_Dataset {
        try await call("GetDatasetInfo") { [pool] in AdminMessages.dataset(try pool.info(request.name)) }
    }

    public func setDefaultDataset(request: Zerofs_Admin_V1_SetDefaultDatasetRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_Dataset {
        try await call("SetDefaultDataset") { [pool] in
            try self.requireWritable()
            try pool.setDefault(request.name)
            return AdminMessages.dataset(try pool.info(request.name))
        }
    }

    public func getDefaultDataset(request: Zerofs_Admin_V1_GetDefaultDatasetRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_Dataset {
        try await call("GetDefaultDataset") { [pool] in AdminMessages.dataset(try pool.info(try pool.getDefault().id)) }
    }

    public func renameDataset(request: Zerofs_Admin_V1_RenameDatasetRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_Dataset {
        try await call("RenameDataset") { [pool] in
            try self.requireWritable()
            try pool.renameDataset(request.name, to: request.newName)
            return AdminMessages.dataset(try pool.info(request.newName))
        }
    }

    public func setDatasetReadonly(request: Zerofs_Admin_V1_SetDatasetReadonlyRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_Dataset {
        try await call("SetDatasetReadonly") { [pool] in
            try self.requireWritable()
            try pool.setReadonly(request.name, request.readonly)
            return AdminMessages.dataset(try pool.info(request.name))
        }
    }

    // MARK: snapshots

    public func createSnapshot(request: Zerofs_Admin_V1_CreateSnapshotRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_CreateSnapshotResponse {
        try await call("CreateSnapshot") { [pool] in
            try self.requireWritable()
            if Pool.splitSnapshotName(request.source) != nil, try pool.info(request.source).isSnapshot {
                throw DatasetError(.isSnapshot, "\(request.source) is a snapshot; only datasets can be snapshotted")
            }
            var response = Zerofs_Admin_V1_CreateSnapshotResponse()
            response.snapshots = try pool.snapshot(request.source, request.name, recursive: request.recursive).map(AdminMessages.dataset)
            return response
        }
    }

    public func listSnapshots(request: Zerofs_Admin_V1_ListSnapshotsRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_ListSnapshotsResponse {
        try await call("ListSnapshots") { [pool] in
            var response = Zerofs_Admin_V1_ListSnapshotsResponse()
            response.snapshots = try pool.listSnapshots(of: request.source.isEmpty ? nil : request.source).map(AdminMessages.dataset)
            return response
        }
    }

    public func deleteSnapshot(request: Zerofs_Admin_V1_DeleteSnapshotRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_DeleteSnapshotResponse {
        try await call("DeleteSnapshot") { [pool] in
            try self.requireWritable()
            var response = Zerofs_Admin_V1_DeleteSnapshotResponse()
            response.name = try Self.snapshotName(pool, request.name)
            try pool.deleteSnapshot(response.name)
            return response
        }
    }

    public func renameSnapshot(request: Zerofs_Admin_V1_RenameSnapshotRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_Dataset {
        try await call("RenameSnapshot") { [pool] in
            try self.requireWritable()
            let old = try Self.snapshotName(pool, request.name)
            guard let dataset = Pool.splitSnapshotName(old)?.dataset else {
                throw DatasetError(.notSnapshot, "\(old.debugDescription) is not a snapshot")
            }
            var new = request.newName
            if let parts = Pool.splitSnapshotName(new) {
                guard parts.dataset.utf8.elementsEqual(dataset.utf8) else {
                    throw DatasetError(.invalidMove, "a snapshot stays with its dataset: \(old) cannot become \(new)")
                }
                new = parts.snapshot
            }
            try pool.renameSnapshot(old, to: new)
            return AdminMessages.dataset(try pool.info("\(dataset)@\(new)"))
        }
    }

    public func cloneSnapshot(request: Zerofs_Admin_V1_CloneSnapshotRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_Dataset {
        try await call("CloneSnapshot") { [pool] in
            try self.requireWritable()
            return AdminMessages.dataset(try pool.info(try pool.clone(try Self.snapshotName(pool, request.snapshot), to: request.name).id))
        }
    }

    public func rollbackDataset(request: Zerofs_Admin_V1_RollbackDatasetRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_Dataset {
        try await call("RollbackDataset") { [pool] in
            try self.requireWritable()
            var snapshot = request.snapshot
            if let parts = Pool.splitSnapshotName(snapshot) {
                guard parts.dataset.utf8.elementsEqual(request.dataset.utf8) else {
                    throw DatasetError(.wrongDataset, "\(snapshot) is not a snapshot of \(request.dataset)")
                }
                snapshot = parts.snapshot
            }
            try pool.rollback(request.dataset, to: snapshot)
            return AdminMessages.dataset(try pool.info(request.dataset))
        }
    }

    /// A snapshot's full name: "DATASET@SNAP" as given, or a bare "SNAP" when exactly one
    /// dataset has a snapshot of that name.
    static func snapshotName(_ pool: Pool, _ name: String) throws -> String {
        if Pool.splitSnapshotName(name) != nil { return name }
        // Compared as bytes, as names are checked (see Pool.splitSnapshotName).
        let matches = try pool.listSnapshots(used: false).map(\.name).filter { Pool.splitSnapshotName($0)?.snapshot.utf8.elementsEqual(name.utf8) == true }
        switch matches.count {
        case 1: return matches[0]
        case 0:
            if let dataset = try? pool.info(name), !dataset.isSnapshot {
                throw DatasetError(.notSnapshot, "\(name) is a dataset, not a snapshot (name one of its snapshots: \(name)@SNAPSHOT)")
            }
            throw DatasetError(.notFound, "no snapshot named \(name.debugDescription) (name it DATASET@SNAPSHOT)")
        default:
            throw RPCError(code: .invalidArgument, message: "snapshot name \(name.debugDescription) is ambiguous: \(matches.joined(separator: ", ")); name it DATASET@SNAPSHOT")
        }
    }

    // MARK: checkpoints

    public func createCheckpoint(request: Zerofs_Admin_V1_CreateCheckpointRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_Checkpoint {
        try await call("CreateCheckpoint") { [store] in
            try self.requireWritable()
            return AdminMessages.checkpoint(try store.createCheckpoint(named: request.name))
        }
    }

    public func listCheckpoints(request: Zerofs_Admin_V1_ListCheckpointsRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_ListCheckpointsResponse {
        try await call("ListCheckpoints") { [store] in
            var response = Zerofs_Admin_V1_ListCheckpointsResponse()
            response.checkpoints = try store.listCheckpoints().map(AdminMessages.checkpoint)
            return response
        }
    }

    public func deleteCheckpoint(request: Zerofs_Admin_V1_DeleteCheckpointRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_DeleteCheckpointResponse {
        try await call("DeleteCheckpoint") { [store] in
            try self.requireWritable()
            try store.deleteCheckpoint(named: request.name)
            return Zerofs_Admin_V1_DeleteCheckpointResponse()
        }
    }

    // MARK: statistics and maintenance

    public func getStats(request: Zerofs_Admin_V1_GetStatsRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_Stats {
        try await call("GetStats") { [pool, store] in
            var stats = Zerofs_Admin_V1_Stats()
            stats.backend = store.backendName
            stats.path = self.location
            stats.uptimeNanos = DispatchTime.now().uptimeNanoseconds - self.started
            if request.brief { return stats }
            let space = try store.spaceUsage()
            stats.storeBytes = space.liveBytes
            stats.checkpointPinnedBytes = space.checkpointOnlyBytes
            stats.chunkBytes = pool.storedBytes
            let collector = pool.collectorStatus
            stats.gcPendingBytes = collector.pendingBytes
            stats.gcPendingVersions = UInt64(collector.pendingVersions)
            stats.gc = AdminMessages.progress(JobProgress(
                running: collector.pendingVersions > 0, done: collector.collectedVersions,
                total: collector.collectedVersions + UInt64(collector.pendingVersions), unit: "versions",
                lastFinishedAtNanos: collector.lastFinishedAtNanos))
            stats.fsck = AdminMessages.progress(self.fsckJob.progress)
            stats.scrub = AdminMessages.progress(self.scrubJob.progress)
            stats.datasets = UInt64(try pool.listDatasets().count)
            stats.snapshots = UInt64(try pool.listSnapshots().count)
            stats.checkpoints = UInt64(try store.listCheckpoints().count)
            stats.operations = self.counters.snapshot.merging(self.extraCounters()) { $0 + $1 }
            if let objects = store.objectOperations() { stats.objectOperations = AdminMessages.objectOperations(objects) }
            return stats
        }
    }

    public func flush(request: Zerofs_Admin_V1_FlushRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_FlushResponse {
        try await call("Flush") { [store] in
            if !store.isReadOnly { try store.flush() }
            return Zerofs_Admin_V1_FlushResponse()
        }
    }

    /// Stops a running fsck and scrub (they answer CANCELLED); `zerofs run` calls it
    /// before it stops, so a long job does not hold the shutdown.
    public func cancelRunningJobs() {
        fsckJob.cancel()
        scrubJob.cancel()
    }

    public func fsck(request: Zerofs_Admin_V1_FsckRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_FsckResponse {
        let ticket = fsckJob.ticket()
        return try await withTaskCancellationHandler {
            try await callOnOwnThread("Fsck") { [store, fsckJob] in
                try fsckJob.run(ticket) { job in
                    let view = try store.readView()
                    defer { view.close() }
                    let counting = CountingReader(view, report: { job.update(done: $0) }, cancelled: { job.isCancelled })
                    let report: FsckReport
                    do {
                        report = try FS.Fsck.check(counting)
                    } catch where job.isCancelled {
                        throw RPCError(code: .cancelled, message: "the fsck was cancelled after \(counting.keysRead) keys")
                    }
                    var response = Zerofs_Admin_V1_FsckResponse()
                    response.inodes = UInt64(report.inodes)
                    response.entries = UInt64(report.entries)
                    response.chunks = UInt64(report.chunks)
                    response.problems = AdminMessages.capped(report.problems) { "... and \($0) more problems" }
                    return (response, counting.keysRead, UInt64(report.problems.count))
                }
            }
        } onCancel: {
            fsckJob.cancel(ticket)
        }
    }

    public func scrub(request: Zerofs_Admin_V1_ScrubRequest, context: ServerContext) async throws -> Zerofs_Admin_V1_ScrubResponse {
        let ticket = scrubJob.ticket()
        return try await withTaskCancellationHandler {
            try await callOnOwnThread("Scrub") { [store, scrubJob] in
                try scrubJob.run(ticket) { job in
                    let report = try store.scrub { partial in
                        job.update(done: partial.objects, total: partial.objectsTotal)
                        return !job.isCancelled
                    }
                    if report.stopped {
                        throw RPCError(code: .cancelled, message: "the scrub was cancelled after \(report.objects) objects")
                    }
                    return (AdminMessages.scrub(report), report.objects, UInt64(report.failures.count))
                }
            }
        } onCancel: {
            scrubJob.cancel(ticket)
        }
    }
}

/// A long maintenance job (fsck, scrub): one run at a time, its progress for GetStats,
/// and a cancel flag its work checks. Each call holds a ticket: cancelling it stops only
/// the run it started (a call refused as busy must not stop the one running), and a
/// cancel that comes before its run starts is kept for it.
final class BackgroundJob: Sendable {
    private struct State {
        var progress: JobProgress
        var cancelled = false
        /// The ticket of the running call.
        var owner: UInt64?
        /// Tickets cancelled before their run started.
        var cancelledEarly: Set<UInt64> = []
        var nextTicket: UInt64 = 1
    }

    /// The refusal of a second run.
    let busy: String
    private let state: Locked<State>

    init(unit: String, busy: String) {
        self.busy = busy
        state = Locked(State(progress: JobProgress(unit: unit)))
    }

    var progress: JobProgress { state.withLock { $0.progress } }
    var isCancelled: Bool { state.withLock { $0.cancelled } }

    /// A ticket for one call, taken before its run is started.
    func ticket() -> UInt64 {
        state.withLock { s in
            defer { s.nextTicket += 1 }
            return s.nextTicket
        }
    }

    /// Stops the run `ticket` started, or the one it will start.
    func cancel(_ ticket: UInt64) {
        state.withLock { s in
            if s.owner == ticket {
                s.cancelled = true
            } else {
                // A call refused as busy, or cancelled after its run ended, never takes its
                // ticket back: keep only the newest few.
                s.cancelledEarly.insert(ticket)
                if s.cancelledEarly.count > 64, let oldest = s.cancelledEarly.min() { s.cancelledEarly.remove(oldest) }
            }
        }
    }

    /// Stops whatever runs (the server is stopping).
    func cancel() { state.withLock { $0.cancelled = true } }

    func update(done: UInt64, total: UInt64 = 0) {
        state.withLock {
            $0.progress.done = done
            $0.progress.total = total
        }
    }

    /// Runs `body` as the only run of this job (a second answers FAILED_PRECONDITION);
    /// `body` returns its result, the final count done and the problems it found.
    func run<T>(_ ticket: UInt64, _ body: (BackgroundJob) throws -> (T, done: UInt64, problems: UInt64)) throws -> T {
        let taken = state.withLock { s -> Bool in
            let cancelledEarly = s.cancelledEarly.remove(ticket) != nil
            if s.progress.running { return false }
            s.progress.running = true
            s.progress.done = 0
            s.progress.total = 0
            s.cancelled = cancelledEarly
            s.owner = ticket
            return true
        }
        guard taken else { throw RPCError(code: .failedPrecondition, message: busy) }
        defer {
            state.withLock { s in
                s.progress.running = false
                s.owner = nil
            }
        }
        let (result, done, problems) = try body(self)
        state.withLock {
            $0.progress.done = done
            $0.progress.lastFinishedAtNanos = FileOps.nowNanos()
            $0.progress.lastProblems = problems
        }
        return result
    }
}

/// A reader that counts the keys read through it (fsck's progress).
final class CountingReader: KVReader, @unchecked Sendable {
    let base: any KVReader
    let report: @Sendable (UInt64) -> Void
    let cancelled: @Sendable () -> Bool
    private let count = Atomic<UInt64>(0)

    init(_ base: any KVReader, report: @escaping @Sendable (UInt64) -> Void, cancelled: @escaping @Sendable () -> Bool) {
        self.base = base
        self.report = report
        self.cancelled = cancelled
    }

    var keysRead: UInt64 { count.load(ordering: .relaxed) }

    func tick() throws {
        let n = count.add(1, ordering: .relaxed).newValue
        if n % 4096 == 0 {
            report(n)
            if cancelled() { throw KVError(.closed, "the fsck was cancelled") }
        }
    }

    func get(_ key: [UInt8]) throws -> [UInt8]? {
        try tick()
        return try base.get(key)
    }

    func makeIterator(_ range: KeyRange) throws -> any KVIterator {
        CountingIterator(try base.makeIterator(range), self)
    }

    func firstEntry(from: [UInt8], prefix: [UInt8]) throws -> KVEntry? {
        try tick()
        return try base.firstEntry(from: from, prefix: prefix)
    }

    func firstVersion(from: [UInt8], prefix: [UInt8], suffixLength: Int) throws -> KVEntry? {
        try tick()
        return try base.firstVersion(from: from, prefix: prefix, suffixLength: suffixLength)
    }
}

final class CountingIterator: ForwardingIterator {
    let reader: CountingReader

    init(_ base: any KVIterator, _ reader: CountingReader) {
        self.reader = reader
        super.init(base)
    }

    override func next() throws {
        try reader.tick()
        try super.next()
    }
}
