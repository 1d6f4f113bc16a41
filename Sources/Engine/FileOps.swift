// The one choke-point through which Engine and the file-based backends touch the local
// file system: every call turns errno into a KVError naming the path.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes one line to standard error (progress and diagnostics), in one `write`, so that
/// lines of threads writing at once do not interleave.
public func printError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

public enum FileOps {
    public enum Kind: Sendable { case missing, directory, file, other }

    /// What is at `path`; a symbolic link is followed when `followingLinks` is set.
    public static func kind(of path: String, followingLinks: Bool = false) -> Kind {
        var info = stat()
        guard (followingLinks ? stat(path, &info) : lstat(path, &info)) == 0 else { return .missing }
        switch info.st_mode & S_IFMT {
        case S_IFDIR: return .directory
        case S_IFREG: return .file
        default: return .other
        }
    }

    /// Creates `path` and its missing parents, syncing each parent that gained an entry so
    /// the new folders survive a power loss.
    public static func makeDirectories(_ path: String) throws(KVError) {
        if kind(of: path, followingLinks: true) == .directory { return }
        let parent = parentPath(path)
        if parent != path, !parent.isEmpty { try makeDirectories(parent) }
        if mkdir(path, 0o755) != 0 {
            if errno == EEXIST { return }
            throw .posix("mkdir", path: path, errno: errno)
        }
        try syncDirectory(parent.isEmpty ? "." : parent)
    }

    /// The names in a directory, without "." and "..", sorted.
    public static func list(_ path: String) throws(KVError) -> [String] {
        guard let dir = opendir(path) else { throw .posix("opendir", path: path, errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public static func readFile(_ path: String) throws(KVError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .posix("open", path: path, errno: errno) }
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .posix("read", path: path, errno: errno)
            }
            if n == 0 { return result }
            result.append(contentsOf: chunk[0..<n])
        }
    }

    /// Writes a whole file durably: a temporary name, fsync, rename over `path`, fsync of
    /// the directory. Readers see the old or the new content, never a mix.
    public static func writeFileAtomically(_ path: String, _ bytes: [UInt8]) throws(KVError) {
        // Unique per call, not only per process: two threads writing one file must not
        // truncate each other's temporary.
        let temporary = path + ".tmp.\(getpid()).\(UInt64.random(in: 0...UInt64.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .posix("open", path: temporary, errno: errno) }
        do throws(KVError) {
            try writeAll(fd, bytes, path: temporary)
            if fsync(fd) != 0 { throw KVError.posix("fsync", path: temporary, errno: errno) }
            close(fd)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        if rename(temporary, path) != 0 {
            let code = errno
            unlink(temporary)
            throw .posix("rename", path: path, errno: code)
        }
        try syncDirectory(parentPath(path))
    }

    public static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(KVError) {
        let failure: KVError? = bytes.withUnsafeBytes { raw in
            do throws(KVError) {
                try writeAll(fd, raw, path: path)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    /// Writes every byte, retrying short writes and EINTR.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(KVError) {
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw .posix("write", path: path, errno: errno)
            }
            done += n
        }
    }

    /// Writes every byte at `offset` (pwrite), retrying short writes and EINTR.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, path: String) throws(KVError) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw .posix("pwrite", path: path, errno: errno)
            }
            done += n
        }
    }

    public static func syncDirectory(_ path: String) throws(KVError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .posix("open", path: path, errno: errno) }
        defer { close(fd) }
        if fsync(fd) != 0 { throw .posix("fsync", path: path, errno: errno) }
    }

    public static func syncFile(_ path: String) throws(KVError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .posix("open", path: path, errno: errno) }
        defer { close(fd) }
        if fsync(fd) != 0 { throw .posix("fsync", path: path, errno: errno) }
    }

    /// Copies a regular file and syncs the copy.
    public static func copyFile(from source: String, to destination: String) throws(KVError) {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw .posix("open", path: source, errno: errno) }
        defer { close(input) }
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw .posix("open", path: destination, errno: errno) }
        defer { close(output) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .posix("read", path: source, errno: errno)
            }
            if n == 0 { break }
            try writeAll(output, Array(buffer[0..<n]), path: destination)
        }
        if fsync(output) != 0 { throw .posix("fsync", path: destination, errno: errno) }
    }

    /// Copies a directory tree of regular files; `link` decides per file name whether a
    /// hard link (for files nobody modifies) may stand in for a copy.
    public static func copyTree(
        from source: String, to destination: String, mayLink: (String) -> Bool = { _ in false }
    ) throws(KVError) {
        try makeDirectories(destination)
        for name in try list(source) {
            let from = source + "/" + name
            let to = destination + "/" + name
            switch kind(of: from) {
            case .directory:
                try copyTree(from: from, to: to, mayLink: mayLink)
            case .file:
                if mayLink(name), link(from, to) == 0 { continue }
                try copyFile(from: from, to: to)
            default:
                continue
            }
        }
        try syncDirectory(destination)
    }

    /// Whether `path` is missing or a folder whose tree holds folders only.
    public static func holdsNoFile(_ path: String) throws(KVError) -> Bool {
        switch kind(of: path) {
        case .missing: return true
        case .directory:
            for name in try list(path) {
                if try !holdsNoFile(path + "/" + name) { return false }
            }
            return true
        default: return false
        }
    }

    /// Removes a file or a whole directory tree; a missing path is not an error.
    public static func removeTree(_ path: String) throws(KVError) {
        switch kind(of: path) {
        case .missing:
            return
        case .directory:
            for name in try list(path) { try removeTree(path + "/" + name) }
            if rmdir(path) != 0, errno != ENOENT { throw .posix("rmdir", path: path, errno: errno) }
        default:
            if unlink(path) != 0, errno != ENOENT { throw .posix("unlink", path: path, errno: errno) }
        }
    }

    /// Renames `from` to `to`. A folder onto a non-empty folder fails with
    /// `.alreadyExists`.
    public static func renameItem(_ from: String, _ to: String) throws(KVError) {
        if rename(from, to) != 0 {
            if errno == ENOTEMPTY || errno == EEXIST { throw KVError(.alreadyExists, "target exists", path: to) }
            throw .posix("rename", path: from, errno: errno)
        }
    }

    public static func parentPath(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// `path` made absolute against the working directory, without trailing slashes.
    public static func absolutePath(_ path: String) -> String {
        var result = path
        if !result.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            if getcwd(&buffer, buffer.count) != nil {
                let cwd = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                result = cwd + "/" + result
            }
        }
        while result.count > 1 && result.hasSuffix("/") { result.removeLast() }
        return result
    }

    /// `path` with symbolic links, "." and ".." resolved (realpath) when it exists,
    /// otherwise `absolutePath(path)`: two spellings of one folder compare equal.
    public static func canonicalPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return absolutePath(path) }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    public static func nowNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
