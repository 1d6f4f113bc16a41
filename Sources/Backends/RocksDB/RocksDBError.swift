// The one place where RocksDB's C error strings become KVErrors (and are freed).

import CRocksDB
import Engine

enum RocksDBError {
    /// Throws if `error` is set, freeing the C string. RocksDB's message starts with its
    /// status code ("Corruption: ...", "IO error: ..."), which picks the KVError code.
    static func check(_ error: UnsafeMutablePointer<CChar>?, _ operation: String, path: String) throws(KVError) {
        guard let error else { return }
        let message = String(cString: error)
        rocksdb_free(error)
        let code: KVError.Code
        if message.hasPrefix("Corruption") {
            code = .corruption
        } else if message.hasPrefix("Invalid argument") {
            code = .invalidArgument
        } else if message.hasPrefix("Not implemented") || message.hasPrefix("Not supported") {
            code = .unsupportedFormat
        } else {
            code = .io
        }
        throw KVError(code, "rocksdb \(operation) failed", path: path, cause: message)
    }
}
