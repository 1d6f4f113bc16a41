// The composition root of storage: the one list of every backend. Adding a backend is
// one folder under Sources/Backends plus one line here.

import Engine
import LMDBBackend
import LSMBackend
import MemoryBackend
import RocksDBBackend

public enum BackendCatalog {
    public static let standard = BackendRegistry(
        [
            LSMBackendFactory(),
            RocksDBBackendFactory(),
            LMDBBackendFactory(),
            MemoryBackendFactory(),
        ],
        defaultName: "lsm"
    )
}
