// SIGKILL crash tests on each crash-safe backend (ZEROFS_CRASH_ROUNDS for more rounds).

import KVTestSupport
import LMDBBackend
import LSMBackend
import RocksDBBackend
import Testing

@Suite(.serialized) struct CrashTests {
    @Test func rocksdbKeepsEveryAcknowledgedBatch() throws {
        try CrashTest(RocksDBBackendFactory(), testName: "rocksdbKeepsEveryAcknowledgedBatch").run()
    }

    @Test func lsmKeepsEveryAcknowledgedBatch() throws {
        try CrashTest(LSMBackendFactory(), testName: "lsmKeepsEveryAcknowledgedBatch").run()
    }

    @Test func lmdbKeepsEveryAcknowledgedBatch() throws {
        try CrashTest(LMDBBackendFactory(), testName: "lmdbKeepsEveryAcknowledgedBatch").run()
    }
}
