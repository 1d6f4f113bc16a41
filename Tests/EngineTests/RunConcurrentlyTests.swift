// `runConcurrently`: every body runs, at once, and the first error comes back after all
// have ended.

import Engine
import Foundation
import Synchronization
import Testing

@Suite struct RunConcurrentlyTests {
    struct Failure: Error, Equatable { let index: Int }

    @Test func everyBodyRunsAtOnce() throws {
        let arrived = Mutex(0)
        // Each body waits until all have started: run one after another, they never would.
        let bodies: [@Sendable () throws -> Void] = (0..<4).map { _ in
            {
                arrived.withLock { $0 += 1 }
                let deadline = Date().addingTimeInterval(10)
                while arrived.withLock({ $0 }) < 4 {
                    if Date() > deadline { throw Failure(index: -1) }
                    Thread.sleep(forTimeInterval: 0.001)
                }
            }
        }
        try runConcurrently(bodies)
        #expect(arrived.withLock { $0 } == 4)
    }

    @Test func anErrorComesBackAfterEveryBodyEnded() {
        let ended = Mutex(0)
        let bodies: [@Sendable () throws -> Void] = (0..<3).map { index in
            {
                Thread.sleep(forTimeInterval: index == 2 ? 0.05 : 0)
                ended.withLock { $0 += 1 }
                if index == 1 { throw Failure(index: 1) }
            }
        }
        #expect(throws: Failure(index: 1)) { try runConcurrently(bodies) }
        #expect(ended.withLock { $0 } == 3)
        try? runConcurrently([])
        #expect(throws: Failure(index: 0)) { try runConcurrently([{ throw Failure(index: 0) }]) }
    }
}
