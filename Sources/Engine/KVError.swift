// KVError: the one error type of the storage layer. Every requirement of KVBackend and
// KVBackendFactory throws only KVError; "key not found" is not an error (get returns nil).

/// An error from the key-value layer: a code to branch on, a message for people, the
/// path or object it concerns, and the lower-level cause when there is one.
public struct KVError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Code: String, Sendable, Equatable {
        /// A caller passed something the contract forbids (oversized key, bad option, bad name).
        case invalidArgument = "invalid argument"
        /// The store, view or iterator was closed before this call.
        case closed
        /// Another process (or another open handle in this one) holds the store.
        case locked
        /// The path exists but is not a store of this project.
        case notAStore = "not a store"
        /// The path holds a store written by another backend.
        case wrongBackend = "wrong backend"
        /// No store exists at the path and the caller did not ask to create one.
        case storeNotFound = "store not found"
        /// A write was attempted on a read-only store (a checkpoint opened for reading).
        case readOnly = "read-only"
        /// A named thing (checkpoint) already exists.
        case alreadyExists = "already exists"
        /// A named thing (checkpoint) does not exist.
        case notFound = "not found"
        /// Stored bytes failed a checksum or could not be parsed.
        case corruption
        /// The operating system or the native library reported an I/O failure.
        case io = "I/O error"
        /// The store's format is newer or older than this build understands.
        case unsupportedFormat = "unsupported format"
        /// A newer writer took over the store; this handle may no longer write.
        case fenced
    }

    public var code: Code
    public var message: String
    public var path: String?
    public var cause: String?

    public init(_ code: Code, _ message: String, path: String? = nil, cause: String? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.cause = cause
    }

    /// The message with the path (when the message does not name it) and the cause,
    /// without the code: one line for a command's error.
    public var detail: String { detail(besides: nil) }

    /// `detail` for a line that names `place` already: the path is left out when it is
    /// that place.
    public func detail(besides place: String?) -> String {
        var text = message
        if let path, !message.contains(path), place.map({ FileOps.absolutePath($0) != FileOps.absolutePath(path) }) ?? true {
            text += " (\(path))"
        }
        if let cause { text += ": \(cause)" }
        return text
    }

    public var description: String {
        var text = "\(code.rawValue): \(message)"
        if let path { text += " (\(path))" }
        if let cause { text += ": \(cause)" }
        return text
    }

    static func closed(_ what: String) -> KVError {
        KVError(.closed, "\(what) is closed")
    }
}

extension KVError {
    /// An I/O error built from the current `errno`.
    public static func posix(_ operation: String, path: String?, errno code: Int32) -> KVError {
        KVError(.io, "\(operation) failed", path: path, cause: String(cString: strerror(code)))
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
