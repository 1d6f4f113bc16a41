// Options of a filesystem: those fixed when it is formatted (chunk size) and those chosen
// at every open (compression, durability of metadata operations, background reclaim).

public struct FSOptions: Sendable {
    public static let validChunkSizes: Set<Int> = [4096, 8192, 16384, 32768, 65536, 131_072, 262_144, 524_288, 1_048_576]
    /// The largest file size: offsets at or beyond it are EFBIG.
    public static let maxFileSize: UInt64 = 1 << 50
    /// The most bytes one `write` call takes (EINVAL beyond): a write is one batch, held
    /// in memory whole and under the store's batch limit (`KVLimits.maxBatchSize`).
    public static let maxWriteSize = 256 << 20
    public static let maxNameLength = 255
    public static let maxSymlinkLength = 4096

    /// Bytes per chunk, used only when formatting a new filesystem (then read from the store).
    public var chunkSize = 32768
    /// Compress chunks with zstd (chunks that do not shrink are stored raw).
    public var compressChunks = true
    /// Metadata operations are durable before they return (RFC 1813 expects it).
    public var durableMetadata = true
    /// Run the reclaimer on a background thread; tests may drive it with `reclaimNow()`.
    public var backgroundReclaim = true
    /// Chunk entries deleted per reclaim batch.
    public var reclaimBatchSize = 512
    /// Inodes per dataset handle whose record version is remembered, so that reads in a
    /// dataset with snapshots are point gets (about 24 bytes each); 0 turns it off.
    public var inodeVersionEntries = 1 << 18
    /// Decoded inodes cached per dataset handle (HandleCache.swift; about 160 bytes each,
    /// allocated when the handle first reads an inode), rounded down to a power of two;
    /// 0 turns the cache off. A read-only replica caches none.
    public var inodeCacheEntries = 1 << 14
    /// Directory entries (absent names included) cached per dataset handle, likewise
    /// (about 70 bytes each and the name); 0 turns the cache off. More slots than inodes:
    /// entries are placed by a hash, and over 10,000 files 45 unlinks in 100 missed an
    /// entry with 2^14 slots (a name sharing its slot), 14 with 2^16.
    public var entryCacheEntries = 1 << 16
    /// On a read-only replica store: how often the pool catches up with the writer
    /// (Replica.swift); 0 leaves it to `followWriter()` calls.
    public var replicaPollMilliseconds = 1000

    public init() {}
}
