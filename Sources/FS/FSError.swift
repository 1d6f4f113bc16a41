// FSError: the one error type of the filesystem layer. Every public FileSystem operation
// throws only FSError; its `errno` is the POSIX code a frontend maps to its wire status.
// Nothing a client or a file on disk can cause ends in a crash: it ends here.

import Engine

public struct FSError: Error, Sendable, Equatable, CustomStringConvertible {
    /// POSIX error numbers (Linux values); persisted nowhere, so free to extend.
    public enum Code: Int32, Sendable, Equatable, CaseIterable {
        case EPERM = 1
        case ENOENT = 2
        case EIO = 5
        /// A guard failed: the inode changed since the caller read it (NFS's NOT_SYNC).
        case EAGAIN = 11
        case EACCES = 13
        case EEXIST = 17
        case EXDEV = 18
        case ENOTDIR = 20
        case EISDIR = 21
        case EINVAL = 22
        case EFBIG = 27
        case ENOSPC = 28
        case EROFS = 30
        case EMLINK = 31
        case ENAMETOOLONG = 36
        case ENOTEMPTY = 39
        case ENOTSUP = 95
        case ESTALE = 116
    }

    public var code: Code
    public var message: String
    public var cause: String?

    public init(_ code: Code, _ message: String, cause: String? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var errno: Int32 { code.rawValue }

    public var description: String {
        var text = "\(code) (\(code.rawValue)): \(message)"
        if let cause { text += ": \(cause)" }
        return text
    }

    static func storage(_ error: KVError) -> FSError {
        if error.code == .readOnly { return FSError(.EROFS, "the store is read-only", cause: error.description) }
        return FSError(.EIO, "storage error", cause: error.description)
    }

    static func corrupt(_ what: String) -> FSError {
        FSError(.EIO, "corrupt record: \(what)")
    }
}

/// Runs a storage call and turns its KVError into FSError.EIO.
@inline(__always)
func kv<T>(_ body: () throws -> T) throws(FSError) -> T {
    do {
        return try body()
    } catch let error as KVError {
        throw FSError.storage(error)
    } catch let error as FSError {
        throw error
    } catch {
        throw FSError(.EIO, "unexpected error", cause: "\(error)")
    }
}

/// Lends the bytes of `bytes` to a decoder that throws FSError.
@inline(__always)
func withBytes<T>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(FSError) -> T) throws(FSError) -> T {
    let result: Result<T, FSError> = bytes.withUnsafeBytes { raw in Result { () throws(FSError) in try body(raw) } }
    return try result.get()
}
