// What every benchmark result holds and prints the same way: throughput, latency
// percentiles, the common JSON fields and the common table columns.

import Foundation

public protocol BenchMeasurement {
    var backend: String { get }
    var workload: String { get }
    var ops: Int { get }
    var seconds: Double { get }
    var bytes: Int { get }
    var p50Micros: Double { get }
    var p99Micros: Double { get }
}

extension BenchMeasurement {
    public var opsPerSecond: Double { Double(ops) / max(seconds, 1e-9) }
    public var megabytesPerSecond: Double { Double(bytes) / 1_048_576 / max(seconds, 1e-9) }

    /// The fields every benchmark's JSON line starts with (no braces, no trailing comma):
    /// backend, workload, ops, seconds, ops_per_sec, mb_per_sec, p50_us, p99_us.
    public var commonJSONFields: String {
        func number(_ value: Double) -> String { String(format: "%.3f", value) }
        return "\"backend\":\"\(backend)\",\"workload\":\"\(workload)\",\"ops\":\(ops),\"seconds\":\(String(format: "%.6f", seconds)),"
            + "\"ops_per_sec\":\(number(opsPerSecond)),\"mb_per_sec\":\(number(megabytesPerSecond)),"
            + "\"p50_us\":\(number(p50Micros)),\"p99_us\":\(number(p99Micros))"
    }

    public static var commonHeader: [String] { ["backend", "workload", "ops", "ops/s", "MB/s", "p50 µs", "p99 µs"] }

    public var commonRow: [String] {
        [backend, workload, "\(ops)", String(format: "%.0f", opsPerSecond), String(format: "%.1f", megabytesPerSecond),
         String(format: "%.2f", p50Micros), String(format: "%.2f", p99Micros)]
    }
}

/// This process's peak resident set so far, in bytes (what the kernel recorded: no sampling).
func processPeakRSS() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss * 1024
}

/// Latencies of one workload, in nanoseconds, and their percentiles in microseconds.
public struct LatencyRecorder: Sendable {
    private var samples: [UInt32] = []

    public init() {}

    public mutating func reset() { samples.removeAll(keepingCapacity: true) }

    /// Records the time since `start` (a `Clock.now()` value).
    public mutating func record(since start: UInt64) {
        samples.append(UInt32(min(Clock.now() - start, UInt64(UInt32.max))))
    }

    public var count: Int { samples.count }

    /// (p50, p99) in microseconds; (0, 0) with no samples.
    public mutating func percentiles() -> (Double, Double) {
        guard !samples.isEmpty else { return (0, 0) }
        samples.sort()
        func at(_ q: Double) -> Double { Double(samples[min(samples.count - 1, Int(Double(samples.count) * q))]) / 1000 }
        return (at(0.5), at(0.99))
    }
}
