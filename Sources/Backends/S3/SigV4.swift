// AWS Signature Version 4 for S3 requests, as a pure function of the request, the
// credentials, the region and the time. Tests/BackendsTests/SigV4Tests.swift holds
// vectors made by botocore (Tests/BackendsTests/python/sigv4_vectors.py) and the S3
// documentation's own example.

import Crypto
import Foundation

/// An access key pair, with the session token of temporary credentials. Its description,
/// debug description and mirror show the first characters of the access key only.
public struct S3Credentials: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var accessKey: String
    public var secretKey: String
    public var sessionToken: String?

    public init(accessKey: String, secretKey: String, sessionToken: String? = nil) {
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.sessionToken = sessionToken
    }

    public var description: String {
        "access key \(accessKey.prefix(4))... (secret\(sessionToken == nil ? "" : " and session token") hidden)"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror { Mirror(self, children: ["credentials": description]) }
}

/// What signing a request produced. `headers` is everything to send: the caller's headers
/// plus x-amz-date, x-amz-content-sha256, x-amz-security-token (temporary credentials
/// only) and authorization. The canonical request carries the session token: never log it.
public struct SigV4Signature {
    public var headers: [(name: String, value: String)]
    public var canonicalRequest: String
    public var stringToSign: String
    public var authorization: String
}

/// Signs requests for one set of credentials, region and service.
public struct SigV4Signer: Sendable, CustomStringConvertible {
    public let credentials: S3Credentials
    public let region: String
    public let service: String

    public init(credentials: S3Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    public var description: String { "SigV4 signer (\(service), \(region), \(credentials))" }

    /// Signs a request. `path` is the raw (unencoded) path, such as "/bucket/dir/a b"; it is
    /// encoded here as it must also be on the wire (`SigV4.encodePath`). `query` holds raw
    /// names and values. `headers` must include host, exactly as it will be sent; every one
    /// of them is signed. `payloadHash` is the hex SHA-256 of the body (or "UNSIGNED-PAYLOAD").
    public func sign(
        method: String, path: String, query: [(String, String)], headers: [(String, String)],
        payloadHash: String, date: Date
    ) -> SigV4Signature {
        let timestamp = SigV4.timestamp(date)
        let day = String(timestamp.prefix(8))
        var sent = headers.map { (name: $0.0.lowercased(), value: $0.1) }
        sent.append((name: "x-amz-date", value: timestamp))
        sent.append((name: "x-amz-content-sha256", value: payloadHash))
        if let token = credentials.sessionToken { sent.append((name: "x-amz-security-token", value: token)) }

        // Headers of one name are joined with commas, in the order given.
        var values: [String: [String]] = [:]
        for header in sent { values[header.name, default: []].append(SigV4.trimmed(header.value)) }
        let names = values.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(values[$0]!.joined(separator: ","))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")

        let canonicalRequest = [
            method, SigV4.encodePath(path), SigV4.canonicalQuery(query), canonicalHeaders, signedHeaders, payloadHash,
        ].joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", timestamp, scope, SigV4.sha256Hex(Array(canonicalRequest.utf8))]
            .joined(separator: "\n")
        let key = SigV4.signingKey(secret: credentials.secretKey, day: day, region: region, service: service)
        let signature = SigV4.hex(SigV4.hmac(key, Array(stringToSign.utf8)))
        let authorization =
            "AWS4-HMAC-SHA256 Credential=\(credentials.accessKey)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        sent.append((name: "authorization", value: authorization))
        return SigV4Signature(
            headers: sent, canonicalRequest: canonicalRequest, stringToSign: stringToSign, authorization: authorization)
    }
}

/// The pieces of Signature V4, and the digests S3 requests need.
public enum SigV4 {
    /// The hex SHA-256 of an empty body.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// AWS URI encoding: every byte of the UTF-8 form except A-Z a-z 0-9 - _ . ~ becomes
    /// %XX (upper-case hex); '/' is kept when `keepingSlashes`.
    public static func encode(_ text: String, keepingSlashes: Bool) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if isUnreserved(byte) || (keepingSlashes && byte == UInt8(ascii: "/")) {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(upperHexDigits[Int(byte >> 4)])
                out.append(upperHexDigits[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The canonical URI of S3: the path encoded once, slashes kept (S3 neither normalizes
    /// nor double-encodes it).
    public static func encodePath(_ path: String) -> String { encode(path, keepingSlashes: true) }

    /// Names and values encoded, sorted by name then value, joined with '&'; a valueless
    /// parameter ("delete") is "delete=". Also the query string that goes on the wire.
    public static func canonicalQuery(_ items: [(String, String)]) -> String {
        var encoded: [(name: String, value: String)] = []
        for (name, value) in items {
            encoded.append((encode(name, keepingSlashes: false), encode(value, keepingSlashes: false)))
        }
        encoded.sort { (a: (name: String, value: String), b: (name: String, value: String)) -> Bool in
            a.name == b.name ? a.value < b.value : a.name < b.name
        }
        var pairs: [String] = []
        for item in encoded { pairs.append(item.name + "=" + item.value) }
        return pairs.joined(separator: "&")
    }

    /// A header value with leading and trailing whitespace removed and inner runs of it
    /// turned into one space.
    public static func trimmed(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).joined(separator: " ")
    }

    /// "yyyyMMdd'T'HHmmss'Z'" in UTC (no calendar or locale involved).
    public static func timestamp(_ date: Date) -> String {
        let seconds = Int64(date.timeIntervalSince1970.rounded(.down))
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let inDay = seconds - days * 86_400
        let (year, month, day) = civilDate(daysSince1970: days)
        return padded(year, 4) + padded(month, 2) + padded(day, 2) + "T"
            + padded(inDay / 3600, 2) + padded(inDay / 60 % 60, 2) + padded(inDay % 60, 2) + "Z"
    }

    /// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, day), region), service), "aws4_request").
    public static func signingKey(secret: String, day: String, region: String, service: String) -> [UInt8] {
        var key = Array(("AWS4" + secret).utf8)
        for part in [day, region, service, "aws4_request"] { key = hmac(key, Array(part.utf8)) }
        return key
    }

    public static func hmac(_ key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
    }

    public static func sha256Hex(_ bytes: [UInt8]) -> String { hex(SHA256.hash(data: bytes)) }

    /// The Content-MD5 header value: base64 of the MD5 digest.
    public static func contentMD5(_ bytes: [UInt8]) -> String { Data(Insecure.MD5.hash(data: bytes)).base64EncodedString() }

    public static func hex<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var out: [UInt8] = []
        for byte in bytes {
            out.append(lowerHexDigits[Int(byte >> 4)])
            out.append(lowerHexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static let upperHexDigits = Array("0123456789ABCDEF".utf8)
    private static let lowerHexDigits = Array("0123456789abcdef".utf8)

    private static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    private static func padded(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// The proleptic Gregorian date of a day count from 1970-01-01, by shifting to years
    /// that start on March 1 (so the leap day ends a year) in 400-year eras.
    private static func civilDate(daysSince1970 days: Int64) -> (Int64, Int64, Int64) {
        let shifted = days + 719_468  // days from 0000-03-01
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthFromMarch = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
        let month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }
}
