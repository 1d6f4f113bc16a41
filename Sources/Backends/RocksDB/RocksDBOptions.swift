// Translates BackendOptions into RocksDB's C option objects. Tuning keys (all optional):
//   bloom_bits_per_key      bloom filter bits per key (default 10; 0 turns filters off)
//   write_buffer_size       memtable bytes before a flush (default 64 MiB)
//   max_background_jobs     flush and compaction threads (default 2)
//   block_size              data block bytes (default 4096)

import CRocksDB
import Engine

/// The C option objects of one open database; freed together in deinit.
final class RocksDBOptions: @unchecked Sendable {
    // Immutable after init; RocksDB only reads these while opening.
    let options: OpaquePointer
    let table: OpaquePointer
    let cache: OpaquePointer
    let filter: OpaquePointer?

    static let knownKeys: Set<String> = ["bloom_bits_per_key", "write_buffer_size", "max_background_jobs", "block_size"]

    /// Checks every tuning key and value before anything touches the disk.
    static func validate(_ settings: BackendOptions) throws(KVError) {
        if let unknown = settings.tuning.keys.sorted().first(where: { !knownKeys.contains($0) }) {
            throw KVError(.invalidArgument, "unknown rocksdb tuning option '\(unknown)'; known: \(knownKeys.sorted().joined(separator: ", "))")
        }
        _ = try parse(settings)
    }

    /// The numeric tuning values: bloom bits, write buffer, background jobs, block size.
    private static func parse(_ settings: BackendOptions) throws(KVError) -> (Int, Int, Int, Int) {
        func integer(_ key: String, _ fallback: Int, _ valid: ClosedRange<Int>) throws(KVError) -> Int {
            guard let text = settings.tuning[key] else { return fallback }
            guard let value = Int(text), valid.contains(value) else {
                throw KVError(.invalidArgument, "rocksdb option \(key) must be a whole number in \(valid), got '\(text)'")
            }
            return value
        }
        return (try integer("bloom_bits_per_key", 10, 0...64), try integer("write_buffer_size", 64 << 20, (1 << 16)...(1 << 32)),
                try integer("max_background_jobs", 2, 1...64), try integer("block_size", 4096, 512...(1 << 24)))
    }

    init(_ settings: BackendOptions, create: Bool) throws(KVError) {
        try Self.validate(settings)
        let (bloomBits, writeBuffer, jobs, blockSize) = try Self.parse(settings)

        options = rocksdb_options_create()
        rocksdb_options_set_create_if_missing(options, create ? 1 : 0)
        rocksdb_options_set_write_buffer_size(options, writeBuffer)
        rocksdb_options_set_max_background_jobs(options, Int32(jobs))
        let compression = settings.compression == .zstd ? rocksdb_zstd_compression : rocksdb_no_compression
        rocksdb_options_set_compression(options, Int32(compression))

        table = rocksdb_block_based_options_create()
        cache = rocksdb_cache_create_lru(max(settings.cacheBytes, 1 << 20))
        rocksdb_block_based_options_set_block_cache(table, cache)
        rocksdb_block_based_options_set_block_size(table, blockSize)
        if bloomBits > 0 {
            let policy = rocksdb_filterpolicy_create_bloom_full(Double(bloomBits))
            rocksdb_block_based_options_set_filter_policy(table, policy)
            filter = policy
        } else {
            filter = nil
        }
        rocksdb_options_set_block_based_table_factory(options, table)
    }

    deinit {
        rocksdb_options_destroy(options)
        // The table options own the filter policy once it is set.
        rocksdb_block_based_options_destroy(table)
        rocksdb_cache_destroy(cache)
    }
}
