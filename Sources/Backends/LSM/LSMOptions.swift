// Options of the lsm backend with their defaults (Docs/lsm.md lists them). Tuning keys
// are parsed from BackendOptions.tuning; unknown keys and bad values are refused.

import Engine

struct LSMOptions: Sendable {
    /// Bytes of memtable before it is frozen and flushed to an L0 table.
    var memtableBytes = 16 << 20
    /// Frozen memtables waiting for flush before writers are throttled. A flush of a
    /// memtable whose file data stays in the WAL takes 3-40 ms (its syncs wait behind the
    /// WAL's writeback) while a 1 GB/s write fills one in 15 ms: with 2, writers waited
    /// about a tenth of a 200 MiB write (Docs/benchmarks.md, thirteenth session).
    var maxImmutableMemtables = 3
    var table = TableOptions()
    var blockCacheBytes = 64 << 20
    /// L0 tables that start an L0 -> L1 compaction.
    var l0CompactionTrigger = 4
    /// L0 tables at which writers wait for compaction.
    var l0StopTrigger = 12
    /// Target bytes of L1; each deeper level is `levelMultiplier` times larger.
    var level1Bytes = 64 << 20
    var levelMultiplier = 10
    var maxLevels = 7
    /// Bytes of one compaction output table.
    var tableTargetBytes = 16 << 20
    /// Buffered (non-durable) writes reach the WAL at least this often...
    var walFlushIntervalMillis = 100
    /// A memtable holding deletions, with no write newer than this, is frozen and flushed
    /// (0: never): idle time then does the flush, and the compactions and collection
    /// that free what the deletions hide, instead of the next burst of writes.
    var idleFlushMillis = 1000
    /// ...or when this many bytes are buffered.
    var walBufferBytes = 4 << 20
    /// "buffered": only durable writes wait for the WAL; "always": every write does.
    var walSyncAlways = false
    /// "strict": a WAL object damaged before the end of the log fails the open;
    /// "point_in_time": the log ends there and what follows it is dropped (format-wal.md).
    var walRecoveryPointInTime = false
    /// "buffered": WAL segments are written through the page cache; "direct": a local
    /// store writes them with O_DIRECT where the file system allows it (format-wal.md,
    /// "Direct I/O").
    var walDirectIO = false
    /// "keep": values of `Memtable.inPlaceBytes` or more stay in the WAL segment they
    /// were appended to and tables point at them (ValueLog.swift; lsm.md, "Values in the
    /// WAL"); "copy": flushes copy them into tables.
    var walValues = true
    /// The smallest value kept in the WAL that way. Smaller ones are copied into tables:
    /// reading a value from a segment costs a system call of its own, where a table's
    /// block holds many small values and stays in the block cache (4 KiB files read over
    /// NFS fell from 1.40x to 1.02x of the reference when they were pointed at).
    var walValueMinBytes = 16 << 10
    /// Seconds a table no manifest names any more is kept before GC deletes it, so that
    /// replicas a poll or two behind still read it (LSMStore+Follow.swift). Stores in
    /// remote object storage, where replicas run, default to 60.
    var gcGraceSeconds = 0

    static let tuningKeys: [String] = [
        "memtable_bytes", "max_immutable_memtables", "block_size", "bloom_bits_per_key", "prefix_bloom_lengths",
        "l0_compaction_trigger", "l0_stop_trigger", "level1_bytes", "level_multiplier", "table_target_bytes",
        "wal_flush_interval_ms", "idle_flush_ms", "wal_buffer_bytes", "wal_sync", "wal_recovery", "wal_io", "wal_values", "wal_value_min_bytes", "gc_grace_seconds",
    ]

    init(_ options: BackendOptions) throws {
        blockCacheBytes = max(options.cacheBytes, 1 << 20)
        table.compress = options.compression == .zstd
        for (key, text) in options.tuning.sorted(by: { $0.key < $1.key }) {
            func number(_ range: ClosedRange<Int>) throws -> Int {
                guard let value = Int(text), range.contains(value) else {
                    throw KVError(.invalidArgument, "lsm option \(key) must be a whole number in \(range), got '\(text)'")
                }
                return value
            }
            switch key {
            case "memtable_bytes": memtableBytes = try number((64 << 10)...(1 << 30))
            case "max_immutable_memtables": maxImmutableMemtables = try number(1...16)
            case "block_size": table.blockSize = try number(256...(1 << 20))
            case "bloom_bits_per_key": table.bitsPerKey = try number(1...32)
            case "prefix_bloom_lengths":
                let parts = text.split(separator: ",").map { Int($0.trimmingCharacters()) }
                guard !parts.isEmpty, parts.allSatisfy({ $0 != nil && (1...KVLimits.maxKeySize).contains($0!) }) else {
                    throw KVError(.invalidArgument, "lsm option prefix_bloom_lengths must be a comma list of lengths 1 to 500, got '\(text)'")
                }
                table.prefixLengths = parts.map { $0! }
            case "l0_compaction_trigger": l0CompactionTrigger = try number(2...64)
            case "l0_stop_trigger": l0StopTrigger = try number(2...256)
            case "level1_bytes": level1Bytes = try number((64 << 10)...(1 << 40))
            case "level_multiplier": levelMultiplier = try number(2...100)
            case "table_target_bytes": tableTargetBytes = try number((16 << 10)...(1 << 30))
            case "wal_flush_interval_ms": walFlushIntervalMillis = try number(1...60_000)
            case "idle_flush_ms": idleFlushMillis = try number(0...86_400_000)
            case "wal_buffer_bytes": walBufferBytes = try number((4 << 10)...(1 << 30))
            case "gc_grace_seconds": gcGraceSeconds = try number(0...86_400)
            case "wal_sync":
                guard text == "buffered" || text == "always" else {
                    throw KVError(.invalidArgument, "lsm option wal_sync must be buffered or always, got '\(text)'")
                }
                walSyncAlways = text == "always"
            case "wal_io":
                guard text == "direct" || text == "buffered" else {
                    throw KVError(.invalidArgument, "lsm option wal_io must be direct or buffered, got '\(text)'")
                }
                walDirectIO = text == "direct"
            case "wal_values":
                guard text == "keep" || text == "copy" else {
                    throw KVError(.invalidArgument, "lsm option wal_values must be keep or copy, got '\(text)'")
                }
                walValues = text == "keep"
            case "wal_value_min_bytes": walValueMinBytes = try number(Memtable.inPlaceBytes...(1 << 30))
            case "wal_recovery":
                guard text == "strict" || text == "point_in_time" else {
                    throw KVError(.invalidArgument, "lsm option wal_recovery must be strict or point_in_time, got '\(text)'")
                }
                walRecoveryPointInTime = text == "point_in_time"
            default:
                throw KVError(.invalidArgument, "unknown lsm tuning option '\(key)'; known: \(Self.tuningKeys.joined(separator: ", "))")
            }
        }
        guard l0StopTrigger > l0CompactionTrigger else {
            throw KVError(.invalidArgument, "lsm option l0_stop_trigger must exceed l0_compaction_trigger")
        }
    }

    /// The size level `level` may reach before it compacts down: level1_bytes times
    /// level_multiplier per level below 1, saturating at Int.max (each is range-checked
    /// alone, and a product that wrapped negative would compact every level down at once).
    func levelTarget(_ level: Int) -> Int {
        var bytes = level1Bytes
        for _ in 1..<max(level, 1) {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: levelMultiplier)
            bytes = overflow ? .max : product
        }
        return bytes
    }
}

extension Substring {
    func trimmingCharacters() -> Substring {
        var s = self
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return s
    }
}
