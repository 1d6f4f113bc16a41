// The reference for `zerofs bench snapshot`: btrfs snapshots on a loop file, measured in
// the same run. Needs root and btrfs-progs (`apt-get install btrfs-progs`); otherwise the
// benchmark says why it has no reference. Each snapshot is one `btrfs subvolume snapshot
// -r` process, as an administrator takes it; the same datasets (a few files, many files of
// the same size) are snapshotted in turns.

import Engine
import Foundation

public enum BtrfsReference {
    /// Why the reference cannot run here, or nil when it can.
    public static func unavailable() -> String? {
        if getuid() != 0 { return "btrfs reference skipped: needs root (loop mount)" }
        for tool in ["/usr/sbin/mkfs.btrfs", "/usr/bin/btrfs"] where !FileManager.default.isExecutableFile(atPath: tool) {
            return "btrfs reference skipped: \(tool) missing (apt-get install btrfs-progs)"
        }
        return nil
    }

    /// Snapshot timings of a subvolume of `smallFiles` and one of `files` files of
    /// `fileKiB` KiB each, `reps` snapshots each in turns.
    public static func run(files: Int, smallFiles: Int, fileKiB: Int, reps: Int, directory: String) throws -> [SnapshotBenchResult] {
        let root = directory + "/btrfs-reference"
        let image = root + "/image"
        let mount = root + "/mnt"
        try FileOps.removeTree(root)
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        defer { try? FileOps.removeTree(root) }
        let size = max(1 << 30, files * (fileKiB + 4) << 11)
        guard FileManager.default.createFile(atPath: image, contents: nil), truncate(image, off_t(size)) == 0 else {
            throw ChildProcessError("cannot create \(image)")
        }
        try command("/usr/sbin/mkfs.btrfs", ["-q", image])
        try command("/usr/bin/mount", ["-o", "loop", image, mount])
        defer { _ = try? command("/usr/bin/umount", [mount]) }
        var generator = SeededGenerator(seed: 5)
        let data = Data((0..<(fileKiB << 10) * 16).map { _ in UInt8.random(in: 0...255, using: &generator) })
        for (name, count) in [("small", smallFiles), ("big", files)] {
            try command("/usr/bin/btrfs", ["-q", "subvolume", "create", "\(mount)/\(name)"])
            for d in 0..<min(100, count) {
                try FileManager.default.createDirectory(atPath: "\(mount)/\(name)/d\(d)", withIntermediateDirectories: false)
            }
            for file in 0..<count {
                let at = (file % 15) << 10
                let path = "\(mount)/\(name)/d\(file % min(100, count))/file-\(file)"
                guard FileManager.default.createFile(atPath: path, contents: data[at..<(at + (fileKiB << 10))]) else {
                    throw ChildProcessError("cannot write \(path)")
                }
            }
        }
        sync()
        var samples: [String: LatencyRecorder] = [:]
        let start = Clock.now()
        for rep in 0..<reps {
            for name in ["big", "small"] {
                let t = Clock.now()
                try command("/usr/bin/btrfs", ["-q", "subvolume", "snapshot", "-r", "\(mount)/\(name)", "\(mount)/\(name)-\(rep)"])
                samples[name, default: LatencyRecorder()].record(since: t)
            }
        }
        let seconds = Double(Clock.now() - start) / 1e9
        return [("small", smallFiles), ("big", files)].map { name, count in
            var recorder = samples[name] ?? LatencyRecorder()
            let (p50, p99) = recorder.percentiles()
            return SnapshotBenchResult(backend: "btrfs", workload: "snapshot", files: count, snapshots: 0, ops: reps,
                                       seconds: seconds, bytes: 0, p50Micros: p50, p99Micros: p99)
        }
    }

    @discardableResult
    static func command(_ executable: String, _ arguments: [String]) throws -> Int32 {
        let child = try ChildProcess(executable: executable, arguments: arguments)
        while child.readLine() != nil {}
        let status = child.wait()
        guard status == 0 else { throw ChildProcessError("\(executable) \(arguments.joined(separator: " ")) exited with \(status)") }
        return status
    }
}
