// AllocatorTrimmer: gives the memory glibc's allocator holds free back to the system once
// a burst of work is over, so a long-running server does not keep the high-water mark of
// every burst (Docs/nfs.md, "Memory").
//
// glibc returns freed memory at the top of an arena above a threshold (32 MiB for zerofs,
// ZeroFSCommand.tuneMalloc), but free chunks below live ones stay, and they add up burst
// after burst: after three rounds of the NFS benchmark's phases of 4,000 files, the
// allocator held 141 MiB for 19 MiB in use, and the server's resident set was 185 MiB;
// `malloc_trim(0)` brought it to 104 MiB. It also costs page faults when the memory is
// used again, so it runs once the process has gone quiet after work (under 2% of a core
// for a quarter of a second), or every 10 s while work goes on without a pause.

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

public final class AllocatorTrimmer: Sendable {
    /// The one trimmer of the process, running while anything holds it (`hold`).
    public static let shared = AllocatorTrimmer()

    private struct State {
        var holders = 0
        var running = false
        var generation = 0
    }
    private let state = Mutex(State())

    /// Process CPU time, in nanoseconds, at a moment.
    public struct Sample: Sendable {
        public var cpu: UInt64
        public var wall: UInt64

        public init(cpu: UInt64, wall: UInt64) {
            self.cpu = cpu
            self.wall = wall
        }
    }

    /// What the thread remembers between its looks.
    public struct Policy: Sendable {
        /// How often the thread looks, in microseconds.
        public static let interval: UInt32 = 250_000
        /// CPU time below this in one interval (2% of a core) is a pause.
        public static let quietPerInterval: UInt64 = 5_000_000
        /// CPU time since the last trim that makes one worth it.
        public static let workSinceTrim: UInt64 = 200_000_000
        /// The longest work goes untrimmed.
        public static let busyInterval: UInt64 = 10_000_000_000

        var lastTrim: Sample
        var previous: Sample

        public init(start: Sample) {
            lastTrim = start
            previous = start
        }

        /// Whether to trim at `now`; remembers `now` either way.
        public mutating func shouldTrim(at now: Sample) -> Bool {
            defer { previous = now }
            let worked = now.cpu - lastTrim.cpu >= Self.workSinceTrim
            let quiet = now.cpu - previous.cpu < Self.quietPerInterval
            guard worked && (quiet || now.wall - lastTrim.wall >= Self.busyInterval) else { return false }
            lastTrim = now
            return true
        }
    }

    /// Starts the trimmer thread if nothing held it; `release` lets go.
    public func hold() {
        let start = state.withLock { s -> Int? in
            s.holders += 1
            guard !s.running else { return nil }
            s.running = true
            s.generation += 1
            return s.generation
        }
        guard let generation = start, Self.trim != nil else { return }
        startThread(named: "malloc-trim") { [self] in run(generation) }
    }

    /// Lets go of a `hold`; the thread stops within an interval after the last one.
    public func release() {
        state.withLock { s in
            guard s.holders > 0 else { return }
            s.holders -= 1
            if s.holders == 0 { s.running = false }
        }
    }

    private func run(_ generation: Int) {
        var policy = Policy(start: Self.sample())
        while true {
            usleep(Policy.interval)
            let going = state.withLock { $0.running && $0.generation == generation }
            guard going else { return }
            if policy.shouldTrim(at: Self.sample()) { Self.trimNow() }
        }
    }

    public static func sample() -> Sample {
        var cpu = timespec()
        var wall = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu)
        clock_gettime(CLOCK_MONOTONIC, &wall)
        return Sample(cpu: UInt64(cpu.tv_sec) * 1_000_000_000 + UInt64(cpu.tv_nsec),
                      wall: UInt64(wall.tv_sec) * 1_000_000_000 + UInt64(wall.tv_nsec))
    }

    /// glibc's malloc_trim(pad) (not in Swift's Glibc module), or nil elsewhere.
    private static let trim: (@convention(c) (Int) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
    }()

    /// Gives every free page the allocator holds back to the system, now. False where
    /// the allocator cannot (not glibc).
    @discardableResult
    public static func trimNow() -> Bool {
        guard let trim else { return false }
        _ = trim(0)
        return true
    }
}
