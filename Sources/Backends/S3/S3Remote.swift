// A store's remote location: "s3://bucket[/prefix]" and the settings that reach it, as
// BackendOptions.remote carries them (the configuration's [storage.s3] section fills them).
// Credentials and region fall back to the usual AWS environment variables.

import Engine
import ObjectStore

#if canImport(Glibc)
import Glibc
#endif

public enum S3Remote {
    /// The settings keys, as in the configuration's [storage.s3] section.
    public static let keys: [String] = [
        "endpoint", "region", "access_key_id", "secret_access_key", "session_token", "addressing", "allow_http",
        "request_timeout_seconds", "retries", "on_outage",
    ]

    /// Opens the S3 object store `location` names, checking that the endpoint honours
    /// conditional PUT, unless it is opened only to read (`BackendOptions.remoteReadOnlyKey`): the check writes
    /// a probe object, which a replica's read-only credentials may not. Throws
    /// `.invalidArgument` for a bad location or setting (naming it, never a secret), `.io`
    /// when the endpoint cannot be reached.
    public static func open(_ location: String, _ settings: [String: String]) throws -> any ObjectStore {
        var settings = settings
        let readOnly = settings.removeValue(forKey: BackendOptions.remoteReadOnlyKey) == "true"
        return try S3ObjectStore(settings: try self.settings(location, settings, environment: currentEnvironment()), verifyConditionalPut: !readOnly)
    }

    /// The S3 settings of `location` from `settings`, then the environment: AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION (or AWS_DEFAULT_REGION) and
    /// AWS_ENDPOINT_URL.
    public static func settings(_ location: String, _ settings: [String: String], environment: [String: String]) throws -> S3Settings {
        func refuse(_ message: String) -> KVError { KVError(.invalidArgument, message, path: location) }
        guard location.hasPrefix("s3://") else { throw refuse("a remote store's location must be s3://bucket[/prefix]") }
        for key in settings.keys where !keys.contains(key) {
            throw refuse("unknown S3 setting '\(key)' (known: \(keys.joined(separator: ", ")))")
        }
        var rest = String(location.dropFirst(5))
        while rest.hasSuffix("/") { rest.removeLast() }
        let bucket: String
        var prefix = ""
        if let slash = rest.firstIndex(of: "/") {
            bucket = String(rest[..<slash])
            prefix = String(rest[rest.index(after: slash)...])
        } else {
            bucket = rest
        }
        guard !bucket.isEmpty else { throw refuse("no bucket in \(location)") }
        func value(_ key: String, _ variables: [String]) -> String? {
            if let set = settings[key], !set.isEmpty { return set }
            for variable in variables { if let set = environment[variable], !set.isEmpty { return set } }
            return nil
        }
        guard let endpoint = value("endpoint", ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]) else {
            throw refuse("no S3 endpoint: set storage.s3.endpoint (such as https://s3.eu-west-1.amazonaws.com) or AWS_ENDPOINT_URL")
        }
        guard let accessKey = value("access_key_id", ["AWS_ACCESS_KEY_ID"]),
              let secretKey = value("secret_access_key", ["AWS_SECRET_ACCESS_KEY"])
        else {
            throw refuse("no S3 credentials: set storage.s3.access_key_id and secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        }
        var result = S3Settings(
            bucket: bucket, prefix: prefix, endpoint: endpoint, region: value("region", ["AWS_REGION", "AWS_DEFAULT_REGION"]) ?? "us-east-1",
            credentials: S3Credentials(accessKey: accessKey, secretKey: secretKey, sessionToken: value("session_token", ["AWS_SESSION_TOKEN"])))
        if let text = settings["addressing"] {
            guard let addressing = S3Settings.Addressing(rawValue: text) else { throw refuse("addressing must be path or virtual-host, got \(text)") }
            result.addressing = addressing
        }
        if let text = settings["allow_http"] {
            guard let allow = Bool(text) else { throw refuse("allow_http must be true or false, got \(text)") }
            result.allowHTTP = allow
        }
        if let text = settings["request_timeout_seconds"] {
            guard let seconds = Double(text), seconds > 0, seconds <= 3600 else { throw refuse("request_timeout_seconds must be above 0 and at most 3600, got \(text)") }
            result.requestTimeout = seconds
        }
        if let text = settings["retries"] {
            guard let retries = Int(text), (0...100).contains(retries) else { throw refuse("retries must be 0 to 100, got \(text)") }
            result.retries = retries
        }
        if let text = settings["on_outage"] {
            guard let mode = S3Settings.OutageMode(rawValue: text) else { throw refuse("on_outage must be wait or fail, got \(text)") }
            result.onOutage = mode
        }
        try result.validate()
        return result
    }

    /// Checks the location and every setting given, as a configuration file is read: the
    /// endpoint and credentials may still come from the environment when the store opens,
    /// so their absence is not an error here.
    public static func validate(_ location: String, _ settings: [String: String]) throws {
        let stand = ["AWS_ENDPOINT_URL": "https://s3.amazonaws.com", "AWS_ACCESS_KEY_ID": "-", "AWS_SECRET_ACCESS_KEY": "-"]
        _ = try self.settings(location, settings, environment: stand)
    }

    static func currentEnvironment() -> [String: String] {
        var result: [String: String] = [:]
        for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
                     "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"] {
            if let value = getenv(name) { result[name] = String(cString: value) }
        }
        return result
    }
}
