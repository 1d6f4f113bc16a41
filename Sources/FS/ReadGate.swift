// ReadGate: lets the collector wait for the reads that began before it looked at the
// forest (Docs/datasets.md, "Reads and the collector").
//
// A read of a dataset or snapshot takes its version view when it starts and reads keys
// one after another. Once that view's head is dead (the snapshot or dataset deleted, the
// dataset rolled back), the collector may move or drop the entries the view shows, and a
// read still going would see some moved and some not. So the collector first brings every
// handle up to date (a deleted one answers ESTALE, a rolled-back one shows its new head),
// then drains the gate: it waits until every read that entered before then has left.
// Reads that enter later see the handles as they are now, and never the dead view.
//
// Two counters and an epoch, as in read-copy-update: a reader counts itself in the
// counter of the epoch it saw, and checks the epoch again (if it moved meanwhile, it
// counts itself in the new one instead); a drain moves the epoch on and waits for the old
// epoch's counter to reach zero. Readers never wait; the cost of a read is two atomic
// additions.

import Foundation
import Synchronization

final class ReadGate: Sendable {
    private let epoch = Atomic<UInt64>(0)
    private let even = Atomic<Int>(0)
    private let odd = Atomic<Int>(0)
    /// Drains one at a time: the epoch moves on only once the one before is empty.
    private let draining = Mutex(())

    /// A read that holds the gate: `leave` it when the read is done.
    struct Token {
        fileprivate let odd: Bool
    }

    func enter() -> Token {
        while true {
            let seen = epoch.load(ordering: .sequentiallyConsistent)
            let token = Token(odd: seen & 1 == 1)
            add(token, 1)
            if epoch.load(ordering: .sequentiallyConsistent) == seen { return token }
            // A drain moved the epoch on meanwhile and may have found this counter empty:
            // count this read in the new epoch instead.
            add(token, -1)
        }
    }

    func leave(_ token: Token) { add(token, -1) }

    /// Returns once every read that entered before the call has left. Reads that enter
    /// meanwhile are not waited for.
    func drain() {
        draining.withLock { _ in
            let old = Token(odd: epoch.add(1, ordering: .sequentiallyConsistent).oldValue & 1 == 1)
            var pause: useconds_t = 20
            while count(old) > 0 {
                usleep(pause)
                pause = min(pause * 2, 1_000)
            }
        }
    }

    /// Reads holding the gate now (tests).
    var readers: Int { even.load(ordering: .sequentiallyConsistent) + odd.load(ordering: .sequentiallyConsistent) }

    private func count(_ token: Token) -> Int {
        token.odd ? odd.load(ordering: .sequentiallyConsistent) : even.load(ordering: .sequentiallyConsistent)
    }

    private func add(_ token: Token, _ delta: Int) {
        if token.odd {
            odd.add(delta, ordering: .sequentiallyConsistent)
        } else {
            even.add(delta, ordering: .sequentiallyConsistent)
        }
    }
}
