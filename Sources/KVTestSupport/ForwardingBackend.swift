// A KVBackend that passes every call to another: tests subclass it to count, record or
// hold back the calls they care about. `firstVersion`, `withValue` and `withValues` take
// the protocol's defaults, so they too arrive as `firstEntry` and `get`.

import Engine

open class ForwardingBackend: KVBackend, @unchecked Sendable {
    // `inner` is thread-safe itself; subclasses guard what they add.
    public let inner: any KVBackend

    public init(_ inner: any KVBackend) { self.inner = inner }

    open var backendName: String { inner.backendName }
    open var isReadOnly: Bool { inner.isReadOnly }
    open func get(_ key: [UInt8]) throws -> [UInt8]? { try inner.get(key) }
    open func makeIterator(_ range: KeyRange) throws -> any KVIterator { try inner.makeIterator(range) }
    open func firstEntry(from: [UInt8], prefix: [UInt8]) throws -> KVEntry? { try inner.firstEntry(from: from, prefix: prefix) }
    open func write(_ batch: WriteBatch, durable: Bool) throws { try inner.write(batch, durable: durable) }
    open func flush() throws { try inner.flush() }
    open func readView() throws -> any KVReadView { try inner.readView() }
    open func close() throws { try inner.close() }
    open func beginClosing() { inner.beginClosing() }
    open func createCheckpoint(named name: String) throws -> CheckpointInfo { try inner.createCheckpoint(named: name) }
    open func listCheckpoints() throws -> [CheckpointInfo] { try inner.listCheckpoints() }
    open func deleteCheckpoint(named name: String) throws { try inner.deleteCheckpoint(named: name) }
}
