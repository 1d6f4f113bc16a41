// The seeded model-based test on each persistent backend, with memory as the model.
// Longer runs: ZEROFS_MODEL_STEPS=20000; replay: ZEROFS_SEED=<printed seed>.

import Engine
import KVTestSupport
import LMDBBackend
import LSMBackend
import RocksDBBackend
import Testing

@Suite struct ModelBasedTests {
    @Test func rocksdbMatchesTheModel() throws {
        try ModelBasedTest(RocksDBBackendFactory(), testName: "rocksdbMatchesTheModel").run()
    }

    @Test func rocksdbWithTinyMemtablesMatchesTheModel() throws {
        var test = ModelBasedTest(RocksDBBackendFactory(), testName: "rocksdbWithTinyMemtablesMatchesTheModel", steps: 800)
        test.options.tuning = ["write_buffer_size": "65536"]
        try test.run()
    }

    @Test func lsmMatchesTheModel() throws {
        try ModelBasedTest(LSMBackendFactory(), testName: "lsmMatchesTheModel").run()
    }

    /// Tiny memtables, blocks, tables and levels: flushes and compactions all the time;
    /// values of 2 KiB and more kept in the WAL (lsm.md, "Values in the WAL").
    @Test func lsmWithTinyTablesMatchesTheModel() throws {
        var test = ModelBasedTest(LSMBackendFactory(), testName: "lsmWithTinyTablesMatchesTheModel", steps: 3000)
        test.options.tuning = [
            "memtable_bytes": "65536", "block_size": "256", "l0_compaction_trigger": "2", "l0_stop_trigger": "6",
            "level1_bytes": "65536", "level_multiplier": "2", "table_target_bytes": "16384", "wal_value_min_bytes": "2048",
        ]
        try test.run()
    }

    /// The same with WAL segments written by direct I/O (`wal_io = direct`), which values
    /// kept in the WAL are read back from.
    @Test func lsmWithDirectWALWritesMatchesTheModel() throws {
        var test = ModelBasedTest(LSMBackendFactory(), testName: "lsmWithDirectWALWritesMatchesTheModel", steps: 2000)
        test.options.tuning = [
            "wal_io": "direct", "memtable_bytes": "65536", "block_size": "512", "table_target_bytes": "32768", "wal_value_min_bytes": "2048",
        ]
        try test.run()
    }

    @Test func lmdbMatchesTheModel() throws {
        try ModelBasedTest(LMDBBackendFactory(), testName: "lmdbMatchesTheModel").run()
    }

    @Test func lmdbWithATinyMapMatchesTheModel() throws {
        var test = ModelBasedTest(LMDBBackendFactory(), testName: "lmdbWithATinyMapMatchesTheModel", steps: 800)
        test.options.tuning = ["map_size": "65536"]
        test.holdsViews = false
        try test.run()
    }
}
