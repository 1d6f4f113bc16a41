// The duplicate-request cache (NFSService.swift): a retransmission of a call still
// running waits for its reply when it came on another connection (a few at most; more
// are dropped), and one of a finished call gets its reply; the oldest finished entries
// go when the cache is full, never a running one.

@testable import NFS
import Engine
import Testing

@Suite struct DuplicateRequestCacheTests {
    private func key(_ xid: UInt32) -> DuplicateRequestCache.Key {
        DuplicateRequestCache.Key(client: "127.0.0.1:700", xid: xid, record: [1, 2, 3, UInt8(truncatingIfNeeded: xid)])
    }

    private func isNew(_ begin: DuplicateRequestCache.Begin) -> Bool {
        if case .new = begin { return true }
        return false
    }

    private func isRunning(_ begin: DuplicateRequestCache.Begin) -> Bool {
        if case .running = begin { return true }
        return false
    }

    @Test func aRunningCallIsNeverEvicted() {
        let cache = DuplicateRequestCache(capacity: 4)
        #expect(isNew(cache.begin(key(1))))
        // Far more calls than the capacity begin and end while call 1 still runs.
        for xid in UInt32(2)..<100 {
            #expect(isNew(cache.begin(key(xid))))
            cache.finish(key(xid), [UInt8(xid)])
        }
        #expect(isRunning(cache.begin(key(1))), "the running call's entry was evicted: a retransmission would run it again")
        cache.finish(key(1), [42])
        if case .done(let reply) = cache.begin(key(1)) {
            #expect(reply == [42])
        } else {
            Issue.record("the finished call's reply is not cached")
        }
        // The newest finished calls are still answered, the oldest are gone.
        if case .done(let reply) = cache.begin(key(99)) { #expect(reply == [99]) } else { Issue.record("call 99 was evicted") }
        #expect(isNew(cache.begin(key(2))))
    }

    @Test func runningCallsMayHoldTheCacheOverItsCapacity() {
        let cache = DuplicateRequestCache(capacity: 2)
        for xid in UInt32(1)...5 { #expect(isNew(cache.begin(key(xid)))) }
        for xid in UInt32(1)...5 { #expect(isRunning(cache.begin(key(xid))), "call \(xid)") }
        for xid in UInt32(1)...5 { cache.finish(key(xid), [UInt8(xid)]) }
        #expect(isNew(cache.begin(key(6))))
        // Finished entries go again once a new call needs room.
        if case .done = cache.begin(key(1)) { Issue.record("the cache kept call 1 past its capacity") }
    }

    @Test func retransmissionsOfARunningCallGetItsReplyWhenItEnds() {
        let cache = DuplicateRequestCache(capacity: 4)
        #expect(isNew(cache.begin(key(1), connection: 9)))
        // On the call's own connection: that connection gets the call's reply anyway.
        if case .running(let waiting) = cache.begin(key(1), connection: 9, waiter: { _ in Issue.record("a second reply on the call's connection") }) {
            #expect(!waiting)
        } else {
            Issue.record("not running")
        }
        let got = Locked<[[UInt8]]>([])
        for connection in 10..<UInt64(10 + DuplicateRequestCache.waitersPerCall) {
            guard case .running(let waiting) = cache.begin(key(1), connection: connection, waiter: { reply in got.withLock { $0.append(reply) } }) else {
                Issue.record("not running")
                return
            }
            #expect(waiting)
        }
        // Past the limit a retransmission is dropped (the client sends it again).
        if case .running(let waiting) = cache.begin(key(1), connection: 20, waiter: { _ in Issue.record("a waiter past the limit got the reply") }) {
            #expect(!waiting)
        } else {
            Issue.record("not running")
        }
        #expect(got.withLock { $0 }.isEmpty)
        cache.finish(key(1), [7])
        #expect(got.withLock { $0 } == Array(repeating: [7], count: DuplicateRequestCache.waitersPerCall))
        // Finished: a later retransmission gets the reply at once, and nobody waits again.
        if case .done(let reply) = cache.begin(key(1), waiter: { _ in Issue.record("waited on a finished call") }) {
            #expect(reply == [7])
        } else {
            Issue.record("the reply is not cached")
        }
    }
}
