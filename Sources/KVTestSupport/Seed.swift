// Seeds for randomized tests: every run prints its seed, and ZEROFS_SEED replays it.

#if canImport(Glibc)
import Glibc
#endif

/// SplitMix64: small, fast, and the same sequence on every platform for a seed.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

public enum TestSeed {
    /// The seed from ZEROFS_SEED, or a fresh one; printed with the test's name so a failure
    /// can be replayed with `ZEROFS_SEED=<seed> swift test --filter <name>`.
    public static func resolve(_ testName: String) -> UInt64 {
        let seed: UInt64
        if let text = getenv("ZEROFS_SEED").map({ String(cString: $0) }), let value = UInt64(text) {
            seed = value
        } else {
            var system = SystemRandomNumberGenerator()
            seed = system.next() >> 1
        }
        print("[\(testName)] seed \(seed) (replay: ZEROFS_SEED=\(seed) swift test --filter \(testName))")
        return seed
    }

    /// An integer from the environment (for opt-in longer runs), or `fallback`.
    public static func environmentInt(_ name: String, default fallback: Int) -> Int {
        guard let text = getenv(name).map({ String(cString: $0) }), let value = Int(text) else { return fallback }
        return value
    }
}
