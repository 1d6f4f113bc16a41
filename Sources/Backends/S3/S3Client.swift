// The HTTP side of the S3 store: AsyncHTTPClients shared by the process; every request signed
// (SigV4, with the real SHA-256 of its body) and retried with capped exponential backoff
// and full jitter after connection errors, timeouts, 5xx and throttling. The caller's
// thread blocks on the reply, so a call made on an event loop thread fails (`send`); the
// storage stack calls it from its own threads.

import AsyncHTTPClient
import Engine
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

struct S3Request {
    var method: HTTPMethod
    /// The object's full key (store prefix included), or nil for the bucket itself.
    var key: String?
    var query: [(String, String)] = []
    var headers: [(String, String)] = []
    var body: [UInt8] = []
    var kind: S3RequestKind
}

struct S3Response {
    var status: Int
    var headers: HTTPHeaders
    var body: [UInt8]
    /// How many times the request was sent. Above 1, an earlier attempt may have taken
    /// effect although its reply was lost.
    var attempts: Int

    var isSuccess: Bool { (200..<300).contains(status) }

    func header(_ name: String) -> String? { headers.first(name: name) }
}

final class S3Client: Sendable {
    let settings: S3Settings
    let counters: S3Counters
    private let endpoint: S3Endpoint
    private let signer: SigV4Signer
    private let http: HTTPClient
    /// The store is in service and `on_outage = wait`: requests whose retries are used up
    /// go on trying (`S3ObjectStore.setInService`).
    let waitingOutOutages = Atomic<Bool>(false)

    init(settings: S3Settings, counters: S3Counters) throws {
        try settings.validate()
        self.settings = settings
        self.counters = counters
        endpoint = try S3Endpoint(settings.endpoint, allowHTTP: settings.allowHTTP)
        signer = SigV4Signer(credentials: settings.credentials, region: settings.region)
        http = Self.sharedClient(requestTimeout: settings.requestTimeout)
    }

    /// The process's HTTP clients, one per request timeout (the only setting of theirs a
    /// store chooses), never shut down. A client pools connections per endpoint, signs
    /// nothing and holds no credentials, so stores share them: a store that opens and
    /// closes makes no client, and no shutdown of one races its connections (a process
    /// that opened and closed stores by the hundred, as the tests do, made and shut
    /// down a client, with its connection pool, for each).
    private static let clients = Mutex<[Int64: HTTPClient]>([:])

    static func sharedClient(requestTimeout: Double) -> HTTPClient {
        let timeout = nanoseconds(requestTimeout)
        return clients.withLock { clients in
            if let client = clients[timeout] { return client }
            var configuration = HTTPClient.Configuration()
            // A redirect (a wrong region, say) would need a new signature: report it instead.
            configuration.redirectConfiguration = .disallow
            // Failed connections are retried here, with the backoff of the settings, not also
            // inside the pool until the deadline.
            configuration.connectionPool.retryConnectionEstablishment = false
            // The stores of the process share the connections to an endpoint (it was 8 per
            // store, AsyncHTTPClient's default, when each store had its own client).
            configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 32
            // Idle limits: no byte read, or none written, for a request timeout ends the attempt.
            configuration.timeout = HTTPClient.Configuration.Timeout(
                connect: .nanoseconds(min(timeout, 10_000_000_000)), read: .nanoseconds(timeout), write: .nanoseconds(timeout))
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
            clients[timeout] = client
            return client
        }
    }

    /// "s3://bucket/key" (or "s3://bucket"), for messages.
    func describe(_ key: String?) -> String {
        "s3://\(settings.bucket)" + (key.map { "/" + $0 } ?? "")
    }

    /// Sends a request, retrying as the settings say; returns the last reply whatever its
    /// status. Throws `.io` when no reply came after every attempt. While the store is in
    /// service with `on_outage = wait`, a request whose retries are used up keeps trying.
    func send(_ request: S3Request) throws -> S3Response {
        // A request waits for its reply, which SwiftNIO forbids on its event loop threads
        // (it traps): a store or writer let go of on one (its deinit closing or aborting)
        // gets this error instead.
        if MultiThreadedEventLoopGroup.currentEventLoop != nil {
            throw KVError(.io, "an S3 request cannot wait on a network event loop thread", path: describe(request.key))
        }
        let payloadHash = SigV4.sha256Hex(request.body)
        var attempt = 1
        var outage = Outage()
        while true {
            do {
                let response = try sendOnce(request, payloadHash: payloadHash, attempt: attempt)
                if !Self.isRetryable(response) {
                    outage.end(request, self)
                    return response
                }
                if attempt > settings.retries && !outage.waits(request, self, attempt: attempt, why: "HTTP \(response.status)") {
                    return response
                }
            } catch let error as KVError {
                throw error  // raised before sending: another attempt cannot help
            } catch {
                if attempt > settings.retries && !outage.waits(request, self, attempt: attempt, why: "no reply: \(error)") {
                    throw KVError(
                        .io, "\(request.method.rawValue) got no reply after \(attempt) attempt\(attempt == 1 ? "" : "s")",
                        path: describe(request.key), cause: "\(error)")
                }
            }
            backOff(before: attempt + 1)
            attempt += 1
        }
    }

    /// A request waiting out an outage (`on_outage = wait`): says so on standard error when
    /// it begins, every minute while it lasts, and when the request gets through.
    private struct Outage {
        var since: ContinuousClock.Instant?
        var reported: ContinuousClock.Instant?

        /// Whether the request goes on after its retries are used up.
        mutating func waits(_ request: S3Request, _ client: S3Client, attempt: Int, why: String) -> Bool {
            guard client.waitingOutOutages.load(ordering: .relaxed) else {
                if since != nil { client.report("\(request.method.rawValue) \(client.describe(request.key)): the store is closing; giving up") }
                return false
            }
            let now = ContinuousClock.now
            guard let start = since, let last = reported else {
                (since, reported) = (now, now)
                client.report(
                    "\(request.method.rawValue) \(client.describe(request.key)) still fails after \(attempt) attempts (\(why)); "
                        + "waiting for the endpoint to return (on_outage = wait)")
                return true
            }
            if now - last >= .seconds(60) {
                reported = now
                client.report("\(request.method.rawValue) \(client.describe(request.key)) still waiting after \(now - start) (\(why))")
            }
            return true
        }

        func end(_ request: S3Request, _ client: S3Client) {
            guard let since else { return }
            client.report("\(request.method.rawValue) \(client.describe(request.key)) went through after \(ContinuousClock.now - since)")
        }
    }

    /// One line on standard error, for the operator: the storage stack has no logger.
    func report(_ line: String) {
        FileHandle.standardError.write(Data(("s3: " + line + "\n").utf8))
    }

    /// The error for a reply the caller cannot use: operation, object, HTTP status and the
    /// S3 error code of the body.
    func failure(_ response: S3Response, _ operation: String, key: String?) -> KVError {
        let details = S3XML.error(response.body)
        var message = operation + ": "
        if response.status == 403 { message += "access denied (check credentials): " }
        message += "HTTP \(response.status)"
        if let code = details?.code { message += " \(code)" }
        if response.attempts > 1 { message += " after \(response.attempts) attempts" }
        return KVError(.io, message, path: describe(key), cause: details?.message)
    }

    /// Whether another attempt may succeed where this reply failed.
    static func isRetryable(_ response: S3Response) -> Bool {
        switch response.status {
        case 429, 500, 502, 503, 504:
            return true
        case 400, 409:
            // S3 says RequestTimeout when a body came too slowly, and
            // ConditionalRequestConflict when conditional writes of one key race.
            guard let code = S3XML.error(response.body)?.code else { return false }
            return ["RequestTimeout", "SlowDown", "ConditionalRequestConflict"].contains(code)
        default:
            return false
        }
    }

    private func sendOnce(_ request: S3Request, payloadHash: String, attempt: Int) throws -> S3Response {
        let path = endpoint.path(bucket: settings.bucket, key: request.key, addressing: settings.addressing)
        let authority = endpoint.authority(bucket: settings.bucket, addressing: settings.addressing)
        // Signed again for each attempt: the signature carries the time.
        let signature = signer.sign(
            method: request.method.rawValue, path: path, query: request.query,
            headers: [("host", authority)] + request.headers, payloadHash: payloadHash, date: Date())
        var headers = HTTPHeaders()
        for header in signature.headers { headers.add(name: header.name, value: header.value) }

        var url = endpoint.scheme + "://" + authority + SigV4.encodePath(path)
        if !request.query.isEmpty { url += "?" + SigV4.canonicalQuery(request.query) }
        let sendsBody = request.method == .PUT || request.method == .POST
        let body: HTTPClient.Body? = sendsBody ? HTTPClient.Body.bytes(request.body) : nil
        let httpRequest: HTTPClient.Request
        do {
            httpRequest = try HTTPClient.Request(url: url, method: request.method, headers: headers, body: body)
        } catch {
            throw KVError(.invalidArgument, "cannot make a request URL", path: describe(request.key), cause: "\(error)")
        }

        counters.sent(request.kind, bodyBytes: request.body.count)
        // The whole attempt: the request timeout plus the body at 64 KiB/s, so a slow link
        // can still send a table (16 MiB: 256 s more); a GET, whose size is not known
        // before, as much as 64 MiB takes at that rate. The idle limits above catch a
        // connection that stopped.
        let moved = sendsBody ? request.body.count : request.method == .GET ? 64 << 20 : 0
        let bodySeconds = Double(moved) / Double(S3Client.slowestUploadBytesPerSecond)
        let deadline = NIODeadline.now() + .nanoseconds(S3Client.nanoseconds(settings.requestTimeout + bodySeconds))
        let reply = try http.execute(request: httpRequest, deadline: deadline).wait()
        let received = reply.body.map { Array($0.readableBytesView) } ?? []
        counters.received(bodyBytes: received.count)
        return S3Response(status: Int(reply.status.code), headers: reply.headers, body: received, attempts: attempt)
    }

    /// Sleeps a random time below initialBackoff * 2^(attempt - 2), capped at maxBackoff.
    private func backOff(before attempt: Int) {
        let ceiling = min(settings.maxBackoff, settings.initialBackoff * Double(1 << min(attempt - 2, 30)))
        guard ceiling > 0 else { return }
        Thread.sleep(forTimeInterval: Double.random(in: 0...ceiling))
    }

    private static func nanoseconds(_ seconds: Double) -> Int64 { Int64(seconds * 1e9) }

    /// The slowest upload an attempt's deadline allows for (512 kbit/s).
    static let slowestUploadBytesPerSecond = 64 << 10
}
