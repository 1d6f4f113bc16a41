// WriteBatch: an ordered list of puts, deletes and range deletes applied atomically by
// KVBackend.write. The operations live in one contiguous byte buffer (no allocation per
// operation), which is also the form a write-ahead log can store as is.
//
// Encoding of `rep`, one record after another (lengths are LEB128 varints):
//   put          0x01 keyLen key valueLen value
//   delete       0x02 keyLen key
//   deleteRange  0x03 startLen start endLen end      (removes keys in [start, end))

/// An atomic group of writes. Later operations in a batch see earlier ones: `put(k)` then
/// `delete(k)` leaves k absent.
public struct WriteBatch: Sendable, Equatable {
    public enum Op: UInt8, Sendable {
        case put = 1
        case delete = 2
        case deleteRange = 3
    }

    public private(set) var rep: [UInt8] = []
    /// The number of operations.
    public private(set) var count = 0
    /// The first rule the batch breaks, if any; reported by `validate()` at write time so
    /// that building a batch never throws.
    private var violation: String?

    public init() {}

    /// Decodes a batch from its `rep` (for example, read back from a log). Throws
    /// `.corruption` when the bytes are not a well-formed batch.
    public init(rep: [UInt8]) throws(KVError) {
        var decoded = WriteBatch()
        let malformed = rep.withUnsafeBytes { raw in
            var reader = Reader(raw: raw)
            while let (op, a, b) = reader.next() {
                switch op {
                case .put: decoded.put(a, b)
                case .delete: decoded.delete(a)
                case .deleteRange: decoded.deleteRange(from: Array(a), to: Array(b))
                }
            }
            return reader.malformed
        }
        if let malformed { throw KVError(.corruption, "malformed write batch: \(malformed)") }
        self = decoded
    }

    /// Makes room for `bytes` more bytes of operations, so that a batch built from large
    /// values is not copied as it grows.
    public mutating func reserve(_ bytes: Int) {
        rep.reserveCapacity(rep.count + bytes)
    }

    public var isEmpty: Bool { count == 0 }
    /// The encoded size in bytes; a measure of the batch's memory and log cost.
    public var byteSize: Int { rep.count }

    public mutating func put(_ key: [UInt8], _ value: [UInt8]) {
        key.withUnsafeBytes { k in value.withUnsafeBytes { v in put(k, v) } }
    }

    public mutating func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        check(key: key.count)
        if value.count > KVLimits.maxValueSize, violation == nil {
            violation = "value of \(value.count) bytes exceeds the limit of \(KVLimits.maxValueSize)"
        }
        rep.append(Op.put.rawValue)
        appendField(key)
        appendField(value)
        count += 1
    }

    /// Puts `key` with the value `head` followed by `body`, copied straight into the batch
    /// (a caller that frames a large body saves building the value first).
    public mutating func put(_ key: UnsafeRawBufferPointer, head: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer) {
        check(key: key.count)
        let count = head.count + body.count
        if count > KVLimits.maxValueSize, violation == nil {
            violation = "value of \(count) bytes exceeds the limit of \(KVLimits.maxValueSize)"
        }
        rep.append(Op.put.rawValue)
        appendField(key)
        appendLength(count)
        rep.appendRaw(head)
        rep.appendRaw(body)
        self.count += 1
    }

    public mutating func delete(_ key: [UInt8]) {
        key.withUnsafeBytes { delete($0) }
    }

    public mutating func delete(_ key: UnsafeRawBufferPointer) {
        check(key: key.count)
        rep.append(Op.delete.rawValue)
        appendField(key)
        count += 1
    }

    /// Removes every key in [start, end). An empty or inverted range removes nothing.
    public mutating func deleteRange(from start: [UInt8], to end: [UInt8]) {
        check(key: start.count)
        check(key: end.count)
        rep.append(Op.deleteRange.rawValue)
        start.withUnsafeBytes { appendField($0) }
        end.withUnsafeBytes { appendField($0) }
        count += 1
    }

    public mutating func removeAll(keepingCapacity: Bool = true) {
        rep.removeAll(keepingCapacity: keepingCapacity)
        count = 0
        violation = nil
    }

    /// Throws `.invalidArgument` if any operation broke the key or value size limits, or
    /// the batch is larger than `KVLimits.maxBatchSize`.
    public func validate() throws(KVError) {
        if let violation { throw KVError(.invalidArgument, violation) }
        if rep.count > KVLimits.maxBatchSize {
            throw KVError(.invalidArgument, "write batch of \(rep.count) bytes exceeds the limit of \(KVLimits.maxBatchSize)")
        }
    }

    /// Calls `body` for each operation in order with borrowed bytes: the key (or range
    /// start) and the value (or range end; empty for a delete). The buffers are valid only
    /// during the call.
    public func forEach(
        _ body: (Op, UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void
    ) rethrows {
        try rep.withUnsafeBytes { raw in
            var reader = Reader(raw: raw)
            while let (op, a, b) = reader.next() { try body(op, a, b) }
        }
    }

    /// One operation with borrowed bytes (see `withOperations`).
    public struct BorrowedOp {
        public var op: Op
        /// The key, or the start of a range.
        public var key: UnsafeRawBufferPointer
        /// The value, or the end of a range; empty for a delete.
        public var value: UnsafeRawBufferPointer
    }

    /// Lends all operations at once, in order, for backends that reorder work (for example
    /// to apply keys in sorted order). The buffers are valid only during the call.
    public func withOperations<R>(_ body: ([BorrowedOp]) throws -> R) rethrows -> R {
        try rep.withUnsafeBytes { raw in
            var reader = Reader(raw: raw)
            var all: [BorrowedOp] = []
            all.reserveCapacity(count)
            while let (op, a, b) = reader.next() { all.append(BorrowedOp(op: op, key: a, value: b)) }
            return try body(all)
        }
    }

    private mutating func check(key length: Int) {
        if length > KVLimits.maxKeySize, violation == nil {
            violation = "key of \(length) bytes exceeds the limit of \(KVLimits.maxKeySize)"
        }
    }

    private mutating func appendField(_ bytes: UnsafeRawBufferPointer) {
        appendLength(bytes.count)
        rep.appendRaw(bytes)
    }

    /// A field's length, as a varint.
    private mutating func appendLength(_ length: Int) {
        var n = UInt64(length)
        while n >= 0x80 {
            rep.append(UInt8(truncatingIfNeeded: n) | 0x80)
            n >>= 7
        }
        rep.append(UInt8(n))
    }

    /// Walks `rep`; stops with `malformed` set at the first record that does not parse.
    private struct Reader {
        let raw: UnsafeRawBufferPointer
        var at = 0
        var malformed: String?

        mutating func next() -> (Op, UnsafeRawBufferPointer, UnsafeRawBufferPointer)? {
            guard at < raw.count, malformed == nil else { return nil }
            guard let op = Op(rawValue: raw[at]) else {
                malformed = "unknown operation \(raw[at]) at byte \(at)"
                return nil
            }
            at += 1
            guard let a = field() else { return nil }
            if op == .delete { return (op, a, UnsafeRawBufferPointer(start: nil, count: 0)) }
            guard let b = field() else { return nil }
            return (op, a, b)
        }

        private mutating func field() -> UnsafeRawBufferPointer? {
            var length: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard at < raw.count, shift < 64 else {
                    malformed = "truncated length at byte \(at)"
                    return nil
                }
                let byte = raw[at]
                at += 1
                length |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { break }
                shift += 7
            }
            guard length <= UInt64(raw.count - at) else {
                malformed = "field of \(length) bytes runs past the end at byte \(at)"
                return nil
            }
            let slice = UnsafeRawBufferPointer(rebasing: raw[at..<(at + Int(length))])
            at += Int(length)
            return slice
        }
    }
}
