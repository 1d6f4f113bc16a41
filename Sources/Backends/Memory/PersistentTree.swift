// An immutable (persistent) treap ordered by unsigned byte comparison. Every update
// returns a new root sharing all untouched nodes with the old one, so a snapshot is just a
// root reference: O(1) to take, and never changed by later writes.
// Priorities come from a hash of the key, so the shape depends only on the key set.

import Engine

final class TreeNode: Sendable {
    let key: [UInt8]
    let value: [UInt8]
    let priority: UInt64
    let left: TreeNode?
    let right: TreeNode?

    init(key: [UInt8], value: [UInt8], priority: UInt64, left: TreeNode?, right: TreeNode?) {
        self.key = key
        self.value = value
        self.priority = priority
        self.left = left
        self.right = right
    }

    func with(left: TreeNode?, right: TreeNode?) -> TreeNode {
        TreeNode(key: key, value: value, priority: priority, left: left, right: right)
    }
}

/// A value-type handle on one immutable tree version.
struct PersistentTree: Sendable {
    private(set) var root: TreeNode?
    private(set) var count = 0

    init() {}

    func get(_ key: UnsafeRawBufferPointer) -> TreeNode? {
        var node = root
        while let current = node {
            let c = Bytes.compare(key, current.key)
            if c == 0 { return current }
            node = c < 0 ? current.left : current.right
        }
        return nil
    }

    mutating func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        var added = false
        root = Self.insert(root, Array(key), Array(value), Self.priority(key), &added)
        if added { count += 1 }
    }

    mutating func delete(_ key: UnsafeRawBufferPointer) {
        var removed = false
        root = Self.remove(root, key, &removed)
        if removed { count -= 1 }
    }

    /// Removes every key in [start, end) in O(log n) plus the cost of recounting.
    mutating func deleteRange(_ start: UnsafeRawBufferPointer, _ end: UnsafeRawBufferPointer) {
        guard Bytes.compare(start, end) < 0 else { return }
        let (below, rest) = Self.split(root, start)
        let (middle, above) = Self.split(rest, end)
        count -= Self.size(middle)
        root = Self.merge(below, above)
    }

    private static func size(_ node: TreeNode?) -> Int {
        guard let node else { return 0 }
        return 1 + size(node.left) + size(node.right)
    }

    private static func insert(_ node: TreeNode?, _ key: [UInt8], _ value: [UInt8], _ priority: UInt64, _ added: inout Bool) -> TreeNode {
        guard let node else {
            added = true
            return TreeNode(key: key, value: value, priority: priority, left: nil, right: nil)
        }
        let c = Bytes.compare(key, node.key)
        if c == 0 {
            return TreeNode(key: node.key, value: value, priority: node.priority, left: node.left, right: node.right)
        }
        if c < 0 {
            let left = insert(node.left, key, value, priority, &added)
            if left.priority > node.priority {
                return left.with(left: left.left, right: node.with(left: left.right, right: node.right))
            }
            return node.with(left: left, right: node.right)
        }
        let right = insert(node.right, key, value, priority, &added)
        if right.priority > node.priority {
            return right.with(left: node.with(left: node.left, right: right.left), right: right.right)
        }
        return node.with(left: node.left, right: right)
    }

    private static func remove(_ node: TreeNode?, _ key: UnsafeRawBufferPointer, _ removed: inout Bool) -> TreeNode? {
        guard let node else { return nil }
        let c = Bytes.compare(key, node.key)
        if c == 0 {
            removed = true
            return merge(node.left, node.right)
        }
        if c < 0 {
            let left = remove(node.left, key, &removed)
            return removed ? node.with(left: left, right: node.right) : node
        }
        let right = remove(node.right, key, &removed)
        return removed ? node.with(left: node.left, right: right) : node
    }

    /// Joins two trees where every key of `a` is below every key of `b`.
    private static func merge(_ a: TreeNode?, _ b: TreeNode?) -> TreeNode? {
        guard let a else { return b }
        guard let b else { return a }
        if a.priority > b.priority {
            return a.with(left: a.left, right: merge(a.right, b))
        }
        return b.with(left: merge(a, b.left), right: b.right)
    }

    /// Splits into the keys below `key` and the keys at or above it.
    private static func split(_ node: TreeNode?, _ key: UnsafeRawBufferPointer) -> (TreeNode?, TreeNode?) {
        guard let node else { return (nil, nil) }
        if Bytes.compare(key, node.key) <= 0 {
            let (below, rest) = split(node.left, key)
            return (below, node.with(left: rest, right: node.right))
        }
        let (rest, above) = split(node.right, key)
        return (node.with(left: node.left, right: rest), above)
    }

    /// The key's treap priority: a well-mixed hash, so the shape depends only on the keys.
    static func priority(_ key: UnsafeRawBufferPointer) -> UInt64 { Bytes.hash64(key) }
}

/// In-order traversal of one tree version with an explicit stack; lends node bytes.
final class TreeCursor {
    private let root: TreeNode?
    private var stack: [TreeNode] = []

    init(root: TreeNode?) {
        self.root = root
        stack.reserveCapacity(64)
    }

    var current: TreeNode? { stack.last }

    /// Positions on the first node whose key is at or after `key`.
    func seek(_ key: UnsafeRawBufferPointer) {
        stack.removeAll(keepingCapacity: true)
        var node = root
        while let x = node {
            if Bytes.compare(key, x.key) <= 0 {
                stack.append(x)
                node = x.left
            } else {
                node = x.right
            }
        }
    }

    func next() {
        guard let top = stack.popLast() else { return }
        var node = top.right
        while let x = node {
            stack.append(x)
            node = x.left
        }
    }
}
