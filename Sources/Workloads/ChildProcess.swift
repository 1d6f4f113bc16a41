// Starting a child process with its standard output on a pipe, reading it line by line,
// and stopping it: used by the benchmark (one child per backend) and the crash test.

import Engine
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

private let runCounter = Atomic<Int>(0)

public final class ChildProcess {
    public let pid: pid_t
    private let output: UnsafeMutablePointer<FILE>
    private var exited = false

    /// Starts `executable` with `arguments`; `environment` entries ("NAME=value") are added
    /// to this process's environment. `errorLog`: a file for its standard error.
    public init(executable: String, arguments: [String], environment: [String] = [], errorLog: String? = nil) throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw ChildProcessError("pipe: \(String(cString: strerror(errno)))") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addclose(&actions, fds[1])
        if let errorLog { posix_spawn_file_actions_addopen(&actions, 2, errorLog, O_WRONLY | O_CREAT | O_TRUNC, 0o644) }

        var attributes = Self.cleanSignals()
        defer { posix_spawnattr_destroy(&attributes) }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = Self.environment(adding: environment).map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, &attributes, argv, envp)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw ChildProcessError("cannot start \(executable): \(String(cString: strerror(rc)))")
        }
        pid = child
        output = fdopen(fds[0], "r")
    }

    /// Spawn attributes that start a child with no signal blocked and every handler at its
    /// default. The calling thread may block signals (dispatch's threads block most), and
    /// a child would inherit that mask: SIGTERM would never reach it. The caller destroys
    /// the attributes.
    public static func cleanSignals() -> posix_spawnattr_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        return attributes
    }

    /// The next line of the child's standard output without its newline, or nil at the end.
    public func readLine() -> String? {
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        let n = getline(&line, &capacity, output)
        guard n >= 0, let line else { return nil }
        var text = String(cString: line)
        if text.hasSuffix("\n") { text.removeLast() }
        return text
    }

    /// Whether the child has not ended (reaping it if it has).
    public var isRunning: Bool {
        guard !exited else { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            exited = true
            return false
        }
        return true
    }

    /// Kills the child with `signal` and reaps it.
    public func kill(_ signal: Int32 = SIGKILL) {
        guard !exited else { return }
        Glibc.kill(pid, signal)
        _ = wait()
    }

    /// Waits for the child to end; returns its exit status (or 128 + signal).
    @discardableResult
    public func wait() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        exited = true
        if status & 0x7F == 0 { return (status >> 8) & 0xFF }
        return 128 + (status & 0x7F)
    }

    deinit {
        if !exited { kill() }
        fclose(output)
    }

    /// This process's environment with `extra` entries ("NAME=value") added or replaced
    /// (never by changing this process's own environment, which other threads read).
    static func environment(adding extra: [String]) -> [String] {
        var inherited: [String] = []
        var index = 0
        while let entry = environ[index] {
            inherited.append(String(cString: entry))
            index += 1
        }
        let names = Set(extra.compactMap { $0.split(separator: "=", maxSplits: 1).first.map(String.init) })
        inherited.removeAll { names.contains(String($0.split(separator: "=", maxSplits: 1).first ?? "")) }
        return inherited + extra
    }

    /// Runs `argv` to its end with its standard output and error in temporary files (no
    /// pipes or threads in this process, and no descriptor of ours touched): its exit
    /// status and both outputs. `environment` entries are added to this process's.
    public static func run(_ argv: [String], environment: [String] = []) throws -> (status: Int32, output: [UInt8], errors: [UInt8]) {
        let stem = (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp") + "/zerofs-run-\(getpid())-\(runCounter.add(1, ordering: .relaxed).newValue)"
        let paths = [stem + ".out", stem + ".err"]
        defer { for path in paths { unlink(path) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (fd, path) in zip([Int32(1), 2], paths) {
            posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        }
        let args = argv.map { strdup($0) } + [nil]
        let envp = environment.isEmpty ? nil : Self.environment(adding: environment).map { strdup($0) } + [nil]
        defer {
            args.forEach { free($0) }
            envp?.forEach { free($0) }
        }
        var attributes = Self.cleanSignals()
        defer { posix_spawnattr_destroy(&attributes) }
        var child: pid_t = 0
        let rc = envp.map { envp in envp.withUnsafeBufferPointer { posix_spawn(&child, argv[0], &actions, &attributes, args, $0.baseAddress) } }
            ?? posix_spawn(&child, argv[0], &actions, &attributes, args, environ)
        guard rc == 0 else { throw ChildProcessError("cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        let code = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        let read = { (path: String) in (try? FileOps.readFile(path)) ?? [] }
        return (code, read(paths[0]), read(paths[1]))
    }

    /// Starts `executable` with standard input from /dev/null and both outputs in `log`.
    public static func spawn(_ executable: String, _ arguments: [String], log: String, append: Bool = false) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = ChildProcess.cleanSignals()
        defer { posix_spawnattr_destroy(&attributes) }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw ChildProcessError("cannot start \(executable): \(String(cString: strerror(rc)))") }
        return child
    }

    /// The path of the running executable.
    public static var currentExecutable: String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

public struct ChildProcessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Flushes every output stream (standard output included), so a reader on a pipe sees
/// each line at once.
public func flushStandardOutput() {
    fflush(nil)
}

