// The registry maps backend names to factories. It is filled by the composition root
// (BackendCatalog), so nothing above Engine names a concrete backend.

public struct BackendRegistry: Sendable {
    public let factories: [any KVBackendFactory]
    /// The backend used when the caller names none.
    public let defaultName: String

    public init(_ factories: [any KVBackendFactory], defaultName: String) {
        self.factories = factories
        self.defaultName = defaultName
    }

    public var names: [String] { factories.map(\.name) }

    /// The factory registered as `name`; throws `.invalidArgument` listing the known names.
    public func factory(named name: String) throws(KVError) -> any KVBackendFactory {
        guard let factory = factories.first(where: { $0.name == name }) else {
            throw KVError(.invalidArgument, "unknown backend '\(name)'; known backends: \(names.joined(separator: ", "))")
        }
        return factory
    }
}
