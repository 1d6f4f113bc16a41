// A sharded LRU cache of decoded blocks, bounded in bytes, keyed by (table id, offset).

import Engine
import Synchronization

final class BlockCache: Sendable {
    /// A block: its table and its offset there.
    struct Key: Hashable, Sendable {
        var table: UInt64
        var offset: UInt64
    }

    private final class Node {
        let key: Key
        let block: Block
        var newer: Node?
        unowned(unsafe) var older: Node?
        init(key: Key, block: Block) {
            self.key = key
            self.block = block
        }
    }

    private final class Shard: Sendable {
        let lock = Locked(ShardBox())
    }

    private let shards: [Shard]
    private let capacityPerShard: Int

    private final class ShardBox: @unchecked Sendable {
        // Only touched while its Mutex is held.
        var map: [Key: Node] = [:]
        var newest: Node?
        var oldest: Node?
        var bytes = 0
    }

    /// What the tables' row caches hold together (TableReader.swift, RowCache): a quarter
    /// of `capacity`, on top of it.
    let rows: RowBudget

    init(capacity: Int, shards count: Int = 16) {
        shards = (0..<count).map { _ in Shard() }
        capacityPerShard = max(capacity / count, 1)
        rows = RowBudget(limit: capacity / 4)
    }

    /// Both numbers whole: a key packed into 64 bits (24 for the table) made tables 2^24
    /// apart share their blocks, and writer epochs start table ids 2^40 apart.
    static func key(table: UInt64, offset: Int) -> Key { Key(table: table, offset: UInt64(offset)) }

    private func shard(_ key: Key) -> Int {
        Int(((key.table &* 0x9E37_79B9_7F4A_7C15) ^ (key.offset &* 0xC2B2_AE3D_27D4_EB4F)) >> 60) % shards.count
    }

    func get(_ key: Key) -> Block? {
        shards[shard(key)].lock.withLock { box in
            guard let node = box.map[key] else { return nil }
            Self.unlink(node, box)
            Self.pushNewest(node, box)
            return node.block
        }
    }

    func insert(_ key: Key, _ block: Block) {
        let capacity = capacityPerShard
        shards[shard(key)].lock.withLock { box in
            if let existing = box.map[key] {
                Self.unlink(existing, box)
                box.bytes -= existing.block.byteSize
            }
            let node = Node(key: key, block: block)
            box.map[key] = node
            Self.pushNewest(node, box)
            box.bytes += block.byteSize
            while box.bytes > capacity, let victim = box.oldest, victim !== node {
                Self.unlink(victim, box)
                box.map[victim.key] = nil
                box.bytes -= victim.block.byteSize
            }
        }
    }

    /// Drops every block of `table` (its file was deleted).
    func evict(table: UInt64) {
        for shard in shards {
            shard.lock.withLock { box in
                for (key, node) in box.map where key.table == table {
                    Self.unlink(node, box)
                    box.map[key] = nil
                    box.bytes -= node.block.byteSize
                }
            }
        }
    }

    var usedBytes: Int { shards.reduce(0) { sum, shard in sum + shard.lock.withLock { $0.bytes } } }

    private static func unlink(_ node: Node, _ box: ShardBox) {
        let newer = node.newer
        let older = node.older
        if let older { older.newer = newer } else if box.oldest === node { box.oldest = newer }
        if let newer { newer.older = older } else if box.newest === node { box.newest = older }
        node.newer = nil
        node.older = nil
    }

    private static func pushNewest(_ node: Node, _ box: ShardBox) {
        node.older = box.newest
        node.newer = nil
        box.newest?.newer = node
        box.newest = node
        if box.oldest == nil { box.oldest = node }
    }
}
