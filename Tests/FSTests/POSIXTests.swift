// The POSIX-semantics suite on every backend.

import FSTestSupport
import LMDBBackend
import LSMBackend
import MemoryBackend
import RocksDBBackend
import Testing

@Suite struct MemoryPOSIX {
    @Test(arguments: POSIXSuite.cases(for: MemoryBackendFactory()))
    func posix(_ check: FSCase) throws { try check.run() }
}

@Suite struct RocksDBPOSIX {
    @Test(arguments: POSIXSuite.cases(for: RocksDBBackendFactory()))
    func posix(_ check: FSCase) throws { try check.run() }
}

@Suite struct LMDBPOSIX {
    @Test(arguments: POSIXSuite.cases(for: LMDBBackendFactory()))
    func posix(_ check: FSCase) throws { try check.run() }
}

@Suite struct LSMPOSIX {
    @Test(arguments: POSIXSuite.cases(for: LSMBackendFactory()))
    func posix(_ check: FSCase) throws { try check.run() }
}
