// The version forest and the dataset registry, in memory (Docs/datasets.md). Loaded from
// the 0x08, 0x09 and 0x0A records at open and changed only together with the batch that
// changes those records, under the pool's commit lock.
//
// A version is a node with a parent (a child's id is greater than its parent's). Every
// dataset record references one version: a writable dataset its head, a snapshot its
// frozen version. A version no record references is dead: the collector drops it (a leaf)
// or merges it into its only child; with several children it stays as an internal node.

struct Forest: Sendable {
    struct NameKey: Hashable, Sendable {
        var space: NameSpace
        var namespace: UInt64
        var name: [UInt8]
    }

    private(set) var versions: [UInt64: VersionNode] = [:]
    private(set) var children: [UInt64: Set<UInt64>] = [:]
    private(set) var datasets: [UInt64: DatasetRecord] = [:]
    private(set) var names: [NameKey: UInt64] = [:]
    /// Bumped by every change of shape (versions added, merged or dropped; references moved).
    private(set) var generation: UInt64 = 0

    // MARK: changes

    mutating func addVersion(_ id: UInt64, _ node: VersionNode) {
        versions[id] = node
        if node.parent != 0 { children[node.parent, default: []].insert(id) }
        generation &+= 1
    }

    /// Removes `id`; its children (at most one, for a merge) take its parent.
    mutating func removeVersion(_ id: UInt64) {
        guard let node = versions.removeValue(forKey: id) else { return }
        if node.parent != 0 { children[node.parent]?.remove(id) }
        for child in children.removeValue(forKey: id) ?? [] {
            versions[child]?.parent = node.parent
            if node.parent != 0 { children[node.parent, default: []].insert(child) }
        }
        generation &+= 1
    }

    mutating func setWritten(_ id: UInt64, _ written: UInt64) {
        versions[id]?.written = written
    }

    mutating func put(_ record: DatasetRecord) {
        if let old = datasets[record.id] { names.removeValue(forKey: nameKey(old)) }
        datasets[record.id] = record
        names[nameKey(record)] = record.id
        generation &+= 1
    }

    mutating func remove(_ id: UInt64) {
        guard let old = datasets.removeValue(forKey: id) else { return }
        names.removeValue(forKey: nameKey(old))
        generation &+= 1
    }

    func nameKey(_ record: DatasetRecord) -> NameKey {
        record.isSnapshot
            ? NameKey(space: .snapshot, namespace: record.parent, name: record.name)
            : NameKey(space: .dataset, namespace: record.container == DatasetRecord.none ? NameSpace.topLevel : record.container,
                      name: record.name)
    }

    func registryKey(_ record: DatasetRecord) -> [UInt8] {
        let key = nameKey(record)
        return FSKeys.registry(key.space, key.namespace, key.name)
    }

    // MARK: versions

    /// The view of `version`: itself and its ancestors, nearest first.
    func view(_ version: UInt64) -> VersionView {
        var ancestors: [UInt64] = []
        var current = versions[version]?.parent ?? 0
        while current != 0 {
            ancestors.append(current)
            // A damaged store could hold a cycle; parents always have smaller ids.
            guard let next = versions[current]?.parent, next < current else { break }
            current = next
        }
        return VersionView(head: version, ancestors: ancestors)
    }

    /// The versions some dataset or snapshot references.
    var referenced: Set<UInt64> { Set(datasets.values.map(\.version)) }

    /// Dead versions the collector can act on now: leaves (dropped) and versions with one
    /// child (merged), oldest first.
    func collectable() -> [UInt64] {
        let live = referenced
        return versions.keys.filter { !live.contains($0) && (children[$0]?.count ?? 0) <= 1 }.sorted()
    }

    /// `version` and every version below it.
    func descendants(_ version: UInt64) -> Set<UInt64> {
        var found: Set<UInt64> = [version]
        var queue = [version]
        while let next = queue.popLast() {
            for child in children[next] ?? [] where found.insert(child).inserted { queue.append(child) }
        }
        return found
    }

    /// Versions that are ancestors of, or equal to, a version in `versions`.
    func closure(_ of: some Sequence<UInt64>) -> Set<UInt64> {
        var seen: Set<UInt64> = []
        for start in of {
            var current = start
            while current != 0, seen.insert(current).inserted {
                current = versions[current]?.parent ?? 0
            }
        }
        return seen
    }

    // MARK: names

    /// The full name: "a/b" for a dataset, "a/b@s" for a snapshot.
    func fullName(_ id: UInt64) -> String {
        String(decoding: fullNameBytes(id), as: UTF8.self)
    }

    func fullNameBytes(_ id: UInt64) -> [UInt8] {
        guard let record = datasets[id] else { return Array("#\(id)".utf8) }
        if record.isSnapshot {
            // A snapshot belongs to a dataset; a damaged record naming a snapshot (itself,
            // or one naming it back) is shown by number rather than followed (fsck reports it).
            guard let parent = datasets[record.parent], !parent.isSnapshot else {
                return Array("#\(record.parent)@".utf8) + record.name
            }
            return fullNameBytes(record.parent) + [UInt8(ascii: "@")] + record.name
        }
        var parts = [record.name]
        var current = record.container
        var steps = 0
        while current != DatasetRecord.none, let up = datasets[current], steps < 1024 {
            parts.append(up.name)
            current = up.container
            steps += 1
        }
        return Array(parts.reversed().joined(separator: [UInt8(ascii: "/")]))
    }

    /// The dataset named `path` ("a/b"), if any.
    func dataset(named path: [UInt8]) -> UInt64? {
        var namespace = NameSpace.topLevel
        var found: UInt64?
        for component in path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            guard let id = names[NameKey(space: .dataset, namespace: namespace, name: Array(component))] else { return nil }
            found = id
            namespace = id
        }
        return found
    }

    func snapshot(of dataset: UInt64, named name: [UInt8]) -> UInt64? {
        names[NameKey(space: .snapshot, namespace: dataset, name: name)]
    }

    /// Datasets nested directly in `id`.
    func nested(in id: UInt64) -> [UInt64] {
        datasets.values.filter { !$0.isSnapshot && $0.container == id }.map(\.id).sorted()
    }

    /// `id` and every dataset nested in it, at any depth, parents first.
    func subtree(_ id: UInt64) -> [UInt64] {
        var out = [id]
        var index = 0
        while index < out.count {
            out += nested(in: out[index])
            index += 1
        }
        return out
    }

    func snapshots(of id: UInt64) -> [UInt64] {
        datasets.values.filter { $0.isSnapshot && $0.parent == id }.map(\.id).sorted()
    }

    func clones(of snapshot: UInt64) -> [UInt64] {
        datasets.values.filter { !$0.isSnapshot && $0.parent == snapshot }.map(\.id).sorted()
    }
}
