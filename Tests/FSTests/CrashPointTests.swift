// Stop at every named crash point on every backend, reopen, fsck, and check the
// operation is fully applied or fully absent.

import FSTestSupport
import LMDBBackend
import LSMBackend
import MemoryBackend
import RocksDBBackend
import Testing

@Suite struct MemoryCrashPoints {
    @Test(arguments: CrashPointCase.all(for: MemoryBackendFactory()))
    func crashPoint(_ check: CrashPointCase) throws { try check.run() }
}

@Suite struct RocksDBCrashPoints {
    @Test(arguments: CrashPointCase.all(for: RocksDBBackendFactory()))
    func crashPoint(_ check: CrashPointCase) throws { try check.run() }
}

@Suite struct LMDBCrashPoints {
    @Test(arguments: CrashPointCase.all(for: LMDBBackendFactory()))
    func crashPoint(_ check: CrashPointCase) throws { try check.run() }
}

@Suite struct LSMCrashPoints {
    @Test(arguments: CrashPointCase.all(for: LSMBackendFactory()))
    func crashPoint(_ check: CrashPointCase) throws { try check.run() }
}
