// The AdminService in this process (gRPC's in-process transport) on every backend: the
// statistics follow the store (space, checkpoint-only bytes, the collector's pending work
// and progress, fsck and scrub progress, operation counters), a checkpoint is served
// read-only, and every error kind maps to its status code.

@testable import Admin
import Dispatch
import BackendCatalog
import Engine
import FS
import GRPCCore
import KVTestSupport
import NIOPosix
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct AdminServiceTests {
    static let backends = ["memory", "lsm", "rocksdb", "lmdb"]

    func stats(_ service: AdminService) async throws -> Zerofs_Admin_V1_Stats {
        try await AdminClient.connect(.local(service)) { try await $0.getStats(Zerofs_Admin_V1_GetStatsRequest()) }
    }

    func options() -> FSOptions {
        var options = FSOptions()
        options.backgroundReclaim = false
        return options
    }

    @Test(arguments: backends)
    func statisticsFollowTheStore(_ backend: String) async throws {
        let harness = StoreHarness(try BackendCatalog.standard.factory(named: backend))
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        let store = try harness.open(path)
        let pool = try Pool.open(store, options: options())
        let service = AdminService(pool: pool, store: store, location: path) { ["frontend.CALL": 7] }

        let brief = try await AdminClient.connect(.local(service)) { client in
            var request = Zerofs_Admin_V1_GetStatsRequest()
            request.brief = true
            return try await client.getStats(request)
        }
        #expect(brief.backend == backend && brief.path == path && brief.uptimeNanos > 0 && brief.datasets == 0)
        let empty = try await stats(service)
        #expect(empty.backend == backend)
        #expect(empty.path == path)
        #expect(empty.datasets == 1 && empty.snapshots == 0 && empty.checkpoints == 0)
        #expect(empty.checkpointPinnedBytes == 0)
        #expect(empty.gcPendingVersions == 0 && !empty.gc.running)

        // A dataset with 1 MiB in it, snapshotted, then the file removed: the snapshot
        // holds the data; deleting the snapshot leaves it to the collector.
        let fs = try pool.filesystem(named: "root")
        let file = try fs.create(.root, FileSystem.rootInode, Array("f".utf8), mode: 0o644)
        let data = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
        _ = try fs.write(.root, file.ino, offset: 0, data)
        try await AdminClient.connect(.local(service)) { client in
            var request = Zerofs_Admin_V1_CreateSnapshotRequest()
            request.source = "root"
            request.name = "s"
            _ = try await client.createSnapshot(request)
        }
        try fs.unlink(.root, FileSystem.rootInode, Array("f".utf8))
        let written = try await stats(service)
        #expect(written.chunkBytes > 0)
        #expect(written.storeBytes > 0)
        #expect(written.snapshots == 1)
        try await AdminClient.connect(.local(service)) { client in
            var request = Zerofs_Admin_V1_DeleteSnapshotRequest()
            request.name = "root@s"
            _ = try await client.deleteSnapshot(request)
        }
        let pending = try await stats(service)
        #expect(pending.gcPendingVersions == 1)
        #expect(pending.gcPendingBytes > 0)
        #expect(pending.gc.running)
        try pool.collectGarbage()
        let collected = try await stats(service)
        #expect(collected.gcPendingVersions == 0 && collected.gcPendingBytes == 0 && !collected.gc.running)
        #expect(collected.gc.done >= 1 && collected.gc.lastFinishedAtNanos > 0)

        // A checkpoint; rewriting what it holds leaves bytes only it keeps (for the stores
        // whose checkpoints are copies or share entries, at once).
        _ = try store.createCheckpoint(named: "cp")
        let file2 = try fs.create(.root, FileSystem.rootInode, Array("g".utf8), mode: 0o644)
        _ = try fs.write(.root, file2.ino, offset: 0, data)
        let afterCheckpoint = try await stats(service)
        #expect(afterCheckpoint.checkpoints == 1)
        if backend == "lmdb" || backend == "rocksdb" { #expect(afterCheckpoint.checkpointPinnedBytes > 0) }
        try store.deleteCheckpoint(named: "cp")
        #expect(try await stats(service).checkpointPinnedBytes == 0)

        // fsck and scrub, and their progress.
        let report = try await AdminClient.connect(.local(service)) { try await $0.fsck(Zerofs_Admin_V1_FsckRequest()) }
        #expect(report.problems.isEmpty, "\(report.problems)")
        #expect(report.inodes >= 2 && report.chunks > 0)
        let scrub = try await AdminClient.connect(.local(service)) { try await $0.scrub(Zerofs_Admin_V1_ScrubRequest()) }
        #expect(scrub.failures.isEmpty, "\(scrub.failures)")
        #expect(scrub.objects > 0 && scrub.values > 0 && scrub.bytes > 0)
        let after = try await stats(service)
        #expect(!after.fsck.running && after.fsck.done > 0 && after.fsck.lastFinishedAtNanos > 0 && after.fsck.lastProblems == 0)
        #expect(!after.scrub.running && after.scrub.done == scrub.objects && after.scrub.lastFinishedAtNanos > 0)
        #expect(after.operations["admin.Fsck"] == 1 && after.operations["admin.GetStats"] ?? 0 >= 6)
        #expect(after.operations["frontend.CALL"] == 7)
        #expect(after.uptimeNanos > 0)
        try await AdminClient.connect(.local(service)) { _ = try await $0.flush(Zerofs_Admin_V1_FlushRequest()) }

        try pool.close()
        try store.close()
    }

    @Test(arguments: ["lsm", "rocksdb", "lmdb"])
    func aCheckpointIsServedReadOnly(_ backend: String) async throws {
        let factory = try BackendCatalog.standard.factory(named: backend)
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        let store = try harness.open(path)
        let pool = try Pool.open(store, options: options())
        _ = try store.createCheckpoint(named: "older")
        _ = try pool.createDataset("before")
        _ = try store.createCheckpoint(named: "cp")
        _ = try pool.createDataset("after")
        // The older checkpoint goes (lsm: its manifest is collected, while cp's manifest
        // still lists it).
        try store.deleteCheckpoint(named: "older")
        try store.flush()

        let frozen = try factory.openCheckpoint(at: path, named: "cp", options: BackendOptions())
        let frozenPool = try Pool.open(frozen, options: options())
        let service = AdminService(pool: frozenPool, store: frozen, location: path)
        let names = try await AdminClient.connect(.local(service)) { try await $0.listDatasets(Zerofs_Admin_V1_ListDatasetsRequest()) }.datasets.map(\.name)
        #expect(names == ["before", "root"])
        let stats = try await stats(service)
        #expect(stats.datasets == 2 && stats.storeBytes > 0)
        let scrub = try await AdminClient.connect(.local(service)) { try await $0.scrub(Zerofs_Admin_V1_ScrubRequest()) }
        #expect(scrub.failures.isEmpty, "\(scrub.failures)")
        do {
            try await AdminClient.connect(.local(service)) { client in
                var request = Zerofs_Admin_V1_CreateDatasetRequest()
                request.name = "x"
                _ = try await client.createDataset(request)
            }
            Issue.record("a read-only service created a dataset")
        } catch let error as RPCError {
            #expect(error.code == .failedPrecondition)
            #expect(error.message.contains("read-only"))
        }
        try frozenPool.close()
        try frozen.close()
        try pool.close()
        try store.close()
    }

    /// A scrub stops when its progress callback says so, and an fsck when its reader is
    /// cancelled: what a server does when the caller goes away or it shuts down.
    @Test(arguments: backends)
    func longJobsStopWhenAsked(_ backend: String) throws {
        let harness = StoreHarness(try BackendCatalog.standard.factory(named: backend))
        defer { harness.cleanUp() }
        let store = try harness.open(harness.freshPath())
        let pool = try Pool.open(store, options: options())
        var batch = WriteBatch()
        for i in 0..<70_000 { batch.put(Array("key-\(100_000 + i)".utf8), Array(repeating: 7, count: 16)) }
        try store.write(batch, durable: false)
        _ = try store.createCheckpoint(named: "tables")  // lsm: into tables, so there are objects to stop between

        var calls = 0
        let stopped = try store.scrub { _ in
            calls += 1
            return false
        }
        #expect(stopped.stopped)
        #expect(calls == 1)
        let whole = try store.scrub { _ in true }
        #expect(!whole.stopped && whole.failures.isEmpty)
        #expect(stopped.values < whole.values || stopped.objects < whole.objects)

        let view = try store.readView()
        defer { view.close() }
        let reader = CountingReader(view, report: { _ in }, cancelled: { true })
        #expect(throws: (any Error).self) { try FS.Fsck.check(reader) }
        #expect(reader.keysRead <= 4096)
        try pool.close()
        try store.close()
    }

    /// A snapshot name may start with a combining mark: "root@" and the mark are then one
    /// Character, which a search for the Character "@" misses. Renames and rollbacks split
    /// names as bytes, as they are checked.
    @Test func snapshotNamesAreSplitAsBytes() async throws {
        let harness = StoreHarness(try BackendCatalog.standard.factory(named: "memory"))
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        let store = try harness.open(path)
        let pool = try Pool.open(store, options: options())
        let service = AdminService(pool: pool, store: store, location: path) { [:] }
        let marked = "\u{0301}x"
        try await AdminClient.connect(.local(service)) { client in
            var create = Zerofs_Admin_V1_CreateSnapshotRequest()
            create.source = "root"
            create.name = marked
            _ = try await client.createSnapshot(create)
            var rename = Zerofs_Admin_V1_RenameSnapshotRequest()
            rename.name = marked
            rename.newName = "y"
            #expect(try await client.renameSnapshot(rename).name == "root@y")
            rename.name = "root@y"
            rename.newName = "root@" + marked
            #expect(Array(try await client.renameSnapshot(rename).name.utf8) == Array(("root@" + marked).utf8))
            var rollback = Zerofs_Admin_V1_RollbackDatasetRequest()
            rollback.dataset = "root"
            rollback.snapshot = "root@" + marked
            _ = try await client.rollbackDataset(rollback)
            rename.name = "root@" + marked
            rename.newName = "other@z"
            await #expect(throws: RPCError.self) { _ = try await client.renameSnapshot(rename) }
        }
        try pool.close()
        try store.close()
    }

    @Test func everyErrorKindHasItsStatus() {
        let expected: [DatasetError.Kind: RPCError.Code] = [
            .invalidName: .invalidArgument, .exists: .alreadyExists, .notFound: .notFound, .isDefault: .failedPrecondition,
            .isRoot: .failedPrecondition, .isSnapshot: .failedPrecondition, .notSnapshot: .failedPrecondition,
            .hasDependents: .failedPrecondition, .wrongDataset: .failedPrecondition, .invalidMove: .failedPrecondition,
            .storage: .unavailable,
        ]
        for kind in DatasetError.Kind.allCases {
            let status = AdminErrors.status(DatasetError(kind, "why \(kind)"))
            #expect(status.code == expected[kind], "\(kind)")
            #expect(status.message == "why \(kind)")
        }
        let kv: [(KVError.Code, RPCError.Code)] = [
            (.invalidArgument, .invalidArgument), (.alreadyExists, .alreadyExists), (.notFound, .notFound),
            (.readOnly, .failedPrecondition), (.locked, .failedPrecondition), (.io, .unavailable), (.corruption, .dataLoss),
        ]
        for (code, status) in kv {
            #expect(AdminErrors.status(KVError(code, "m")).code == status, "\(code)")
        }
        #expect(AdminErrors.status(FSError(.EROFS, "ro")).code == .failedPrecondition)
        #expect(AdminErrors.status(FSError(.EIO, "io")).code == .unavailable)
    }

    /// Cancelling a call stops only the run it started: a second fsck refused as busy and
    /// then cancelled by its caller leaves the first running, and a cancel that comes
    /// before its run starts is kept for it.
    @Test func aCancelStopsOnlyItsOwnRun() throws {
        let job = BackgroundJob(unit: "keys", busy: "busy")
        let first = job.ticket()
        let inside = DispatchSemaphore(value: 0)
        let go = DispatchSemaphore(value: 0)
        let sawCancel = Flag()
        let ended = DispatchSemaphore(value: 0)
        startThread(named: "job-test") {
            _ = try? job.run(first) { job in
                inside.signal()
                _ = go.wait(timeout: .now() + 30)
                sawCancel.value.store(job.isCancelled, ordering: .relaxed)
                return ((), 0, 0)
            }
            ended.signal()
        }
        #expect(inside.wait(timeout: .now() + 30) == .success)
        let second = job.ticket()
        #expect(throws: RPCError.self) { try job.run(second) { _ in ((), 0, 0) } }
        job.cancel(second)
        #expect(!job.isCancelled, "the refused call's cancel stopped the running one")
        job.cancel(first)
        go.signal()
        #expect(ended.wait(timeout: .now() + 30) == .success)
        let cancelled = sawCancel.value.load(ordering: .relaxed)
        #expect(cancelled)

        let early = job.ticket()
        job.cancel(early)
        let startedCancelled = try job.run(early) { job in (job.isCancelled, 0, 0) }
        #expect(startedCancelled)
        let later = job.ticket()
        #expect(try job.run(later) { job in (job.isCancelled, 0, 0) } == false)
    }

    /// fsck and scrub run on threads of their own: with every thread of the service's
    /// pool busy (held here until both finish, for at most 10 minutes: in a full run,
    /// other suites' synchronous tests can hold the cooperative threads that resume these
    /// calls for a minute or more), they still answer, and the thread was still held when
    /// they did.
    @Test func fsckAndScrubNeedNoPoolThread() async throws {
        let harness = StoreHarness(try BackendCatalog.standard.factory(named: "lsm"))
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        let store = try harness.open(path)
        let pool = try Pool.open(store, options: options())
        let threads = NIOThreadPool(numberOfThreads: 1)
        threads.start()
        let service = AdminService(pool: pool, store: store, location: path, threads: threads)

        let state = HeldThreads()
        let holder = Task {
            try await threads.runIfActive {
                state.started.store(true, ordering: .relaxed)
                let deadline = FileOps.nowNanos() + 600_000_000_000
                while !state.release.load(ordering: .relaxed), FileOps.nowNanos() < deadline { usleep(1000) }
                state.heldToTheEnd.store(state.release.load(ordering: .relaxed), ordering: .relaxed)
            }
        }
        while !state.started.load(ordering: .relaxed) { try await Task.sleep(for: .milliseconds(1)) }

        let report = try await AdminClient.connect(.local(service)) { try await $0.fsck(Zerofs_Admin_V1_FsckRequest()) }
        let scrub = try await AdminClient.connect(.local(service)) { try await $0.scrub(Zerofs_Admin_V1_ScrubRequest()) }
        state.release.store(true, ordering: .relaxed)
        try await holder.value
        #expect(report.problems.isEmpty && scrub.failures.isEmpty)
        let held = state.heldToTheEnd.load(ordering: .relaxed)
        #expect(held, "fsck or scrub waited for the pool's thread")
        try await threads.shutdownGracefully()
        try pool.close()
        try store.close()
    }

}

/// A pool thread held by a test, and the test's signal to let it go.
private final class HeldThreads: Sendable {
    let started = Atomic<Bool>(false)
    let release = Atomic<Bool>(false)
    let heldToTheEnd = Atomic<Bool>(false)
}

/// A flag one thread sets and another reads.
private final class Flag: Sendable {
    let value = Atomic<Bool>(false)
}
