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
    /// The bytes of a fragment header received so far (fewer than 4).
    private var header: [UInt8] = []
    /// The record so far: its earlier fragments and what arrived of the current one.
    private var record: [UInt8] = []
    /// Bytes of the current fragment still to come; nil between fragments.
    private var fragmentLeft: Int?
    private var lastFragment = false

    public init(limit: Int) {
        self.limit = limit
    }

    /// Bytes received but not yet part of a complete record.
    public var buffered: Int { header.count + record.count }

    /// Consumes `bytes` and returns every record they complete, in order.
    public mutating func feed(_ bytes: some Collection<UInt8>) throws(RecordTooLong) -> [[UInt8]] {
        var outcome: Result<[[UInt8]], RecordTooLong> = .success([])
        let contiguous: Void? = bytes.withContiguousStorageIfAvailable { stored in
            outcome = Result { () throws(RecordTooLong) in try feed(UnsafeRawBufferPointer(stored)) }
        }
        if contiguous == nil {
            Array(bytes).withUnsafeBytes { raw in outcome = Result { () throws(RecordTooLong) in try feed(raw) } }
        }
        return try outcome.get()
    }

    /// Consumes `bytes` and returns every record they complete, in order. Each byte of a
    /// record is copied once, into the record.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) throws(RecordTooLong) -> [[UInt8]] {
        var records: [[UInt8]] = []
        var at = 0
        while true {
            if fragmentLeft == nil {
                let word: UInt32
                if header.isEmpty && bytes.count - at >= 4 {
                    // A whole header in this read (the usual case): read in place.
                    word = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self))
                    at += 4
                } else {
                    while header.count < 4 && at < bytes.count {
                        header.append(bytes[at])
                        at += 1
                    }
                    guard header.count == 4 else { break }
                    word = UInt32(header[0]) << 24 | UInt32(header[1]) << 16 | UInt32(header[2]) << 8 | UInt32(header[3])
                    header.removeAll(keepingCapacity: true)
                }
                let length = Int(word & 0x7FFF_FFFF)
                guard record.count + length <= limit else { throw RecordTooLong(length: record.count + length, limit: limit) }
                fragmentLeft = length
                lastFragment = word & 0x8000_0000 != 0
            }
            let take = min(fragmentLeft!, bytes.count - at)
            if take > 0 {
                // Room for the whole fragment once 64 KiB of it arrive at once, or when it is
                // all here and the whole record (the usual call): one allocation, and no
                // peer can make the server reserve a length it only announced.
                let wholeRecord = record.isEmpty && lastFragment && take == fragmentLeft!
                if (wholeRecord || take >= 64 << 10) && record.capacity < record.count + fragmentLeft! {
                    record.reserveCapacity(record.count + fragmentLeft!)
                }
                record.appendRaw(UnsafeRawBufferPointer(rebasing: bytes[at..<(at + take)]))
                at += take
                fragmentLeft! -= take
            }
            guard fragmentLeft == 0 else { break }
            fragmentLeft = nil
            if lastFragment {
                records.append(record)
                record = []
            }
        }
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
