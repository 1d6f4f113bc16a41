// USED of datasets and snapshots (Docs/datasets.md, "Space"): what deleting each would
// free, the WRITTEN of every version that no other dataset or snapshot reaches.

/// USED for any number of datasets and snapshots from one copy of the forest, taken
/// under the commit lock and read after it. One pass over the versions counts, for each,
/// the dataset records at or below it; a snapshot then walks only the versions it alone
/// reaches, and a dataset the versions its own records reach. (Computing each USED from
/// the closure of every other record took time quadratic in the number of snapshots, and
/// held the commit lock meanwhile.)
struct ForestUsage {
    let forest: Forest
    /// Per version: the dataset records at it or below it.
    private var reach: [UInt64: Int] = [:]
    /// Per version: the dataset records at it.
    private var direct: [UInt64: Int] = [:]
    /// Per dataset: the datasets nested directly in it, and its snapshots.
    private var nested: [UInt64: [UInt64]] = [:]
    private var snapshots: [UInt64: [UInt64]] = [:]
    /// The collector still has versions to drop or merge: USED may change when it is done.
    let collecting: Bool

    init(_ forest: Forest) {
        self.forest = forest
        for record in forest.datasets.values {
            direct[record.version, default: 0] += 1
            if record.isSnapshot {
                snapshots[record.parent, default: []].append(record.id)
            } else if record.container != DatasetRecord.none {
                nested[record.container, default: []].append(record.id)
            }
        }
        reach = Self.sumUpwards(direct, over: forest.versions.keys, forest)
        collecting = !forest.collectable().isEmpty
    }

    /// What deleting `id` frees: for a dataset, with its nested datasets and every snapshot
    /// of them; for a snapshot, itself. For a snapshot whose version stays, merged into its
    /// only child, the child instead: what the merge drops must be read from the store
    /// (`Pool.snapshotFreed`).
    func freed(by id: UInt64) -> (bytes: UInt64, mergeInto: UInt64?) {
        guard let record = forest.datasets[id] else { return (0, nil) }
        if record.isSnapshot {
            // Counts only grow towards the roots: the versions this snapshot alone reaches
            // are those from its own up to the first that something else reaches too.
            var bytes: UInt64 = 0
            var current = record.version
            while current != 0, reach[current] == 1, let node = forest.versions[current] {
                bytes &+= node.written
                // A damaged store could hold a cycle; parents always have smaller ids.
                guard node.parent < current else { break }
                current = node.parent
            }
            if reach[record.version, default: 0] > 1, direct[record.version] == 1,
               let children = forest.children[record.version], children.count == 1 {
                return (bytes, children.first)
            }
            return (bytes, nil)
        }
        var removed: [UInt64: Int] = [:]
        var members = [id]
        var index = 0
        while index < members.count {
            let member = members[index]
            index += 1
            members += nested[member] ?? []
            for reference in [member] + (snapshots[member] ?? []) {
                if let version = forest.datasets[reference]?.version { removed[version, default: 0] += 1 }
            }
        }
        var reached: Set<UInt64> = []
        for start in removed.keys {
            var current = start
            while current != 0, reached.insert(current).inserted {
                guard let parent = forest.versions[current]?.parent, parent < current else { break }
                current = parent
            }
        }
        // A version goes when every record reaching it goes.
        let counts = Self.sumUpwards(removed, over: reached, forest)
        let bytes = reached.reduce(UInt64(0)) { sum, version in
            counts[version] == reach[version] ? sum &+ (forest.versions[version]?.written ?? 0) : sum
        }
        return (bytes, nil)
    }

    /// `counts` at each of `versions` plus those of every version below it, in one pass
    /// from the newest version (a child's id is greater than its parent's).
    private static func sumUpwards(_ counts: [UInt64: Int], over versions: some Collection<UInt64>, _ forest: Forest) -> [UInt64: Int] {
        var out = counts
        for version in versions.sorted(by: >) {
            guard let count = out[version], count > 0,
                  let parent = forest.versions[version]?.parent, parent != 0, parent < version else { continue }
            out[parent, default: 0] += count
        }
        return out
    }
}
