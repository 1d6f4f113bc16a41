// The one place where LMDB return codes become KVErrors.

import CLMDB
import Engine

#if canImport(Glibc)
import Glibc
#endif

enum LMDBError {
    static func check(_ code: Int32, _ operation: String, path: String) throws(KVError) {
        guard code != 0 else { return }
        let message = String(cString: mdb_strerror(code))
        let kind: KVError.Code
        switch code {
        case MDB_CORRUPTED, MDB_PAGE_NOTFOUND, MDB_INVALID: kind = .corruption
        case MDB_VERSION_MISMATCH: kind = .unsupportedFormat
        case MDB_BAD_VALSIZE, EINVAL: kind = .invalidArgument
        default: kind = .io
        }
        throw KVError(kind, "lmdb \(operation) failed", path: path, cause: message)
    }
}
