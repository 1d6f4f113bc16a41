// The composition root of storage: the one list of every backend. Adding a backend is
// one folder under Sources/Backends plus one line here.

import Engine
import LMDBBackend
import LSMBackend
import MemoryBackend
import RocksDBBackend
import S3Store

public enum BackendCatalog {
    public static let standard = BackendRegistry(
        [
            // Local folders, and s3:// locations through the S3 object store.
            LSMBackendFactory(remote: S3Remote.open),
            RocksDBBackendFactory(),
            LMDBBackendFactory(),
            MemoryBackendFactory(),
        ],
        defaultName: "lsm"
    )
}
