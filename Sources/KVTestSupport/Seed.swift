// Seeds for randomized tests: every run prints its seed, and ZEROFS_SEED replays it.

@_exported import Workloads

#if canImport(Glibc)
import Glibc
#endif

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
