// Task-local values around a body with a typed error: the standard `withValue` only
// rethrows `any Error`. Used where a thread's context rides in a task-local (Blocking, the
// FS's change observer and durability deferral).

extension TaskLocal {
    /// Runs `body` with this task-local bound to `value`, keeping `body`'s error type.
    public func withValue<R, E: Error>(_ value: Value, typed body: () throws(E) -> R) throws(E) -> R {
        // `operation:` named: a trailing closure would call this method again.
        let result: Result<R, E> = withValue(value, operation: {
            do throws(E) { return .success(try body()) } catch { return .failure(error) }
        })
        return try result.get()
    }
}
