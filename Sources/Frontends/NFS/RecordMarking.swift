// Record marking for ONC RPC over TCP (RFC 5531, section 11): a record is one or more
// fragments, each a 4-byte header (top bit: last fragment; the other 31 bits: the
// fragment's length) followed by its bytes. `RecordDecoder` is a value-type state
// machine fed whatever the socket delivered; it never holds more than one record plus
// one header, and refuses a record longer than its limit (the connection is then
// closed; nothing else is affected).

public struct RecordTooLong: Error, Sendable, Equatable, CustomStringConvertible {
    public var length: Int
    public var limit: Int

    public var description: String { "an RPC record of at least \(length) bytes exceeds the limit of \(limit)" }
}

public struct RecordDecoder: Sendable {
    /// The longest record accepted (all fragments together).
    public let limit: Int
    private var pending: [UInt8] = []
    private var record: [UInt8] = []

    public init(limit: Int) {
        self.limit = limit
    }

    /// Bytes received but not yet part of a complete record.
    public var buffered: Int { pending.count + record.count }

    /// Consumes `bytes` and returns every record they complete, in order.
    public mutating func feed(_ bytes: some Collection<UInt8>) throws(RecordTooLong) -> [[UInt8]] {
        pending.append(contentsOf: bytes)
        var records: [[UInt8]] = []
        var at = 0
        while pending.count - at >= 4 {
            let header = UInt32(pending[at]) << 24 | UInt32(pending[at + 1]) << 16 | UInt32(pending[at + 2]) << 8 | UInt32(pending[at + 3])
            let last = header & 0x8000_0000 != 0
            let length = Int(header & 0x7FFF_FFFF)
            guard record.count + length <= limit else { throw RecordTooLong(length: record.count + length, limit: limit) }
            guard pending.count - at - 4 >= length else { break }
            record.append(contentsOf: pending[(at + 4)..<(at + 4 + length)])
            at += 4 + length
            if last {
                records.append(record)
                record = []
            }
        }
        if at > 0 { pending.removeFirst(at) }
        return records
    }

    /// `payload` as one record of one fragment.
    public static func frame(_ payload: [UInt8]) -> [UInt8] {
        var framed: [UInt8] = []
        framed.reserveCapacity(payload.count + 4)
        let header = UInt32(payload.count) | 0x8000_0000
        framed.append(UInt8(truncatingIfNeeded: header >> 24))
        framed.append(UInt8(truncatingIfNeeded: header >> 16))
        framed.append(UInt8(truncatingIfNeeded: header >> 8))
        framed.append(UInt8(truncatingIfNeeded: header))
        framed.append(contentsOf: payload)
        return framed
    }
}
