// Runs a body on N dedicated threads at once. DispatchQueue.concurrentPerform runs only
// as many iterations at a time as there are cores (two here); FS tests want every
// thread live together, blocking in locks and syncs.

import Foundation

public func runOnThreads(_ count: Int, _ body: @Sendable @escaping (Int) -> Void) {
    let done = DispatchGroup()
    for index in 0..<count {
        done.enter()
        let thread = Thread {
            body(index)
            done.leave()
        }
        thread.stackSize = 4 << 20
        thread.start()
    }
    done.wait()
}
