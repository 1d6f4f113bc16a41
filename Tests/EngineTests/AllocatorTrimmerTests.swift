// AllocatorTrimmer: when it trims (after work, once the process is quiet, or every 30 s of
// work without a pause), and that a trim gives free memory back to the system.

import Engine
import Foundation
import Testing

@Suite struct AllocatorTrimmerTests {
    typealias Policy = AllocatorTrimmer.Policy

    static func at(cpuMs: UInt64, wallMs: UInt64) -> AllocatorTrimmer.Sample {
        AllocatorTrimmer.Sample(cpu: cpuMs * 1_000_000, wall: wallMs * 1_000_000)
    }

    /// Steps of one second here; the thread's are shorter, which the policy does not know.
    @Test func trimsOnceWorkEndsAndEveryTenSecondsOfWork() {
        var policy = Policy(start: Self.at(cpuMs: 0, wallMs: 0))
        func trims(_ cpuMs: UInt64, _ wallMs: UInt64) -> Bool { policy.shouldTrim(at: Self.at(cpuMs: cpuMs, wallMs: wallMs)) }
        // Idle from the start: nothing to give back.
        #expect(!trims(2, 1_000))
        // Busy: 800 ms of CPU a second, no trim while it lasts (under 10 s).
        var cpu: UInt64 = 2
        for second in UInt64(2)...9 {
            cpu += 800
            #expect(!trims(cpu, second * 1_000), "second \(second)")
        }
        // Quiet (under 5 ms of CPU since the last look): one trim, then none until more work.
        cpu += 2
        #expect(trims(cpu, 10_000))
        cpu += 2
        #expect(!trims(cpu, 11_000))
        // A little work (under 200 ms of CPU) is not worth a trim.
        cpu += 150
        #expect(!trims(cpu, 12_000))
        cpu += 2
        #expect(!trims(cpu, 13_000))
        // Work without a pause: a trim once 10 s have passed since the last.
        var trimmed: [UInt64] = []
        for second in UInt64(14)...45 {
            cpu += 900
            if trims(cpu, second * 1_000) { trimmed.append(second) }
        }
        #expect(trimmed == [20, 30, 40])
    }

    static func residentBytes() throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
        let kib = try #require(Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
        return kib * 1024
    }

    /// 160 MiB in blocks below glibc's mapping threshold, freed but for the last (which
    /// keeps the top of the heap, so free() alone cannot give the rest back): a trim does.
    @Test func aTrimGivesFreeMemoryBack() throws {
        let count = 2_560
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<count {
            let block = try #require(malloc(64 << 10))
            memset(block, 1, 64 << 10)
            blocks.append(block)
        }
        for block in blocks.dropLast() { free(block) }
        defer { free(blocks.last!) }
        let before = try Self.residentBytes()
        try #require(AllocatorTrimmer.trimNow(), "glibc's malloc_trim")
        let after = try Self.residentBytes()
        // Other tests allocate meanwhile; most of the 160 MiB must still come back.
        #expect(before - after > 80 << 20, "resident \(before >> 20) MiB before the trim, \(after >> 20) MiB after")
    }
}
