// The Signature V4 signer against vectors botocore made (python/sigv4_vectors.py prints
// them again) and against the published examples of the AWS documentation.

import Foundation
import Testing

@testable import S3Store

struct SigV4Vector: Sendable, CustomStringConvertible {
    var name: String
    var method: String
    var path: String
    var query: [(String, String)] = []
    var headers: [(String, String)]
    var body = ""
    var region = "us-east-1"
    var sessionToken: String?
    var time: Double = 1_795_178_096  // 2026-11-20T12:34:56Z
    var accessKey = "AKIDZEROFSEXAMPLE"
    var secretKey = "zerofs/secret+key/EXAMPLE0123456789abcdef"
    var canonicalRequest: String
    var stringToSign: String
    var authorization: String

    var description: String { name }
}

@Suite struct SigV4Tests {
    static let vectors: [SigV4Vector] = [
        // The GET Object example of the S3 documentation (Authenticating Requests: Using
        // the Authorization Header); its published signature is f0e8bdb8...
        SigV4Vector(
            name: "aws-docs", method: "GET", path: "/test.txt",
            headers: [("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9")],
            time: 1_369_353_600, accessKey: "AKIAIOSFODNN7EXAMPLE", secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            canonicalRequest: """
                GET
                /test.txt

                host:examplebucket.s3.amazonaws.com
                range:bytes=0-9
                x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
                x-amz-date:20130524T000000Z

                host;range;x-amz-content-sha256;x-amz-date
                e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
                """,
            stringToSign: """
                AWS4-HMAC-SHA256
                20130524T000000Z
                20130524/us-east-1/s3/aws4_request
                7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972
                """,
            authorization: "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
        SigV4Vector(
            name: "list-with-query", method: "GET", path: "/zerofs-bucket",
            query: [("list-type", "2"), ("prefix", "db/sst/"), ("max-keys", "3"), ("continuation-token", "a+b/c==")],
            headers: [("host", "127.0.0.1:8333")],
            canonicalRequest: """
                GET
                /zerofs-bucket
                continuation-token=a%2Bb%2Fc%3D%3D&list-type=2&max-keys=3&prefix=db%2Fsst%2F
                host:127.0.0.1:8333
                x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
                x-amz-date:20261120T123456Z

                host;x-amz-content-sha256;x-amz-date
                e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
                """,
            stringToSign: """
                AWS4-HMAC-SHA256
                20261120T123456Z
                20261120/us-east-1/s3/aws4_request
                e084d7d70c02945dc6b096faef2dbef281ca92513ba54768cfc6b7d20e067c3c
                """,
            authorization: "AWS4-HMAC-SHA256 Credential=AKIDZEROFSEXAMPLE/20261120/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                + "Signature=8ded226ad4a304a27c2b99d56334c08a5986ee1c2c5b03dab2db1957042f0536"),
        SigV4Vector(
            name: "put-if-absent-with-token", method: "PUT", path: "/zerofs-bucket/db/manifest/00000001",
            headers: [("if-none-match", "*"), ("x-amz-meta-zerofs-put-id", "4f1c0de2a9b84e17"), ("host", "127.0.0.1:8333")],
            body: "hello, zerofs\n", region: "eu-west-1", sessionToken: "session/token+EXAMPLE==",
            canonicalRequest: """
                PUT
                /zerofs-bucket/db/manifest/00000001

                host:127.0.0.1:8333
                if-none-match:*
                x-amz-content-sha256:e85e78d184c89a7b6c85b9d1f480ec7512aa307fa3d4828cb5816edf1e7be0fd
                x-amz-date:20261120T123456Z
                x-amz-meta-zerofs-put-id:4f1c0de2a9b84e17
                x-amz-security-token:session/token+EXAMPLE==

                host;if-none-match;x-amz-content-sha256;x-amz-date;x-amz-meta-zerofs-put-id;x-amz-security-token
                e85e78d184c89a7b6c85b9d1f480ec7512aa307fa3d4828cb5816edf1e7be0fd
                """,
            stringToSign: """
                AWS4-HMAC-SHA256
                20261120T123456Z
                20261120/eu-west-1/s3/aws4_request
                bb3f94a772ff1934bed803b6d18202e392a461766dc2db631a6e2cbd28eedfb4
                """,
            authorization: "AWS4-HMAC-SHA256 Credential=AKIDZEROFSEXAMPLE/20261120/eu-west-1/s3/aws4_request, "
                + "SignedHeaders=host;if-none-match;x-amz-content-sha256;x-amz-date;x-amz-meta-zerofs-put-id;x-amz-security-token, "
                + "Signature=c26a0d2095796a4de3c213ad9190758352f2693cb8170425c3d93608e9b792ce"),
        SigV4Vector(
            name: "key-with-spaces-and-unicode", method: "GET", path: "/zerofs-bucket/db/dir with space/\u{FC}\u{20AC} +x~y.sst",
            headers: [("range", "bytes=100-199"), ("x-amz-meta-note", "  two   spaces  inside "), ("host", "localhost:9000")],
            canonicalRequest: """
                GET
                /zerofs-bucket/db/dir%20with%20space/%C3%BC%E2%82%AC%20%2Bx~y.sst

                host:localhost:9000
                range:bytes=100-199
                x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
                x-amz-date:20261120T123456Z
                x-amz-meta-note:two spaces inside

                host;range;x-amz-content-sha256;x-amz-date;x-amz-meta-note
                e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
                """,
            stringToSign: """
                AWS4-HMAC-SHA256
                20261120T123456Z
                20261120/us-east-1/s3/aws4_request
                646a28369c5cb3228d61808cca5360cdbc77246aea1f1204894de7491a936409
                """,
            authorization: "AWS4-HMAC-SHA256 Credential=AKIDZEROFSEXAMPLE/20261120/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date;x-amz-meta-note, "
                + "Signature=21bbb81d78b5e7585688272a26c7db4f8e68c0305e25e8415175fb0e0153e57c"),
        SigV4Vector(
            name: "batch-delete", method: "POST", path: "/zerofs-bucket", query: [("delete", "")],
            headers: [("content-md5", "FfW6eW2IWQ/995JSVQ9H7w=="), ("content-type", "application/xml"), ("host", "127.0.0.1:8333")],
            body: "<Delete><Quiet>true</Quiet><Object><Key>db/a</Key></Object></Delete>",
            canonicalRequest: """
                POST
                /zerofs-bucket
                delete=
                content-md5:FfW6eW2IWQ/995JSVQ9H7w==
                content-type:application/xml
                host:127.0.0.1:8333
                x-amz-content-sha256:d1f7439fbe500940f48aaf85a38ce07adad1a0c2207e81e0bc12d6b5e8773f2c
                x-amz-date:20261120T123456Z

                content-md5;content-type;host;x-amz-content-sha256;x-amz-date
                d1f7439fbe500940f48aaf85a38ce07adad1a0c2207e81e0bc12d6b5e8773f2c
                """,
            stringToSign: """
                AWS4-HMAC-SHA256
                20261120T123456Z
                20261120/us-east-1/s3/aws4_request
                eb420e4a031c0127cdf278dea003333ae43ea5f217c23322d03894dea31b2ee0
                """,
            authorization: "AWS4-HMAC-SHA256 Credential=AKIDZEROFSEXAMPLE/20261120/us-east-1/s3/aws4_request, "
                + "SignedHeaders=content-md5;content-type;host;x-amz-content-sha256;x-amz-date, "
                + "Signature=12aab08b1f77bfc56e6b5db0ec41f6973fb181e98b0a9b62c1be36ddaebe1dae"),
        SigV4Vector(
            name: "virtual-host", method: "HEAD", path: "/db/sst/00000000000000000007.sst",
            headers: [("host", "zerofs-bucket.s3.us-east-1.amazonaws.com")],
            canonicalRequest: """
                HEAD
                /db/sst/00000000000000000007.sst

                host:zerofs-bucket.s3.us-east-1.amazonaws.com
                x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
                x-amz-date:20261120T123456Z

                host;x-amz-content-sha256;x-amz-date
                e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
                """,
            stringToSign: """
                AWS4-HMAC-SHA256
                20261120T123456Z
                20261120/us-east-1/s3/aws4_request
                7bb0318c375a3667671a38a5663ac8949d4ca296f7fb6c1dd82c08db2d389b10
                """,
            authorization: "AWS4-HMAC-SHA256 Credential=AKIDZEROFSEXAMPLE/20261120/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                + "Signature=91d362a01bf0e5179e4c3d1065ef490e8c45074c9fc3b74cd20246cfe30fb59c"),
    ]

    @Test(arguments: SigV4Tests.vectors)
    func matchesBotocore(_ vector: SigV4Vector) {
        let credentials = S3Credentials(accessKey: vector.accessKey, secretKey: vector.secretKey, sessionToken: vector.sessionToken)
        let signer = SigV4Signer(credentials: credentials, region: vector.region)
        let signature = signer.sign(
            method: vector.method, path: vector.path, query: vector.query, headers: vector.headers,
            payloadHash: SigV4.sha256Hex(Array(vector.body.utf8)), date: Date(timeIntervalSince1970: vector.time))
        #expect(signature.canonicalRequest == vector.canonicalRequest)
        #expect(signature.stringToSign == vector.stringToSign)
        #expect(signature.authorization == vector.authorization)
        let sent = Dictionary(signature.headers.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
        #expect(sent["authorization"] == vector.authorization)
        #expect(sent["x-amz-date"] == String(vector.stringToSign.split(separator: "\n")[1]))
        #expect(sent["x-amz-security-token"] == vector.sessionToken)
    }

    /// "Examples of how to derive a signing key for Signature Version 4" (AWS General Reference).
    @Test func signingKeyOfThePublishedExample() {
        let key = SigV4.signingKey(secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", day: "20120215", region: "us-east-1", service: "iam")
        #expect(SigV4.hex(key) == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d")
    }

    @Test func uriEncoding() {
        #expect(SigV4.encode("AZaz09-_.~", keepingSlashes: false) == "AZaz09-_.~")
        #expect(SigV4.encode("a/b c+d=e&f", keepingSlashes: false) == "a%2Fb%20c%2Bd%3De%26f")
        #expect(SigV4.encodePath("/bucket/a b/\u{FC}*") == "/bucket/a%20b/%C3%BC%2A")
        #expect(SigV4.canonicalQuery([("b", "2"), ("a", "x y"), ("a", "1"), ("uploads", "")]) == "a=1&a=x%20y&b=2&uploads=")
        #expect(SigV4.trimmed("  a \t b  ") == "a b")
    }

    @Test func timestamps() {
        #expect(SigV4.timestamp(Date(timeIntervalSince1970: 0)) == "19700101T000000Z")
        #expect(SigV4.timestamp(Date(timeIntervalSince1970: 946_684_799)) == "19991231T235959Z")
        #expect(SigV4.timestamp(Date(timeIntervalSince1970: 951_868_800)) == "20000301T000000Z")
        #expect(SigV4.timestamp(Date(timeIntervalSince1970: 1_709_251_199.75)) == "20240229T235959Z")
        #expect(SigV4.timestamp(Date(timeIntervalSince1970: 1_795_178_096)) == "20261120T123456Z")
    }

    @Test func digests() {
        #expect(SigV4.sha256Hex([]) == SigV4.emptyPayloadHash)
        #expect(SigV4.sha256Hex(Array("hello, zerofs\n".utf8)) == "e85e78d184c89a7b6c85b9d1f480ec7512aa307fa3d4828cb5816edf1e7be0fd")
        let body = Array("<Delete><Quiet>true</Quiet><Object><Key>db/a</Key></Object></Delete>".utf8)
        #expect(SigV4.contentMD5(body) == "FfW6eW2IWQ/995JSVQ9H7w==")
    }

    @Test func secretsStayOutOfDescriptions() {
        let credentials = S3Credentials(accessKey: "AKIDZEROFSEXAMPLE", secretKey: "very-secret-key", sessionToken: "very-secret-token")
        let settings = S3Settings(bucket: "b", endpoint: "https://s3.example.com", credentials: credentials)
        var dumped = ""
        dump(settings, to: &dumped)
        let texts = [
            "\(credentials)", String(reflecting: credentials), "\(settings)", String(reflecting: settings), dumped,
            "\(SigV4Signer(credentials: credentials, region: "us-east-1"))",
        ]
        for text in texts {
            #expect(!text.contains("very-secret"), "\(text)")
            #expect(!text.contains("AKIDZEROFSEXAMPLE"), "\(text)")
        }
    }
}
