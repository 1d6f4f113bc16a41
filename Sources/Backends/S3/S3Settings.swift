// How an S3 store reaches its bucket: endpoint, addressing, region, credentials, and the
// limits of timeouts, retries, list pages, batch deletes and multipart parts. Neither
// description shows the secret key or the session token.

import Engine
import Foundation

public struct S3Settings: Sendable, CustomStringConvertible {
    /// Path style puts the bucket in the path (http://host/bucket/key), which local servers
    /// expect; virtual-host style puts it in the host name (http://bucket.host/key).
    public enum Addressing: String, Sendable {
        case path
        case virtualHost = "virtual-host"
    }

    /// What a request does once its retries are used up against an endpoint that is down
    /// or throttling (the failures `retries` counts): `wait` goes on trying, `max_backoff`
    /// apart, for as long as the store is in service (the lsm backend opened it and has
    /// not begun to close it), as ZFS's `failmode=wait` holds I/O until the pool's disks
    /// return; `fail` gives up with `.io`, which stops an lsm writer until it is
    /// restarted. Opening a store always gives up, so a wrong endpoint is reported.
    public enum OutageMode: String, Sendable {
        case wait
        case fail
    }

    public var bucket: String
    /// Objects live under "prefix/NAME"; empty puts them at the bucket's root. No leading or
    /// trailing '/'.
    public var prefix: String
    /// scheme://host[:port], such as "https://s3.eu-west-1.amazonaws.com" or
    /// "http://127.0.0.1:8333"; no path.
    public var endpoint: String
    public var region: String
    public var credentials: S3Credentials
    public var addressing: Addressing
    /// Plain http:// endpoints are refused unless this is set (local servers only: the
    /// traffic, objects included, is unencrypted).
    public var allowHTTP: Bool
    /// Seconds one HTTP exchange may take before it counts as failed (and is retried).
    public var requestTimeout: Double
    /// Further attempts after a failed one: connection errors, timeouts, HTTP 500, 502, 503,
    /// 504, 429 and S3's SlowDown, RequestTimeout and ConditionalRequestConflict.
    public var retries: Int
    /// The backoff before the first retry, in seconds; it doubles with each attempt up to
    /// `maxBackoff`, and the wait is drawn uniformly below it (full jitter).
    public var initialBackoff: Double
    public var maxBackoff: Double
    public var onOutage: OutageMode
    /// Keys asked for per ListObjectsV2 page (S3 answers at most 1,000).
    public var listPageSize: Int
    /// Keys per DeleteObjects request (S3 takes at most 1,000).
    public var deleteBatchSize: Int
    /// Bytes per multipart part; at least 5 MiB, S3's minimum for every part but the last.
    public var partSize: Int

    public static let minimumPartSize = 5 << 20

    public init(
        bucket: String, prefix: String = "", endpoint: String, region: String = "us-east-1",
        credentials: S3Credentials, addressing: Addressing = .path, allowHTTP: Bool = false,
        requestTimeout: Double = 30, retries: Int = 10, initialBackoff: Double = 0.05, maxBackoff: Double = 5,
        onOutage: OutageMode = .wait, listPageSize: Int = 1000, deleteBatchSize: Int = 1000, partSize: Int = 32 << 20
    ) {
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.region = region
        self.credentials = credentials
        self.addressing = addressing
        self.allowHTTP = allowHTTP
        self.requestTimeout = requestTimeout
        self.retries = retries
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.onOutage = onOutage
        self.listPageSize = listPageSize
        self.deleteBatchSize = deleteBatchSize
        self.partSize = partSize
    }

    public var description: String {
        "s3://\(bucket)/\(prefix) at \(endpoint) (\(region), \(addressing.rawValue) addressing, \(credentials))"
    }

    /// Throws `.invalidArgument` naming the first setting out of its range.
    public func validate() throws {
        func refuse(_ message: String) -> KVError { KVError(.invalidArgument, message, path: "s3://\(bucket)/\(prefix)") }
        if bucket.isEmpty || bucket.contains("/") { throw refuse("bucket name '\(bucket)' is empty or holds a '/'") }
        if prefix.hasPrefix("/") || prefix.hasSuffix("/") { throw refuse("prefix '\(prefix)' must not start or end with '/'") }
        if region.isEmpty { throw refuse("region is empty") }
        if credentials.accessKey.isEmpty || credentials.secretKey.isEmpty { throw refuse("access key or secret key is empty") }
        // Finite and bounded: they become nanosecond counts and random ranges.
        if !(requestTimeout > 0 && requestTimeout <= 3600) { throw refuse("request timeout must be above 0 and at most 3600 seconds") }
        if retries < 0 || !(initialBackoff >= 0) || !(maxBackoff >= initialBackoff) || !(maxBackoff <= 3600) {
            throw refuse("retries and backoffs must be non-negative, the maximum backoff at least the initial one and at most 3600 seconds")
        }
        if !(1...1000).contains(listPageSize) { throw refuse("list page size must be 1 to 1000") }
        if !(1...1000).contains(deleteBatchSize) { throw refuse("delete batch size must be 1 to 1000") }
        if partSize < Self.minimumPartSize { throw refuse("part size must be at least 5 MiB (S3's minimum)") }
        _ = try S3Endpoint(endpoint, allowHTTP: allowHTTP)
    }
}

/// An endpoint taken apart: scheme, host (an IPv6 literal keeps its brackets) and port.
struct S3Endpoint: Sendable, Equatable {
    let scheme: String
    let host: String
    let port: Int?

    init(_ text: String, allowHTTP: Bool) throws {
        func refuse(_ why: String) -> KVError { KVError(.invalidArgument, "endpoint '\(text)' \(why)") }
        guard let separator = text.range(of: "://") else { throw refuse("is not scheme://host[:port]") }
        scheme = text[..<separator.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { throw refuse("is neither http nor https") }
        guard scheme == "https" || allowHTTP else {
            throw refuse("is plain http: objects and signatures would cross the network unencrypted; allow http only for local servers")
        }
        var authority = String(text[separator.upperBound...])
        while authority.hasSuffix("/") { authority.removeLast() }
        guard !authority.isEmpty, !authority.contains(where: { "/?#@ ".contains($0) }) else {
            throw refuse("must be scheme://host[:port], without a path, query or user")
        }
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw refuse("has an unclosed '['") }
            host = String(authority[...close])
            let rest = authority[authority.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw refuse("has text after its IPv6 address") }
                portText = rest.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        if let portText {
            guard let value = Int(portText), (1...65_535).contains(value) else { throw refuse("has a bad port") }
            port = value
        } else {
            port = nil
        }
        guard !host.isEmpty else { throw refuse("has no host") }
    }

    /// The Host header (and URL authority) of requests for `bucket`.
    func authority(bucket: String, addressing: S3Settings.Addressing) -> String {
        let name = addressing == .virtualHost ? bucket + "." + host : host
        return port.map { "\(name):\($0)" } ?? name
    }

    /// The raw path of `key` in `bucket`, or of the bucket itself when `key` is nil.
    func path(bucket: String, key: String?, addressing: S3Settings.Addressing) -> String {
        switch addressing {
        case .path: return key.map { "/\(bucket)/\($0)" } ?? "/\(bucket)"
        case .virtualHost: return "/" + (key ?? "")
        }
    }
}
