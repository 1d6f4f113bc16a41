// The writer half of the crash test (`zerofs debug crash-writer`): it writes durable
// batches forever (every fifth one buffered, then made durable by an empty durable write) and acknowledges each on standard output only after write returned:
//
//   ack <batch> <syncs before the write> <syncs after it>
//
// Batch i holds keys "crash/" + i (8 bytes big-endian) + j for j in 0 ..< 1 + i % 4, each
// with value i (8 bytes) followed by (i % 7) * 100 filler bytes. The test kills the writer
// at a random moment and checks the reopened store holds every acknowledged batch, whole.

import Engine

#if canImport(Glibc)
import Glibc
#endif

public enum CrashWriter {
    public static let prefix = Array("crash/".utf8)

    public static func keys(batch: UInt64) -> [[UInt8]] {
        (0..<(1 + Int(batch % 4))).map { j in prefix + bigEndian(batch) + [UInt8(j)] }
    }

    public static func value(batch: UInt64) -> [UInt8] {
        bigEndian(batch) + [UInt8](repeating: UInt8(truncatingIfNeeded: batch), count: Int(batch % 7) * 100)
    }

    /// Writes batches from `start` on until the process is killed (or `limit` batches).
    public static func run(store: any KVBackend, start: UInt64, limit: UInt64?) throws {
        let syncCount = loadSyncCounter()
        var batchNumber = start
        while limit.map({ batchNumber < start + $0 }) ?? true {
            var batch = WriteBatch()
            let value = value(batch: batchNumber)
            for key in keys(batch: batchNumber) { batch.put(key, value) }
            let before = syncCount?() ?? 0
            if batchNumber % 5 == 4 {
                // A buffered write made durable by a later empty durable write: prefix
                // durability must hold even when the durable write changes nothing.
                try store.write(batch, durable: false)
                try store.write(WriteBatch(), durable: true)
            } else {
                try store.write(batch, durable: true)
            }
            let after = syncCount?() ?? 0
            print("ack \(batchNumber) \(before) \(after)")
            flushStandardOutput()
            batchNumber += 1
        }
        try store.close()
    }

    /// The preloaded sync counter's reader, when the SyncCounter library is preloaded.
    private static func loadSyncCounter() -> (() -> UInt)? {
        guard let symbol = dlsym(nil, "zerofs_sync_count") else { return nil }
        typealias Counter = @convention(c) () -> UInt
        let function = unsafeBitCast(symbol, to: Counter.self)
        return { function() }
    }

    static func bigEndian(_ n: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: n >> (56 - 8 * UInt64($0))) }
    }
}
