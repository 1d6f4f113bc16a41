// The model-based test: a seeded random sequence of operations (writes, range deletes,
// reads, scans, read views, reopen, checkpoints) applied to a backend under test and to
// the `memory` backend as the model, compared after every step. A failure names the seed
// and step; ZEROFS_SEED replays the exact sequence.

import Engine
import MemoryBackend
import Testing

public struct ModelBasedTest {
    public let factory: any KVBackendFactory
    public var options = BackendOptions()
    public var steps: Int
    public let seed: UInt64
    /// Whether read views stay open across later steps (true) or are checked and closed in
    /// the step that opens them (for stores where open views block maintenance).
    public var holdsViews = true

    public init(_ factory: any KVBackendFactory, testName: String, steps: Int = 1500) {
        self.factory = factory
        self.steps = TestSeed.environmentInt("ZEROFS_MODEL_STEPS", default: steps)
        seed = TestSeed.resolve(testName)
    }

    /// Runs the sequence; records an issue and stops at the first divergence.
    public func run() throws {
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let modelHarness = StoreHarness(MemoryBackendFactory())
        defer { modelHarness.cleanUp() }
        var random = SeededGenerator(seed: seed)
        let path = harness.freshPath()
        let modelPath = modelHarness.freshPath()
        var subject = try factory.open(at: path, options: options)
        let model = try modelHarness.open(modelPath)
        defer {
            try? subject.close()
            try? model.close()
        }
        var views: [(subject: any KVReadView, model: any KVReadView)] = []
        var checkpoints: [String] = []
        var checkpointCounter = 0

        for step in 0..<steps {
            let roll = Int.random(in: 0..<100, using: &random)
            var action = ""
            switch roll {
            case 0..<30:
                var batch = WriteBatch()
                let size = Int.random(in: 1...6, using: &random)
                for _ in 0..<size { addRandomOp(&batch, &random) }
                let durable = Bool.random(using: &random)
                action = "write \(size) ops durable=\(durable)"
                try subject.write(batch, durable: durable)
                try model.write(batch, durable: durable)
            case 30..<45:
                let key = randomKey(&random)
                action = "get \(key)"
                let got = try subject.get(key)
                let want = try model.get(key)
                guard got == want else { return fail(step, action, "get returned \(String(describing: got)), model \(String(describing: want))") }
                // The borrowed form lends the same bytes, at "now" and in the newest read view.
                let lent = try subject.withValue(key) { $0.map { Array($0) } }
                guard lent == want else { return fail(step, action, "withValue lent \(String(describing: lent)), model \(String(describing: want))") }
                if let (s, m) = views.last {
                    let inView = try s.withValue(key) { $0.map { Array($0) } }
                    guard try inView == m.get(key) else { return fail(step, action, "withValue in a read view differs from the model's") }
                }
                // Many keys at once, some with room for their values' tails, at "now" and in
                // the newest read view.
                let keys = [key] + (0..<Int.random(in: 0...6, using: &random)).map { _ in randomKey(&random) }
                let head = Int.random(in: 0...16, using: &random)
                let rooms = keys.map { _ in Int.random(in: 0..<3, using: &random) == 0 ? nil : Int.random(in: 0...5000, using: &random) }
                if let wrong = try differences(subject, model, keys, head: head, rooms: rooms) {
                    return fail(step, action + ", withValues \(keys) head \(head) rooms \(rooms)", wrong)
                }
                if let (s, m) = views.last, let wrong = try differences(s, m, keys, head: head, rooms: rooms) {
                    return fail(step, action + ", withValues in a read view", wrong)
                }
            case 45..<55:
                let range = randomRange(&random)
                action = "scan \(range)"
                guard try subject.entries(range) == model.entries(range) else { return fail(step, action, "scan differs") }
            case 55..<63:
                let from = randomKey(&random)
                let prefix = Array(randomKey(&random).prefix(Int.random(in: 0...2, using: &random)))
                action = "firstEntry from \(from) prefix \(prefix)"
                guard try subject.firstEntry(from: from, prefix: prefix) == model.firstEntry(from: from, prefix: prefix) else {
                    return fail(step, action, "firstEntry differs")
                }
            case 63..<70:
                action = "open read view"
                views.append((try subject.readView(), try model.readView()))
                if !holdsViews {
                    let (s, m) = views.removeLast()
                    guard try s.entries() == m.entries() else { return fail(step, action, "read view differs from the model's") }
                    s.close()
                    m.close()
                }
            case 70..<77:
                guard !views.isEmpty else { continue }
                let index = Int.random(in: 0..<views.count, using: &random)
                action = "check and close read view \(index)"
                let (s, m) = views.remove(at: index)
                guard try s.entries() == m.entries() else { return fail(step, action, "read view differs from the model's") }
                s.close()
                m.close()
            case 77..<81:
                action = "flush"
                try subject.flush()
            case 81..<85:
                action = "reopen"
                for (s, m) in views {
                    s.close()
                    m.close()
                }
                views.removeAll()
                try subject.close()
                subject = try factory.open(at: path, options: options)
            case 85..<90:
                checkpointCounter += 1
                let name = "cp\(checkpointCounter)"
                action = "create checkpoint \(name)"
                _ = try subject.createCheckpoint(named: name)
                _ = try model.createCheckpoint(named: name)
                checkpoints.append(name)
            case 90..<95:
                guard !checkpoints.isEmpty else { continue }
                let name = checkpoints[Int.random(in: 0..<checkpoints.count, using: &random)]
                action = "verify checkpoint \(name)"
                let s = try factory.openCheckpoint(at: path, named: name, options: options)
                let m = try MemoryBackendFactory().openCheckpoint(at: modelPath, named: name, options: BackendOptions())
                let same = try s.entries() == m.entries()
                try s.close()
                try m.close()
                guard same else { return fail(step, action, "checkpoint content differs from the model's") }
            default:
                guard !checkpoints.isEmpty else { continue }
                let name = checkpoints.remove(at: Int.random(in: 0..<checkpoints.count, using: &random))
                action = "delete checkpoint \(name)"
                try subject.deleteCheckpoint(named: name)
                try model.deleteCheckpoint(named: name)
            }
            let (got, want) = (try subject.entries(), try model.entries())
            guard got == want else {
                let wrong = Set(got).symmetricDifference(Set(want)).map(\.key).sorted { Bytes.compare($0, $1) < 0 }.prefix(5)
                return fail(step, action, "store content differs after the step: \(got.count) entries, model \(want.count); keys differing: \(wrong)")
            }
            guard try subject.listCheckpoints().map(\.name) == model.listCheckpoints().map(\.name) else {
                return fail(step, action, "checkpoint lists differ")
            }
        }
        for (s, m) in views {
            #expect(try s.entries() == m.entries())
            s.close()
            m.close()
        }
    }

    /// How `withValues` on `subject` differs from the model's values of `keys` (nil: it
    /// does not): each key's body runs once, with the value whole or its first `head`
    /// bytes and the rest placed at the start of the key's room.
    private func differences(_ subject: any KVReader, _ model: any KVReader, _ keys: [[UInt8]], head: Int, rooms: [Int?]) throws -> String? {
        let buffers = rooms.map { room in room.map { UnsafeMutableRawBufferPointer.allocate(byteCount: $0, alignment: 8) } }
        defer { for buffer in buffers { buffer?.deallocate() } }
        var got = [[UInt8]?](repeating: nil, count: keys.count)
        var calls = [Int](repeating: 0, count: keys.count)
        var wrong: String?
        try subject.withValues(keys, head: head, tails: buffers) { index, value, placed in
            calls[index] += 1
            guard let value else { return }
            if let placed {
                guard let tail = buffers[index], value.count == head, placed <= tail.count else {
                    wrong = "key \(index) placed \(placed) bytes with a head of \(value.count) and room for \(buffers[index]?.count ?? -1)"
                    return
                }
                got[index] = Array(value) + Array(tail[..<placed])
            } else {
                got[index] = Array(value)
            }
        }
        if let wrong { return wrong }
        if let k = calls.firstIndex(where: { $0 != 1 }) { return "key \(k)'s body ran \(calls[k]) times" }
        for (k, key) in keys.enumerated() where try got[k] != model.get(key) {
            return "key \(k) (\(key)) got \(got[k]?.count ?? -1) bytes, not the model's"
        }
        return nil
    }

    private func fail(_ step: Int, _ action: String, _ what: String) {
        Issue.record("\(factory.name) diverged from the model at step \(step) (\(action)): \(what); replay with ZEROFS_SEED=\(seed)")
    }

    /// Keys of 0 to 3 bytes over an alphabet with 0x00 and 0xFF, so that prefixes,
    /// empty keys and byte-order edges meet often.
    private func randomKey(_ random: inout SeededGenerator) -> [UInt8] {
        let alphabet: [UInt8] = [0x00, 0x01, 0x61, 0x62, 0xFE, 0xFF]
        let length = Int.random(in: 0...3, using: &random)
        return (0..<length).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &random)] }
    }

    private func randomRange(_ random: inout SeededGenerator) -> KeyRange {
        let a = randomKey(&random)
        if Int.random(in: 0..<4, using: &random) == 0 { return KeyRange(start: a) }
        return KeyRange(start: a, end: randomKey(&random))
    }

    private func addRandomOp(_ batch: inout WriteBatch, _ random: inout SeededGenerator) {
        switch Int.random(in: 0..<10, using: &random) {
        case 0..<6:
            let size = Int.random(in: 0..<8, using: &random) == 0 ? Int.random(in: 100...5000, using: &random) : Int.random(in: 0...24, using: &random)
            batch.put(randomKey(&random), (0..<size).map { _ in UInt8.random(in: 0...255, using: &random) })
        case 6..<9:
            batch.delete(randomKey(&random))
        default:
            let range = randomRange(&random)
            batch.deleteRange(from: range.start, to: range.end ?? [0xFF, 0xFF, 0xFF, 0xFF])
        }
    }
}
