// The file `zerofs init` writes: every key with its default, commented, so that it works
// as it is (the LSM backend in a local folder, servers on 127.0.0.1).

extension ZeroFSConfig {
    public static let defaultFileText = """
        # ZeroFS configuration (Docs/config.md). Every value below is the default
        # (lmdb's map_size, commented out, is computed from the disk when not set).
        # Strings may use ${VAR} for an environment variable; write $$ for a literal '$'.

        [storage]
        # The key-value store under the filesystem: lsm (default), rocksdb or lmdb.
        # `zerofs run --backend NAME` overrides it.
        backend = "lsm"
        # The store's folder, created on first start (relative to where zerofs runs).
        path = "zerofs-data"
        # Bytes of cache for stored blocks (lsm and rocksdb).
        cache_bytes = 67108864
        # Block compression in the store: none or zstd (lsm and rocksdb; lmdb needs none).
        compression = "none"
        # Keep the store in S3-compatible object storage instead (lsm only; Docs/s3.md),
        # with [storage.s3] below; `path` then holds the local disk cache of its tables.
        # url = "s3://bucket/prefix"

        # Per-backend tuning; only the section of the chosen backend is used, but every
        # section is checked. Uncomment to change a value.
        [storage.lsm]
        # memtable_bytes = 16777216
        # block_size = 4096
        # bloom_bits_per_key = 10
        # wal_sync = "buffered"
        # wal_recovery = "strict"  # "point_in_time": end the log at any torn WAL segment, even one the sync markers call damage
        # wal_io = "buffered"  # "direct": WAL segments bypass the page cache (faster small syncs, slower bulk writes; Docs/format-wal.md)
        # wal_values = "keep"  # "copy": flushes copy large values into tables instead of pointing into the WAL (Docs/lsm.md)

        [storage.rocksdb]
        # write_buffer_size = 67108864
        # max_background_jobs = 2
        # block_size = 4096
        # bloom_bits_per_key = 10

        [storage.lmdb]
        # map_size = 1099511627776  # default: twice the file system's size, 1 to 64 TiB
        # max_readers = 1024

        # The settings of a store in S3 (storage.url): uncomment with it. Credentials may
        # also come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the endpoint from
        # AWS_ENDPOINT_URL.
        # [storage.s3]
        # endpoint = "https://s3.eu-west-1.amazonaws.com"
        # region = "eu-west-1"
        # access_key_id = "${AWS_ACCESS_KEY_ID}"
        # secret_access_key = "${AWS_SECRET_ACCESS_KEY}"
        # addressing = "path"          # or "virtual-host"
        # allow_http = false           # true only for a local test server
        # disk_cache_bytes = 8589934592

        [filesystem]
        # Bytes per file chunk: a power of two from 4096 to 1048576. Fixed when the
        # filesystem is created; later changes are ignored.
        chunk_size = 32768
        # Chunk compression: zstd or none.
        compression = "zstd"
        # Metadata operations are durable before they return (NFS expects it).
        durable_metadata = true

        [servers.nfs]
        # NFSv3 and MOUNT on one port; clients need no portmapper.
        addresses = ["127.0.0.1:2049"]
        # Threads running NFS calls.
        threads = 8
        # TCP congestion control for clients on this machine (loopback): unlike BBR,
        # reno does not pace replies; "" keeps the system's choice.
        loopback_congestion = "reno"
        # Connections served at once (one more is closed at once).
        max_connections = 1024
        # MiB of replies held for clients that have not read them; a connection that
        # would hold more than its first closes (its client reconnects and resends).
        max_unsent_reply_mib = 128

        [servers.rpc]
        # The gRPC AdminService, used by the zerofs command line.
        addresses = ["127.0.0.1:7000"]

        [logging]
        # trace, debug, info, notice, warning, error or critical.
        level = "info"

        """
}
