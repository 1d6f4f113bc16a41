// An ObjectStore on an S3-compatible bucket (issue 8). Object NAME is the key
// "prefix/NAME". put is one PUT, durable when S3 answers 200; putIfAbsent is a PUT with
// If-None-Match: * that carries a fresh id in user metadata, so that a retry meeting 412
// can tell its own earlier success (the stored id is ours) from another writer's object;
// large objects go up as multipart uploads (S3MultipartWriter). Opening checks that the
// endpoint honours conditional PUT, on which put-if-absent, and so the lsm backend's
// manifests and writer fencing, depend.
//
// Thread safety: every method may be called from any thread at once, but never from an
// event loop thread (each call blocks until S3 answers).

import Engine
import NIOHTTP1
import ObjectStore

public final class S3ObjectStore: ObjectStore, ObjectOperationCounting {
    /// Request and byte counts since the store was made.
    public let counters: S3Counters
    public let location: String
    let client: S3Client
    private let prefix: String

    /// The user-metadata header holding the id of the put that wrote an object.
    static let putIDHeader = "x-amz-meta-zerofs-put-id"

    /// Connects to the bucket; with `verifyConditionalPut` (the default) first checks that the
    /// endpoint refuses a second PUT with If-None-Match: *. Throws `.invalidArgument` for bad
    /// settings or an endpoint without conditional PUT, `.io` when S3 cannot be reached.
    public init(settings: S3Settings, verifyConditionalPut: Bool = true) throws {
        counters = S3Counters()
        client = try S3Client(settings: settings, counters: counters)
        prefix = settings.prefix
        location = "s3://\(settings.bucket)/\(settings.prefix) at \(settings.endpoint)"
        if verifyConditionalPut { try self.verifyConditionalPut() }
    }

    public func objectOperations() -> ObjectOperations { counters.snapshot() }

    public func setInService(_ inService: Bool) {
        client.waitingOutOutages.store(inService && client.settings.onOutage == .wait, ordering: .relaxed)
    }

    /// The key of object `name`.
    func key(_ name: String) -> String { prefix.isEmpty ? name : prefix + "/" + name }

    public func get(_ name: String) throws -> [UInt8]? {
        let response = try client.send(S3Request(method: .GET, key: key(name), kind: .get))
        if response.isSuccess { return response.body }
        if Self.isMissingObject(response) { return nil }
        throw client.failure(response, "GET", key: key(name))
    }

    public func open(_ name: String) throws -> (any ReadableObject)? {
        let response = try client.send(S3Request(method: .HEAD, key: key(name), kind: .head))
        if response.status == 404 { return nil }
        guard response.isSuccess else { throw client.failure(response, "HEAD", key: key(name)) }
        guard let length = response.header("content-length").flatMap({ Int($0) }), length >= 0 else {
            throw KVError(.io, "HEAD: reply without a Content-Length", path: client.describe(key(name)))
        }
        return S3ReadableObject(name: name, key: key(name), size: length, etag: response.header("etag"), client: client)
    }

    public func put(_ name: String, _ bytes: [UInt8]) throws {
        let response = try client.send(S3Request(method: .PUT, key: key(name), body: bytes, kind: .put))
        guard response.isSuccess else { throw client.failure(response, "PUT", key: key(name)) }
    }

    public func putIfAbsent(_ name: String, _ bytes: [UInt8]) throws -> Bool {
        try putIfAbsent(name, bytes, putID: Self.newPutID())
    }

    /// putIfAbsent with a given id (tests choose it to play a lost reply).
    func putIfAbsent(_ name: String, _ bytes: [UInt8], putID: String) throws -> Bool {
        switch try putIfAbsentOrCut(name, bytes, putID: putID) {
        case .written: return true
        case .taken: return false
        case .cutShort: return try replaceCut(name, bytes)
        }
    }

    public func putIfAbsentOrCut(_ name: String, _ bytes: [UInt8]) throws -> PutIfAbsentOutcome {
        try putIfAbsentOrCut(name, bytes, putID: Self.newPutID())
    }

    /// putIfAbsentOrCut with a given id (tests choose it).
    func putIfAbsentOrCut(_ name: String, _ bytes: [UInt8], putID: String) throws -> PutIfAbsentOutcome {
        let request = S3Request(
            method: .PUT, key: key(name), headers: [("if-none-match", "*"), (Self.putIDHeader, putID)], body: bytes, kind: .put)
        let response = try client.send(request)
        if response.isSuccess { return .written }
        guard response.status == 412 else { throw client.failure(response, "PUT if absent", key: key(name)) }
        switch try refusedPut(name, putID: putID, attempts: response.attempts, size: bytes.count) {
        case .theirs: return .taken
        case .ours: return .written
        case .oursCut: return .cutShort
        }
    }

    /// What is in the way of a put-if-absent refused with 412.
    enum RefusedPut {
        /// Another writer's object.
        case theirs
        /// The first attempt's, whose reply was lost.
        case ours
        /// The first attempt's, but shorter than what it sent: SeaweedFS 4.48 keeps an
        /// empty object, with its metadata, for a PUT whose connection closed before its
        /// body (checked by hand: headers sent, then the connection closed).
        case oursCut
    }

    /// What the object in the way of a put-if-absent of `size` bytes is, after `attempts`
    /// sends: after a retry it may be the first attempt's, which its stored id tells.
    func refusedPut(_ name: String, putID: String, attempts: Int, size: Int) throws -> RefusedPut {
        guard attempts > 1, let stored = try storedObject(name), stored.putID == putID else { return .theirs }
        return stored.size == size ? .ours : .oursCut
    }

    /// Replaces what an interrupted attempt of this put left under `name` (taking it for
    /// written would acknowledge bytes never stored), then answers whether the put stands:
    /// false when a later name in the same folder appeared. Names in a folder are put in
    /// increasing order (WAL objects, manifests), and a writer taking over puts its fence
    /// after the newest object it lists and reads the objects only after that: if no
    /// later name exists once the whole object is in place, any later reader sees it
    /// whole; if one does, a reader may have seen the cut object, and the put must not
    /// count (the caller then answers as fenced).
    func replaceCut(_ name: String, _ bytes: [UInt8]) throws -> Bool {
        try put(name, bytes)
        let folder = name.lastIndex(of: "/").map { String(name[...$0]) } ?? ""
        return try !list(prefix: folder).contains { $0 > name }
    }

    /// The put id stored with an object, or nil when it has none or does not exist.
    func storedPutID(_ name: String) throws -> String? {
        try storedObject(name)?.putID
    }

    /// An object's stored put id and size, or nil when it does not exist.
    func storedObject(_ name: String) throws -> (putID: String?, size: Int)? {
        let response = try client.send(S3Request(method: .HEAD, key: key(name), kind: .head))
        if response.status == 404 { return nil }
        guard response.isSuccess else { throw client.failure(response, "HEAD", key: key(name)) }
        guard let size = response.header("content-length").flatMap({ Int($0) }), size >= 0 else {
            throw KVError(.io, "HEAD: reply without a Content-Length", path: client.describe(key(name)))
        }
        return (response.header(Self.putIDHeader), size)
    }

    public func list(prefix namePrefix: String) throws -> [String] {
        let keyPrefix = key(namePrefix)
        let strip = prefix.isEmpty ? 0 : prefix.utf8.count + 1
        var names: [String] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", keyPrefix), ("max-keys", String(client.settings.listPageSize))]
            if let token { query.append(("continuation-token", token)) }
            let response = try client.send(S3Request(method: .GET, key: nil, query: query, kind: .list))
            guard response.isSuccess else { throw client.failure(response, "LIST \(keyPrefix)", key: nil) }
            guard let page = S3XML.listPage(response.body) else {
                throw KVError(.io, "LIST \(keyPrefix): unreadable reply", path: client.describe(nil))
            }
            for key in page.keys where key.hasPrefix(keyPrefix) {
                names.append(String(decoding: key.utf8.dropFirst(strip), as: UTF8.self))
            }
            token = page.next
        } while token != nil
        return names.sorted()
    }

    public func delete(_ name: String) throws {
        let response = try client.send(S3Request(method: .DELETE, key: key(name), kind: .delete))
        guard response.isSuccess || response.status == 404 else { throw client.failure(response, "DELETE", key: key(name)) }
    }

    /// Deletes many objects, up to `deleteBatchSize` per request; absent ones are not an
    /// error. Throws `.io` naming the first object S3 could not delete.
    public func deleteMany(_ names: [String]) throws {
        let batch = client.settings.deleteBatchSize
        for start in stride(from: 0, to: names.count, by: batch) {
            let keys = names[start..<min(start + batch, names.count)].map { key($0) }
            let body = S3XML.deleteRequest(keys: keys)
            let request = S3Request(
                method: .POST, key: nil, query: [("delete", "")],
                headers: [("content-md5", SigV4.contentMD5(body)), ("content-type", "application/xml")], body: body,
                kind: .delete)
            let response = try client.send(request)
            guard response.isSuccess else { throw client.failure(response, "DELETE \(keys.count) objects", key: nil) }
            let failures = S3XML.deleteErrors(response.body).filter { $0.code != "NoSuchKey" }
            if let first = failures.first {
                throw KVError(
                    .io, "batch delete: \(failures.count) of \(keys.count) objects not deleted, the first with \(first.code)",
                    path: client.describe(first.key), cause: first.message)
            }
        }
    }

    public func makeWriter(_ name: String) throws -> any ObjectWriter {
        S3MultipartWriter(store: self, name: name, partSize: client.settings.partSize)
    }

    /// PUTs a probe object twice with If-None-Match: *, requires the second to be refused
    /// with 412, and deletes the probe. Throws `.invalidArgument` when the endpoint stores
    /// the second PUT (it ignores the condition), `.io` when it cannot be reached or refuses
    /// the first PUT.
    public func verifyConditionalPut() throws {
        let name = ".zerofs-probe-" + Self.newPutID()
        defer { try? delete(name) }
        let probe = S3Request(
            method: .PUT, key: key(name), headers: [("if-none-match", "*")],
            body: Array("zerofs conditional PUT probe\n".utf8), kind: .put)
        let first = try client.send(probe)
        // A 412 after a retry is our own first attempt, whose reply was lost.
        guard first.isSuccess || (first.status == 412 && first.attempts > 1) else {
            throw client.failure(first, "PUT (conditional PUT probe)", key: key(name))
        }
        let second = try client.send(probe)
        guard second.status == 412 else {
            throw KVError(
                .invalidArgument,
                "endpoint \(client.settings.endpoint) does not honour conditional PUT (If-None-Match: *): a second PUT of "
                    + "\(key(name)) got HTTP \(second.status), not 412 Precondition Failed; put-if-absent, and with it "
                    + "the lsm backend's manifest commits and writer fencing, would be unsafe on it",
                path: location)
        }
    }

    /// Creates the bucket, or does nothing when this account already owns it.
    public func createBucket() throws {
        let region = client.settings.region
        let body = region == "us-east-1" ? [] : S3XML.createBucketRequest(region: region)
        let response = try client.send(S3Request(method: .PUT, key: nil, body: body, kind: .put))
        if response.isSuccess { return }
        if response.status == 409, S3XML.error(response.body)?.code == "BucketAlreadyOwnedByYou" { return }
        throw client.failure(response, "create bucket", key: nil)
    }

    /// Ends a multipart upload without an object; one already gone is fine.
    func abortUpload(key: String, uploadID: String) throws {
        let response = try client.send(S3Request(method: .DELETE, key: key, query: [("uploadId", uploadID)], kind: .delete))
        guard response.isSuccess || response.status == 404 else {
            throw client.failure(response, "abort multipart upload", key: key)
        }
    }

    /// A 404 for a missing key; a missing bucket is an error, not an empty answer.
    static func isMissingObject(_ response: S3Response) -> Bool {
        response.status == 404 && S3XML.error(response.body)?.code != "NoSuchBucket"
    }

    /// 128 random bits in hex.
    static func newPutID() -> String {
        SigV4.hex((0..<16).map { _ in UInt8.random(in: 0...255) })
    }
}

/// An object opened for ranged reads: its size and ETag come from a HEAD; each read is a
/// GET with Range, and If-Match on that ETag so that an object replaced since opening is
/// reported instead of mixing two versions.
final class S3ReadableObject: ReadableObject {
    let name: String
    let size: Int
    private let key: String
    private let etag: String?
    private let client: S3Client

    init(name: String, key: String, size: Int, etag: String?, client: S3Client) {
        self.name = name
        self.key = key
        self.size = size
        self.etag = etag
        self.client = client
    }

    func read(offset: Int, length: Int) throws -> [UInt8] {
        guard offset >= 0, length >= 0, offset <= size - length else {
            throw KVError(.corruption, "read of \(length) bytes at \(offset) is past the end (\(size) bytes)", path: client.describe(key))
        }
        if length == 0 { return [] }  // S3 has no empty range: bytes=a-(a-1) is refused
        var headers = [("range", "bytes=\(offset)-\(offset + length - 1)")]
        if let etag { headers.append(("if-match", etag)) }
        let response = try client.send(S3Request(method: .GET, key: key, headers: headers, kind: .get))
        let bytes: [UInt8]
        switch response.status {
        case 206:
            bytes = response.body
        case 200:
            // A server that ignores Range sends the whole object.
            bytes = response.body.count >= offset + length ? Array(response.body[offset..<(offset + length)]) : []
        case 412:
            throw KVError(.corruption, "object was replaced after it was opened", path: client.describe(key))
        case 404:
            throw KVError(.io, "object disappeared after it was opened", path: client.describe(key))
        default:
            throw client.failure(response, "GET bytes \(offset)-\(offset + length - 1)", key: key)
        }
        guard bytes.count == length else {
            throw KVError(
                .corruption, "object ended early: \(bytes.count) of \(length) bytes at \(offset)", path: client.describe(key))
        }
        return bytes
    }
}
