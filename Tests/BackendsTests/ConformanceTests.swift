// Every backend runs the one conformance suite.

import BackendCatalog
import Engine
import KVTestSupport
import LMDBBackend
import LSMBackend
import MemoryBackend
import RocksDBBackend
import Testing

@Suite struct MemoryConformance {
    @Test(arguments: KVConformance.cases(for: MemoryBackendFactory()))
    func conformance(_ check: ConformanceCase) throws { try check.run() }
}

@Suite struct RocksDBConformance {
    @Test(arguments: KVConformance.cases(for: RocksDBBackendFactory()))
    func conformance(_ check: ConformanceCase) throws { try check.run() }
}

@Suite struct LMDBConformance {
    @Test(arguments: KVConformance.cases(for: LMDBBackendFactory()))
    func conformance(_ check: ConformanceCase) throws { try check.run() }
}

@Suite struct LSMConformance {
    @Test(arguments: KVConformance.cases(for: LSMBackendFactory()))
    func conformance(_ check: ConformanceCase) throws { try check.run() }
}
