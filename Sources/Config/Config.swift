// The TOML configuration file of `zerofs` (Docs/config.md): which store, how it is tuned,
// the filesystem's options, the server addresses and logging. Every key is known; an
// unknown key or a bad value is refused with the file, the key and the reason. String
// values expand ${VAR} from the environment ($$ is a literal '$').

import Engine
import FS
import LSMBackend
import S3Store
import TOMLKit

#if canImport(Glibc)
import Glibc
#endif

/// A configuration error: the file, the key (dotted, empty for the file as a whole) and why.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var key: String
    public var reason: String

    public init(file: String, key: String, reason: String) {
        self.file = file
        self.key = key
        self.reason = reason
    }

    public var description: String { key.isEmpty ? "\(file): \(reason)" : "\(file): \(key): \(reason)" }
}

/// One HOST:PORT a server listens on.
public struct ServerAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses "HOST:PORT", HOST an IP address (an IPv6 one in brackets: "[::1]:2049");
    /// port 0 means any free port. Host names are refused: the servers bind and the
    /// command line connects to exactly the address given.
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), colon != text.startIndex,
              let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        var scratch = in6_addr()
        if host.hasPrefix("[") && host.hasSuffix("]") {
            // "[::1]:2049": brackets only around an IPv6 address.
            host = String(host.dropFirst().dropLast())
            guard inet_pton(AF_INET6, host, &scratch) == 1 else { return nil }
        } else {
            // An IPv6 address without brackets ("::1:2049") reads two ways: refused.
            guard inet_pton(AF_INET, host, &scratch) == 1 else { return nil }
        }
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

public struct ZeroFSConfig: Sendable, Equatable {
    public enum LogLevel: String, Sendable, CaseIterable {
        case trace, debug, info, notice, warning, error, critical
    }

    // [storage]
    public var backend = "lsm"
    /// The backend was named (storage.backend, or a flag), not left at its default.
    public var backendNamed = false
    public var path = "zerofs-data"
    public var cacheBytes = 64 << 20
    public var compression = CompressionKind.none
    /// A store kept in S3 ("s3://bucket/prefix", lsm only); `path` then holds the local
    /// disk cache of its tables.
    public var url: String?
    /// [storage.s3]: endpoint, region, credentials and the disk cache's size.
    public var s3: [String: String] = [:]
    /// [storage.lsm], [storage.rocksdb], [storage.lmdb]: tuning by backend, passed to the
    /// backend as text (the backend checks each key and value).
    public var tuning: [String: [String: String]] = [:]
    // [filesystem]
    public var chunkSize = 32768
    public var compressChunks = true
    public var durableMetadata = true
    /// Milliseconds between a read-only replica's catching up with its writer.
    public var replicaPollMilliseconds = 1000
    // [servers.nfs]
    public var nfsAddresses = [ServerAddress(host: "127.0.0.1", port: 2049)]
    public var nfsThreads = 8
    /// TCP congestion control for loopback clients; "" keeps the system's.
    public var nfsLoopbackCongestion = "reno"
    /// Connections each NFS address serves at once.
    public var nfsMaxConnections = 1024
    /// MiB of replies each NFS address holds for clients that have not read them.
    public var nfsMaxUnsentReplyMiB = 128
    // [servers.rpc]
    public var rpcAddresses = [ServerAddress(host: "127.0.0.1", port: 7000)]

    /// An address named twice among the NFS and RPC addresses (port 0, any free port,
    /// aside), which one of the servers could not bind: the message, or nil.
    public var addressClash: String? {
        let named = nfsAddresses.map { ("servers.nfs.addresses", $0) } + rpcAddresses.map { ("servers.rpc.addresses", $0) }
        for (index, (list, address)) in named.enumerated() where address.port != 0 {
            if let (other, _) = named[(index + 1)...].first(where: { $0.1 == address }) {
                let place = list == other ? "twice in \(list)" : "in both \(list) and \(other)"
                return "\(address) is named \(place); each server needs an address of its own"
            }
        }
        return nil
    }
    // [logging]
    public var logLevel = LogLevel.info

    public init() {}

    /// The backend options this configuration asks for.
    public var backendOptions: BackendOptions {
        var options = BackendOptions()
        options.cacheBytes = cacheBytes
        options.compression = compression
        options.tuning = tuning[backend] ?? [:]
        if url != nil {
            options.remote = s3
            options.remote[LSMBackendFactory.diskCachePathKey] = path + "/s3-cache"
        }
        return options
    }

    /// The options to open another store than this configuration's (a restore's new
    /// store): the same settings, without this store's disk cache folder.
    public var backendOptionsForAnotherStore: BackendOptions {
        var options = backendOptions
        options.remote.removeValue(forKey: LSMBackendFactory.diskCachePathKey)
        return options
    }

    /// Where the store is: the S3 location, or the local folder.
    public var location: String { url ?? path }

    /// The S3 settings keys of [storage.s3].
    public static let s3Keys = S3Remote.keys + [LSMBackendFactory.diskCacheBytesKey]

    /// The filesystem options this configuration asks for.
    public var fsOptions: FSOptions {
        var options = FSOptions()
        options.chunkSize = chunkSize
        options.compressChunks = compressChunks
        options.durableMetadata = durableMetadata
        options.replicaPollMilliseconds = replicaPollMilliseconds
        return options
    }

    /// The backends a configuration may name, with their tuning keys checked by `validate`.
    public static let backends = ["lsm", "rocksdb", "lmdb"]

    /// Addresses a server list may name (servers.nfs or servers.rpc).
    public static let maxAddresses = 16

    /// Parses `text` (read from `file`, for messages), expanding ${VAR} from `environment`.
    /// `validateBackend` checks the options of the named backend (the backend catalog's
    /// factory `validate`), so bad tuning is refused when the file is read.
    public static func parse(
        _ text: String, file: String, environment: [String: String],
        validateBackend: (String, BackendOptions) throws -> Void
    ) throws(ConfigError) -> ZeroFSConfig {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(file: file, key: "", reason: "not valid TOML at line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)")
        } catch {
            throw ConfigError(file: file, key: "", reason: "not valid TOML: \(error)")
        }
        var reader = Reader(file: file, environment: environment)
        var config = ZeroFSConfig()
        try reader.read(table, into: &config)
        if config.url != nil, config.backend != "lsm" {
            throw ConfigError(file: file, key: "storage.url", reason: "only the lsm backend keeps a store in S3 (storage.backend is \(config.backend))")
        }
        if config.url == nil, !config.s3.isEmpty {
            throw ConfigError(file: file, key: "storage.s3", reason: "S3 settings without storage.url = \"s3://bucket/prefix\"")
        }
        if let url = config.url {
            var settings = config.s3
            settings.removeValue(forKey: LSMBackendFactory.diskCacheBytesKey)
            do { try S3Remote.validate(url, settings) } catch {
                throw ConfigError(file: file, key: "storage.s3", reason: (error as? KVError)?.message ?? "\(error)")
            }
            if let text = config.s3[LSMBackendFactory.diskCacheBytesKey], (Int(text) ?? 0) < 1 << 20 {
                throw ConfigError(file: file, key: "storage.s3.disk_cache_bytes", reason: "must be a number of bytes, at least 1 MiB, got \(text)")
            }
        }
        do {
            try validateBackend(config.backend, config.backendOptions)
        } catch {
            let message = (error as? KVError)?.message ?? "\(error)"
            let section = (config.tuning[config.backend] ?? [:]).isEmpty ? "storage" : "storage.\(config.backend)"
            throw ConfigError(file: file, key: section, reason: message)
        }
        for (name, keys) in config.tuning where name != config.backend && !keys.isEmpty {
            var options = BackendOptions()
            options.tuning = keys
            do { try validateBackend(name, options) } catch {
                throw ConfigError(file: file, key: "storage.\(name)", reason: (error as? KVError)?.message ?? "\(error)")
            }
        }
        return config
    }

    /// Reads and parses the file at `path`.
    public static func load(
        _ path: String, environment: [String: String], validateBackend: (String, BackendOptions) throws -> Void
    ) throws(ConfigError) -> ZeroFSConfig {
        let bytes: [UInt8]
        do { bytes = try FileOps.readFile(path) } catch {
            throw ConfigError(file: path, key: "", reason: FileOps.kind(of: path, followingLinks: true) == .missing
                ? "no such file (make one with `zerofs init \(path)`)" : FileOps.kind(of: path, followingLinks: true) == .directory
                ? "is a folder, not a config file" : error.detail)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError(file: path, key: "", reason: "not UTF-8 text")
        }
        return try parse(text, file: path, environment: environment, validateBackend: validateBackend)
    }
}

/// Walks the TOML tables, refusing what it does not know.
private struct Reader {
    let file: String
    let environment: [String: String]

    func fail(_ key: String, _ reason: String) -> ConfigError { ConfigError(file: file, key: key, reason: reason) }

    func keys(_ table: TOMLTable, _ section: String, allowed: [String]) throws(ConfigError) {
        for key in table.keys where !allowed.contains(key) {
            let name = section.isEmpty ? key : "\(section).\(key)"
            throw fail(name, "unknown key (known here: \(allowed.joined(separator: ", ")))")
        }
    }

    func subtable(_ table: TOMLTable, _ key: String, _ section: String) throws(ConfigError) -> TOMLTable? {
        guard let value = table[key] else { return nil }
        guard let sub = value.table else { throw fail(section, "must be a table ([\(section)]), not \(withArticle(value.type))") }
        return sub
    }

    func string(_ table: TOMLTable, _ key: String, _ name: String) throws(ConfigError) -> String? {
        guard let value = table[key] else { return nil }
        guard let text = value.string else { throw fail(name, "must be a string, not \(withArticle(value.type))") }
        return try expand(text, name)
    }

    func integer(_ table: TOMLTable, _ key: String, _ name: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let value = table[key] else { return nil }
        let number: Int
        if let int = value.int {
            number = int
        } else if let text = value.string {
            // "${VAR}" holding a number
            let expanded = try expand(text, name)
            guard let parsed = Int(expanded) else { throw fail(name, "must be a whole number, got \"\(expanded)\"") }
            number = parsed
        } else {
            throw fail(name, "must be a whole number, not \(withArticle(value.type))")
        }
        guard range.contains(number) else { throw fail(name, "must be in \(range.lowerBound)...\(range.upperBound), got \(number)") }
        return number
    }

    func boolean(_ table: TOMLTable, _ key: String, _ name: String) throws(ConfigError) -> Bool? {
        guard let value = table[key] else { return nil }
        if let bool = value.bool { return bool }
        if let text = value.string {
            switch try expand(text, name) {
            case "true": return true
            case "false": return false
            default: break
            }
        }
        throw fail(name, "must be true or false, not \(withArticle(value.type))")
    }

    func addresses(_ table: TOMLTable, _ name: String) throws(ConfigError) -> [ServerAddress]? {
        guard let value = table["addresses"] else { return nil }
        guard let array = value.array else { throw fail(name, "must be an array of \"HOST:PORT\" strings, not \(withArticle(value.type))") }
        var out: [ServerAddress] = []
        for element in array {
            guard let text = element.string else { throw fail(name, "must hold only \"HOST:PORT\" strings, found \(withArticle(element.type))") }
            let expanded = try expand(text, name)
            guard let address = ServerAddress(expanded) else {
                throw fail(name, "\"\(expanded)\" is not HOST:PORT with HOST an IP address (127.0.0.1, [::1]) and PORT in 0...65535")
            }
            out.append(address)
        }
        guard !out.isEmpty else { throw fail(name, "must name at least one address") }
        // Each NFS address has its own threads (servers.nfs.threads of them).
        guard out.count <= ZeroFSConfig.maxAddresses else {
            throw fail(name, "may name at most \(ZeroFSConfig.maxAddresses) addresses, not \(out.count)")
        }
        return out
    }

    /// ${VAR} from the environment; "$$" is one '$'. An unset variable is an error.
    func expand(_ text: String, _ name: String) throws(ConfigError) -> String {
        guard text.contains("$") else { return text }
        var out = ""
        var rest = Substring(text)
        while let dollar = rest.firstIndex(of: "$") {
            out += rest[..<dollar]
            let after = rest[rest.index(after: dollar)...]
            if after.first == "$" {
                out += "$"
                rest = after.dropFirst()
            } else if after.first == "{", let close = after.firstIndex(of: "}") {
                let variable = String(after[after.index(after: after.startIndex)..<close])
                guard !variable.isEmpty, variable.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                    throw fail(name, "\"${\(variable)}\" is not a variable name (letters, digits and '_')")
                }
                guard let value = environment[variable] else { throw fail(name, "environment variable \(variable) is not set") }
                out += value
                rest = after[after.index(after: close)...]
            } else {
                throw fail(name, "a '$' must start ${VAR} or be written $$")
            }
        }
        return out + rest
    }

    mutating func read(_ root: TOMLTable, into config: inout ZeroFSConfig) throws(ConfigError) {
        try keys(root, "", allowed: ["storage", "filesystem", "servers", "logging"])
        if let storage = try subtable(root, "storage", "storage") {
            try keys(storage, "storage", allowed: ["backend", "path", "url", "cache_bytes", "compression", "s3"] + ZeroFSConfig.backends)
            if let backend = try string(storage, "backend", "storage.backend") {
                guard ZeroFSConfig.backends.contains(backend) else {
                    throw fail("storage.backend", "must be lsm, rocksdb or lmdb, got \"\(backend)\"")
                }
                config.backend = backend
                config.backendNamed = true
            }
            if let path = try string(storage, "path", "storage.path") {
                guard !path.isEmpty else { throw fail("storage.path", "must not be empty") }
                guard !path.contains("://") else {
                    throw fail("storage.path", "is a local folder, got \"\(path)\"; a store in S3 is storage.url = \"s3://bucket/prefix\"")
                }
                config.path = path
            }
            if let url = try string(storage, "url", "storage.url") {
                guard url.hasPrefix("s3://"), url.count > 5, !url.dropFirst(5).hasPrefix("/") else {
                    throw fail("storage.url", "must be s3://bucket[/prefix], got \"\(url)\"")
                }
                config.url = url
            }
            if let section = try subtable(storage, "s3", "storage.s3") {
                try keys(section, "storage.s3", allowed: ZeroFSConfig.s3Keys)
                for key in section.keys {
                    let full = "storage.s3.\(key)"
                    guard let value = section[key] else { continue }
                    if let int = value.int {
                        config.s3[key] = String(int)
                    } else if let text = value.string {
                        config.s3[key] = try expand(text, full)
                    } else if let bool = value.bool {
                        config.s3[key] = String(bool)
                    } else {
                        throw fail(full, "must be a number, a string or a boolean, not \(withArticle(value.type))")
                    }
                }
            }
            if let bytes = try integer(storage, "cache_bytes", "storage.cache_bytes", (1 << 20)...(1 << 40)) { config.cacheBytes = bytes }
            if let text = try string(storage, "compression", "storage.compression") {
                guard let kind = CompressionKind(rawValue: text) else { throw fail("storage.compression", "must be none or zstd, got \"\(text)\"") }
                config.compression = kind
            }
            for name in ZeroFSConfig.backends {
                guard let section = try subtable(storage, name, "storage.\(name)") else { continue }
                var tuning: [String: String] = [:]
                for key in section.keys {
                    let full = "storage.\(name).\(key)"
                    guard let value = section[key] else { continue }
                    if let int = value.int {
                        tuning[key] = String(int)
                    } else if let text = value.string {
                        tuning[key] = try expand(text, full)
                    } else if let bool = value.bool {
                        tuning[key] = String(bool)
                    } else {
                        throw fail(full, "must be a number or a string, not \(withArticle(value.type))")
                    }
                }
                if !tuning.isEmpty { config.tuning[name] = tuning }
            }
        }
        if let fs = try subtable(root, "filesystem", "filesystem") {
            try keys(fs, "filesystem", allowed: ["chunk_size", "compression", "durable_metadata", "replica_poll_ms"])
            if let size = try integer(fs, "chunk_size", "filesystem.chunk_size", 0...Int(Int32.max)) {
                guard FSOptions.validChunkSizes.contains(size) else {
                    throw fail("filesystem.chunk_size", "must be a power of two from 4096 to 1048576, got \(size)")
                }
                config.chunkSize = size
            }
            if let text = try string(fs, "compression", "filesystem.compression") {
                guard text == "zstd" || text == "none" else { throw fail("filesystem.compression", "must be zstd or none, got \"\(text)\"") }
                config.compressChunks = text == "zstd"
            }
            if let durable = try boolean(fs, "durable_metadata", "filesystem.durable_metadata") { config.durableMetadata = durable }
            if let poll = try integer(fs, "replica_poll_ms", "filesystem.replica_poll_ms", 1...3_600_000) { config.replicaPollMilliseconds = poll }
        }
        if let servers = try subtable(root, "servers", "servers") {
            try keys(servers, "servers", allowed: ["nfs", "rpc"])
            if let nfs = try subtable(servers, "nfs", "servers.nfs") {
                try keys(nfs, "servers.nfs", allowed: ["addresses", "threads", "loopback_congestion", "max_connections", "max_unsent_reply_mib"])
                if let addresses = try addresses(nfs, "servers.nfs.addresses") { config.nfsAddresses = addresses }
                if let threads = try integer(nfs, "threads", "servers.nfs.threads", 1...1024) { config.nfsThreads = threads }
                if let count = try integer(nfs, "max_connections", "servers.nfs.max_connections", 1...65536) { config.nfsMaxConnections = count }
                if let mib = try integer(nfs, "max_unsent_reply_mib", "servers.nfs.max_unsent_reply_mib", 1...65536) { config.nfsMaxUnsentReplyMiB = mib }
                if let name = try string(nfs, "loopback_congestion", "servers.nfs.loopback_congestion") {
                    // A kernel name of an algorithm: at most 15 characters (TCP_CA_NAME_MAX).
                    let valid = name.count <= 15 && name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" }
                    guard valid else {
                        throw fail("servers.nfs.loopback_congestion", "must be a TCP congestion control name (such as reno or cubic) or \"\", got \"\(name)\"")
                    }
                    config.nfsLoopbackCongestion = name
                }
            }
            if let rpc = try subtable(servers, "rpc", "servers.rpc") {
                try keys(rpc, "servers.rpc", allowed: ["addresses"])
                if let addresses = try addresses(rpc, "servers.rpc.addresses") { config.rpcAddresses = addresses }
            }
        }
        if let logging = try subtable(root, "logging", "logging") {
            try keys(logging, "logging", allowed: ["level"])
            if let text = try string(logging, "level", "logging.level") {
                guard let level = ZeroFSConfig.LogLevel(rawValue: text) else {
                    throw fail("logging.level", "must be one of \(ZeroFSConfig.LogLevel.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(text)\"")
                }
                config.logLevel = level
            }
        }
    }
}

/// "a string", "an integer": a TOML type's name for a message.
func withArticle(_ type: some CustomStringConvertible) -> String {
    let word = "\(type)"
    guard let first = word.first else { return word }
    return ("aeiou".contains(first) ? "an " : "a ") + word
}
