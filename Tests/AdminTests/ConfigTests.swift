// The TOML config: every key read, bad values and unknown keys refused with the file, key
// and reason, ${VAR} expansion, and the file `zerofs init` writes parses back to the
// defaults.

import BackendCatalog
import Config
import Engine
import Testing

@Suite struct ConfigTests {
    let validate: (String, BackendOptions) throws -> Void = { name, options in
        try BackendCatalog.standard.factory(named: name).validate(options)
    }

    func parse(_ text: String, environment: [String: String] = [:]) throws(ConfigError) -> ZeroFSConfig {
        try ZeroFSConfig.parse(text, file: "test.toml", environment: environment, validateBackend: validate)
    }

    /// The error `text` gives (the test fails when it parses).
    func error(_ text: String, environment: [String: String] = [:]) -> ConfigError? {
        do {
            let config = try parse(text, environment: environment)
            Issue.record("parsed, but should not have: \(config)")
            return nil
        } catch {
            return error
        }
    }

    @Test func theInitFileParsesBackToTheDefaults() throws {
        let config = try parse(ZeroFSConfig.defaultFileText)
        // The defaults, with the backend named (the file says lsm).
        var named = ZeroFSConfig()
        named.backendNamed = true
        #expect(config == named)
        #expect(config.backend == "lsm")
        #expect(config.path == "zerofs-data")
        #expect(config.nfsAddresses == [ServerAddress(host: "127.0.0.1", port: 2049)])
        #expect(config.rpcAddresses == [ServerAddress(host: "127.0.0.1", port: 7000)])
        #expect(try parse("") == ZeroFSConfig())
        #expect(try !parse("").backendNamed)
    }

    @Test func everyKeyIsRead() throws {
        let config = try parse("""
            [storage]
            backend = "rocksdb"
            path = "/srv/zerofs"
            cache_bytes = 2097152
            compression = "zstd"
            [storage.rocksdb]
            block_size = 8192
            bloom_bits_per_key = 12
            write_buffer_size = 1048576
            max_background_jobs = 3
            [storage.lsm]
            wal_sync = "always"
            memtable_bytes = 1048576
            [storage.lmdb]
            map_size = 1073741824
            max_readers = 64
            [filesystem]
            chunk_size = 65536
            compression = "none"
            durable_metadata = false
            [servers.nfs]
            addresses = ["127.0.0.1:12049", "[::1]:12050"]
            threads = 4
            loopback_congestion = "cubic"
            max_connections = 16
            max_unsent_reply_mib = 32
            [servers.rpc]
            addresses = ["127.0.0.1:17000"]
            [logging]
            level = "debug"
            """)
        #expect(config.backend == "rocksdb")
        #expect(config.path == "/srv/zerofs")
        #expect(config.cacheBytes == 2_097_152)
        #expect(config.compression == .zstd)
        #expect(config.tuning["rocksdb"] == ["block_size": "8192", "bloom_bits_per_key": "12", "write_buffer_size": "1048576", "max_background_jobs": "3"])
        #expect(config.tuning["lsm"] == ["wal_sync": "always", "memtable_bytes": "1048576"])
        #expect(config.tuning["lmdb"] == ["map_size": "1073741824", "max_readers": "64"])
        #expect(config.backendOptions.tuning == config.tuning["rocksdb"])
        #expect(config.backendOptions.cacheBytes == 2_097_152)
        #expect(config.chunkSize == 65536)
        #expect(!config.compressChunks)
        #expect(!config.durableMetadata)
        #expect(config.fsOptions.chunkSize == 65536)
        #expect(!config.fsOptions.compressChunks)
        #expect(config.nfsAddresses == [ServerAddress(host: "127.0.0.1", port: 12049), ServerAddress(host: "::1", port: 12050)])
        #expect(config.nfsThreads == 4)
        #expect(config.nfsMaxConnections == 16 && config.nfsMaxUnsentReplyMiB == 32)
        #expect(config.nfsLoopbackCongestion == "cubic")
        #expect(config.rpcAddresses == [ServerAddress(host: "127.0.0.1", port: 17000)])
        #expect(config.logLevel == .debug)
    }

    @Test func unknownKeysAreRefusedByName() {
        let cases: [(String, String)] = [
            ("colour = 1", "colour"),
            ("[storage]\nbakend = \"lsm\"", "storage.bakend"),
            ("[filesystem]\nchunksize = 4096", "filesystem.chunksize"),
            ("[servers.nfs]\naddress = [\"127.0.0.1:1\"]", "servers.nfs.address"),
            ("[servers.grpc]\naddresses = []", "servers.grpc"),
            ("[logging]\nformat = \"json\"", "logging.format"),
        ]
        for (text, key) in cases {
            let failure = error(text)
            #expect(failure?.key == key, "\(text)")
            #expect(failure?.file == "test.toml")
            #expect(failure?.reason.contains("unknown key") == true, "\(String(describing: failure))")
        }
    }

    @Test func badValuesAreRefusedWithTheKeyAndTheReason() {
        let cases: [(String, String, String)] = [
            ("[storage]\nbackend = \"btrfs\"", "storage.backend", "lsm, rocksdb or lmdb"),
            ("[storage]\nbackend = 3", "storage.backend", "string"),
            ("[storage]\npath = \"\"", "storage.path", "empty"),
            ("[storage]\ncache_bytes = 12", "storage.cache_bytes", "1048576"),
            ("[storage]\ncompression = \"lz4\"", "storage.compression", "none or zstd"),
            ("[storage]\nbackend = \"lmdb\"\ncompression = \"zstd\"", "storage", "compress"),
            ("[storage.rocksdb]\nblock_sise = 4096", "storage.rocksdb", "block_sise"),
            ("[storage.rocksdb]\nblock_size = 1", "storage.rocksdb", "block_size"),
            ("[storage.lsm]\nwal_sync = \"sometimes\"", "storage.lsm", "wal_sync"),
            ("[storage.lmdb]\nmap_size = 5", "storage.lmdb", "map_size"),
            ("[storage.lsm]\nblock_size = [1]", "storage.lsm.block_size", "number or a string"),
            ("[filesystem]\nchunk_size = 5000", "filesystem.chunk_size", "power of two"),
            ("[filesystem]\ncompression = \"gzip\"", "filesystem.compression", "zstd or none"),
            ("[filesystem]\ndurable_metadata = \"yes\"", "filesystem.durable_metadata", "true or false"),
            ("[servers.nfs]\naddresses = \"127.0.0.1:2049\"", "servers.nfs.addresses", "array"),
            ("[servers.nfs]\naddresses = [\"localhost\"]", "servers.nfs.addresses", "HOST:PORT"),
            ("[servers.nfs]\naddresses = [\"127.0.0.1:70000\"]", "servers.nfs.addresses", "HOST:PORT"),
            ("[servers.nfs]\naddresses = []", "servers.nfs.addresses", "at least one"),
            ("[servers.nfs]\nthreads = 0", "servers.nfs.threads", "1...1024"),
            ("[servers.nfs]\naddresses = [" + Array(repeating: "\"127.0.0.1:0\"", count: 17).joined(separator: ", ") + "]",
             "servers.nfs.addresses", "at most 16"),
            ("[servers.nfs]\nloopback_congestion = \"Reno!\"", "servers.nfs.loopback_congestion", "congestion control name"),
            ("[servers.nfs]\nloopback_congestion = \"a_name_longer_than_15\"", "servers.nfs.loopback_congestion", "congestion control name"),
            ("[servers.nfs]\nloopback_congestion = 1", "servers.nfs.loopback_congestion", "string"),
            ("[servers.nfs]\nmax_connections = 0", "servers.nfs.max_connections", "1"),
            ("[servers.nfs]\nmax_unsent_reply_mib = 70000", "servers.nfs.max_unsent_reply_mib", "65536"),
            ("[servers.rpc]\naddresses = [7000]", "servers.rpc.addresses", "HOST:PORT"),
            ("[logging]\nlevel = \"loud\"", "logging.level", "one of"),
            ("storage = 1", "storage", "table"),
        ]
        for (text, key, reason) in cases {
            let failure = error(text)
            #expect(failure?.key == key, "\(text): \(String(describing: failure))")
            #expect(failure?.reason.contains(reason) == true, "\(text): \(String(describing: failure))")
            #expect(failure?.description.hasPrefix("test.toml: \(key): ") == true)
        }
    }

    @Test func aStoreInS3() throws {
        let config = try parse("""
            [storage]
            url = "s3://bucket/team/fs"
            path = "/var/cache/zerofs"
            [storage.s3]
            endpoint = "http://127.0.0.1:8333"
            region = "eu-west-1"
            access_key_id = "${KEY}"
            secret_access_key = "${SECRET}"
            addressing = "virtual-host"
            allow_http = true
            retries = 7
            request_timeout_seconds = 12
            disk_cache_bytes = 1073741824
            """, environment: ["KEY": "AKIDEXAMPLE", "SECRET": "very-secret"])
        #expect(config.location == "s3://bucket/team/fs")
        let remote = config.backendOptions.remote
        #expect(remote["endpoint"] == "http://127.0.0.1:8333")
        #expect(remote["access_key_id"] == "AKIDEXAMPLE")
        #expect(remote["secret_access_key"] == "very-secret")
        #expect(remote["allow_http"] == "true")
        #expect(remote["retries"] == "7")
        #expect(remote["disk_cache_bytes"] == "1073741824")
        #expect(remote["cache_path"] == "/var/cache/zerofs/s3-cache")
        // Without a url the store is the local folder and no remote settings pass on.
        #expect(try parse("[storage]\npath = \"x\"").backendOptions.remote.isEmpty)

        let cases: [(String, String, String)] = [
            ("[storage]\nurl = \"http://bucket\"", "storage.url", "s3://bucket"),
            ("[storage]\nurl = \"s3://\"", "storage.url", "s3://bucket"),
            ("[storage]\nbackend = \"rocksdb\"\nurl = \"s3://b\"", "storage.url", "only the lsm backend"),
            ("[storage.s3]\nregion = \"x\"", "storage.s3", "without storage.url"),
            ("[storage]\nurl = \"s3://b\"\n[storage.s3]\nregoin = \"x\"", "storage.s3.regoin", "unknown key"),
            ("[storage]\nurl = \"s3://b\"\n[storage.s3]\naddressing = \"dns\"", "storage.s3", "path or virtual-host"),
            ("[storage]\nurl = \"s3://b\"\n[storage.s3]\nendpoint = \"http://h:1\"", "storage.s3", "plain http"),
            ("[storage]\nurl = \"s3://b\"\n[storage.s3]\ndisk_cache_bytes = 5", "storage.s3.disk_cache_bytes", "1 MiB"),
            ("[storage]\nurl = \"s3://b\"\n[storage.s3]\non_outage = \"sometimes\"", "storage.s3", "on_outage must be wait or fail"),
        ]
        for (text, key, reason) in cases {
            let failure = error(text)
            #expect(failure?.key == key, "\(text): \(String(describing: failure))")
            #expect(failure?.reason.contains(reason) == true, "\(text): \(String(describing: failure))")
        }
        // The secret never shows in a message.
        let failure = error("[storage]\nurl = \"s3://b\"\n[storage.s3]\nsecret_access_key = \"hunter2\"\nretries = 1000")
        #expect(failure?.description.contains("hunter2") == false)
    }

    @Test func syntaxErrorsNameTheLine() {
        let failure = error("[storage]\npath = \"unterminated\n")
        #expect(failure?.key == "")
        #expect(failure?.reason.contains("line 2") == true, "\(String(describing: failure))")
    }

    @Test func variablesExpandFromTheEnvironment() throws {
        let environment = ["DATA": "/srv/data", "PORT": "12049", "LEVEL": "warning", "SIZE": "8192"]
        let config = try parse("""
            [storage]
            path = "${DATA}/zerofs"
            [storage.lsm]
            block_size = "${SIZE}"
            [servers.nfs]
            addresses = ["127.0.0.1:${PORT}"]
            [logging]
            level = "${LEVEL}"
            [filesystem]
            chunk_size = "${SIZE}"
            """, environment: environment)
        #expect(config.path == "/srv/data/zerofs")
        #expect(config.tuning["lsm"] == ["block_size": "8192"])
        #expect(config.nfsAddresses == [ServerAddress(host: "127.0.0.1", port: 12049)])
        #expect(config.logLevel == .warning)
        #expect(config.chunkSize == 8192)
        #expect(try parse("[storage]\npath = \"cost$$5\"").path == "cost$5")

        let unset = error("[storage]\npath = \"${NOPE}/x\"")
        #expect(unset?.key == "storage.path")
        #expect(unset?.reason.contains("NOPE is not set") == true)
        #expect(error("[storage]\npath = \"$HOME\"")?.reason.contains("${VAR}") == true)
        #expect(error("[storage]\npath = \"${A B}\"")?.key == "storage.path")
    }

    @Test func loadNamesTheFile() throws {
        let missing = "/nonexistent/zerofs.toml"
        do {
            _ = try ZeroFSConfig.load(missing, environment: [:], validateBackend: validate)
            Issue.record("loaded a missing file")
        } catch {
            #expect(error.file == missing)
            #expect(error.reason.contains("zerofs init"))
        }
    }

    @Test func addressesParse() {
        #expect(ServerAddress("127.0.0.1:0") == ServerAddress(host: "127.0.0.1", port: 0))
        #expect(ServerAddress("[::1]:7000") == ServerAddress(host: "::1", port: 7000))
        #expect(ServerAddress("[::1]:7000")?.description == "[::1]:7000")
        for bad in ["", ":7000", "host", "host:", "127.0.0.1:-1", "127.0.0.1:65536", "a b:1", "localhost:7000", "300.1.1.1:1",
                    "::1:7000", "[127.0.0.1]:7000"] {
            #expect(ServerAddress(bad) == nil, "\(bad)")
        }
    }

    /// A number given as a string (for "${VAR}") must be one; the message shows the text.
    @Test func aNumberInAStringMustBeOne() throws {
        let bad = error("[servers.nfs]\nthreads = \"8x\"")
        #expect(bad?.key == "servers.nfs.threads" && bad?.reason == "must be a whole number, got \"8x\"", "\(String(describing: bad))")
        #expect(try parse("[servers.nfs]\nthreads = \"8\"").nfsThreads == 8)
    }
}
