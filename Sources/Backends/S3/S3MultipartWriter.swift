// A large object written piece by piece: bytes collect in memory until they pass the part
// size, then go up as parts of one multipart upload (started with the first full part);
// commit sends the rest as the last part and completes the upload, or, for an object
// that never passed one part, puts it whole. Nothing is visible under the name before
// commit. abort (or release without commit) aborts the upload; one left behind by a crash
// costs storage until a bucket lifecycle rule removes incomplete uploads.

import Engine
import NIOHTTP1
import ObjectStore

final class S3MultipartWriter: ObjectWriter {
    private enum State { case open, committed, aborted }

    private let store: S3ObjectStore
    private let name: String
    private let key: String
    private let partSize: Int
    /// Stored with the object, so that a completion retried after a lost reply can
    /// recognise its own object.
    private let putID = S3ObjectStore.newPutID()
    private var buffer: [UInt8] = []
    private var uploadID: String?
    private var parts: [(number: Int, etag: String)] = []
    private var state = State.open

    init(store: S3ObjectStore, name: String, partSize: Int) {
        self.store = store
        self.name = name
        self.key = store.key(name)
        self.partSize = partSize
    }

    deinit { abort() }

    private var client: S3Client { store.client }

    func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard state == .open else { throw KVError(.io, "object writer is closed", path: client.describe(key)) }
        buffer.append(contentsOf: bytes)
        // Strictly more than a part, so the last part is never empty.
        while buffer.count > partSize {
            try uploadPart(Array(buffer[..<partSize]))
            buffer.removeFirst(partSize)
        }
    }

    func commit() throws {
        guard state == .open else { throw KVError(.io, "object writer is closed", path: client.describe(key)) }
        if let uploadID {
            try uploadPart(buffer)
            try complete(uploadID)
        } else {
            try store.put(name, buffer)
        }
        // On a failure above the state stays open, so abort (or deinit) still cleans up.
        state = .committed
        buffer = []
    }

    func abort() {
        guard state == .open else { return }
        state = .aborted
        buffer = []
        if let uploadID { try? store.abortUpload(key: key, uploadID: uploadID) }
    }

    private func uploadPart(_ bytes: [UInt8]) throws {
        let id = try uploadID ?? startUpload()
        let number = parts.count + 1
        let response = try client.send(
            S3Request(method: .PUT, key: key, query: [("partNumber", String(number)), ("uploadId", id)], body: bytes, kind: .put))
        guard response.isSuccess else { throw client.failure(response, "upload part \(number)", key: key) }
        guard let etag = response.header("etag") else {
            throw KVError(.io, "upload part \(number): reply without an ETag", path: client.describe(key))
        }
        parts.append((number: number, etag: etag))
    }

    private func startUpload() throws -> String {
        let response = try client.send(
            S3Request(method: .POST, key: key, query: [("uploads", "")], headers: [(S3ObjectStore.putIDHeader, putID)], kind: .put))
        guard response.isSuccess else { throw client.failure(response, "start multipart upload", key: key) }
        guard let id = S3XML.parse(response.body)?.trimmedValue("UploadId"), !id.isEmpty else {
            throw KVError(.io, "start multipart upload: reply without an UploadId", path: client.describe(key))
        }
        uploadID = id
        return id
    }

    private func complete(_ id: String) throws {
        let response = try client.send(
            S3Request(
                method: .POST, key: key, query: [("uploadId", id)], headers: [("content-type", "application/xml")],
                body: S3XML.completeRequest(parts: parts), kind: .put))
        if response.isSuccess {
            // S3 may answer 200 and fail later in the reply: the error is then the body.
            if let error = S3XML.error(response.body) {
                throw KVError(.io, "complete multipart upload: \(error.code)", path: client.describe(key), cause: error.message)
            }
            return
        }
        // Retried after a lost reply, the upload is gone because the first attempt completed
        // it; the object then carries our id.
        if response.status == 404, response.attempts > 1, try store.storedPutID(name) == putID { return }
        throw client.failure(response, "complete multipart upload", key: key)
    }
}
