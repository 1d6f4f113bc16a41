import Engine
import Testing

@Suite struct WriteBatchTests {
    @Test func encodesTheDocumentedBytes() throws {
        var batch = WriteBatch()
        batch.put(Array("a".utf8), Array("xy".utf8))
        batch.delete(Array("b".utf8))
        batch.deleteRange(from: [0x00], to: [0xFF, 0xFF])
        // Docs/format-write-batch.md: tag, LEB128 length, bytes.
        #expect(batch.rep == [0x01, 0x01, 0x61, 0x02, 0x78, 0x79, 0x02, 0x01, 0x62, 0x03, 0x01, 0x00, 0x02, 0xFF, 0xFF])
        #expect(batch.count == 3)
        #expect(try WriteBatch(rep: batch.rep) == batch)
    }

    @Test func longFieldsUseMultiByteLengths() throws {
        var batch = WriteBatch()
        batch.put([UInt8](repeating: 7, count: 300), [UInt8](repeating: 9, count: 20000))
        #expect(Array(batch.rep[0..<3]) == [0x01, 0xAC, 0x02])
        var seen: [(WriteBatch.Op, Int, Int)] = []
        batch.forEach { op, key, value in seen.append((op, key.count, value.count)) }
        #expect(seen.count == 1 && seen[0].1 == 300 && seen[0].2 == 20000)
        #expect(try WriteBatch(rep: batch.rep).count == 1)
    }

    @Test func aValueInTwoPartsEncodesAsOne() throws {
        var whole = WriteBatch()
        whole.put(Array("k".utf8), [1, 2] + [UInt8](repeating: 9, count: 300))
        var parts = WriteBatch()
        parts.reserve(400)
        let head: [UInt8] = [1, 2]
        let body = [UInt8](repeating: 9, count: 300)
        Array("k".utf8).withUnsafeBytes { key in
            head.withUnsafeBytes { h in body.withUnsafeBytes { parts.put(key, head: h, body: $0) } }
        }
        #expect(parts.rep == whole.rep && parts.count == 1)
        #expect(try WriteBatch(rep: parts.rep) == whole)
    }

    @Test(arguments: [
        [0x04, 0x00],
        [0x01, 0x05, 0x61],
        [0x01, 0x01, 0x61],
        [0x02, 0x80],
        [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
    ] as [[UInt8]])
    func malformedBytesAreCorruption(_ rep: [UInt8]) {
        #expect { _ = try WriteBatch(rep: rep) } throws: { ($0 as? KVError)?.code == .corruption }
    }

    @Test func decodedBatchesAreHeldToTheLimits() throws {
        var batch = WriteBatch()
        batch.put([UInt8](repeating: 1, count: 501), [])
        let decoded = try WriteBatch(rep: batch.rep)
        #expect { try decoded.validate() } throws: { ($0 as? KVError)?.code == .invalidArgument }
    }

    @Test func sizeViolationsAreReportedAtValidation() {
        var batch = WriteBatch()
        batch.put([UInt8](repeating: 1, count: 500), [])
        #expect(throws: Never.self) { try batch.validate() }
        batch.delete([UInt8](repeating: 1, count: 501))
        #expect { try batch.validate() } throws: { ($0 as? KVError)?.code == .invalidArgument }
        batch.removeAll()
        #expect(throws: Never.self) { try batch.validate() }
    }

    @Test func aBatchOverTheSizeLimitIsRefused() {
        // Fifteen values at the value limit, then one sized to fill the batch to its limit
        // exactly (a put of a 1-byte key and a 4-byte length costs 7 bytes besides).
        let value = [UInt8](repeating: 7, count: KVLimits.maxValueSize)
        var batch = WriteBatch()
        for index in 0..<15 { batch.put([UInt8(index)], value) }
        batch.put([99], [UInt8](repeating: 8, count: KVLimits.maxBatchSize - batch.byteSize - 7))
        #expect(batch.byteSize == KVLimits.maxBatchSize)
        #expect(throws: Never.self) { try batch.validate() }
        batch.delete([1])
        #expect { try batch.validate() } throws: { error in
            guard let error = error as? KVError else { return false }
            return error.code == .invalidArgument && "\(error)".contains("exceeds the limit of \(KVLimits.maxBatchSize)")
        }
    }
}
