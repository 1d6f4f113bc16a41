// The FS consistency checker: reads every FS key of a store (not being written to) and
// checks every invariant the operations keep. Each problem is named precisely; an empty
// list means the filesystem is consistent. Checks (Docs/filesystem.md and
// Docs/datasets.md, "fsck"):
//   store-wide: format and system records; every key parses; dataset records, registry
//   names, version nodes and id counters agree; every version's parent exists; every
//   versioned key names a version of the forest and has a change record; WRITTEN of each
//   version matches its chunks; no chunk without an inode at its version unless a delete
//   record names it; reclaim records match inodes and marks; once the collector is done,
//   every entry is seen by some live version.
//   per dataset and snapshot, at its version: the tree is connected from its root; entries
//   and scan records agree one to one; cookies lie below their directory's counter; entry
//   types match inodes; nlink and entry counts match the entries; directory parents
//   match; no visible data past a file's size; statistics match what it shows.

import Engine

public struct FsckReport: Sendable {
    public var problems: [String] = []
    public var inodes = 0
    public var entries = 0
    public var chunks = 0
    /// Stored bytes of every chunk entry.
    public var storedBytes: UInt64 = 0

    public var isClean: Bool { problems.isEmpty }
}

public enum Fsck {
    /// Checks the store as `store` shows it. `collectorIdle`: the caller ran the
    /// collector to the end (`collectGarbage`) with nothing changed since, so an entry of a
    /// dead version with several children that no live version sees is a leftover too;
    /// otherwise it may be waiting for the collector, which prunes such versions after
    /// writes below them (Docs/datasets.md, "Collecting").
    public static func check(_ store: any KVReader, collectorIdle: Bool = false) throws(FSError) -> FsckReport {
        var checker = Checker(store: store)
        checker.collectorIdle = collectorIdle
        try checker.run()
        return checker.report
    }
}

private struct Checker {
    let store: any KVReader
    var collectorIdle = false
    var report = FsckReport()
    var chunkSize = 32768
    var forest = Forest()
    var stats: [UInt64: FSCounters] = [:]
    var statsSeen: Set<UInt64> = []
    var reclaims: [UInt64: [UInt64: ReclaimKind]] = [:]
    var changes: Set<[UInt64]> = []
    var cookieCounters: [UInt64: UInt64] = [:]
    /// Per version: the stored bytes of its chunks.
    var chunkBytes: [UInt64: UInt64] = [:]
    // The dataset being checked, and what it shows.
    var label = ""
    var view = VersionView(head: 1)
    var root = FileSystem.rootInode
    var inodes: [UInt64: Inode] = [:]
    var entries: [(parent: UInt64, entry: DirEntry)] = []
    var scans: [UInt64: [UInt64: DirEntry]] = [:]
    /// Per inode: the newest version of the content this dataset shows of it.
    var contentVersions: [UInt64: UInt64] = [:]

    init(store: any KVReader) {
        self.store = store
    }

    mutating func problem(_ text: String) { report.problems.append(label + text) }

    mutating func run() throws(FSError) {
        guard let format = try kv({ try store.get(FSKeys.system(SystemRecords.formatName)) }) else {
            problem("no format record: not a ZeroFS filesystem")
            return
        }
        // Every undecodable record is a problem to name, then the check goes on (a bad
        // format record leaves the default chunk size for the chunk checks).
        if let size = decoded("format record", { () throws(FSError) in try SystemRecords.decodeFormat(format) }) {
            chunkSize = size
        }
        let nextInode = try systemValue(SystemRecords.nextInodeName)
        _ = try systemValue(SystemRecords.incarnationName)
        try loadUnversioned()
        let upgraded = try kv({ try store.get(FSKeys.system(SystemRecords.nextVersionName)) }) != nil
        if upgraded {
            try loadForest()
        } else {
            // Made before datasets: one version, no records (the first open adds them).
            forest.addVersion(1, VersionNode(parent: 0, written: 0))
            forest.put(DatasetRecord(id: FileSystem.rootDataset, name: Array("root".utf8), version: 1,
                                     rootInode: FileSystem.rootInode, createdAt: Timestamp(seconds: 0, nanoseconds: 0)))
        }
        try checkVersionedKeys(checkWritten: upgraded)

        var largest: UInt64 = 0
        for record in forest.datasets.values.sorted(by: { $0.id < $1.id }) where forest.versions[record.version] != nil {
            label = forest.datasets.count > 1 ? "\(forest.fullName(record.id)): " : ""
            view = forest.view(record.version)
            root = record.rootInode
            let shown = try checkDataset()
            if upgraded, let counted = stats[record.id], counted != shown {
                if counted.inodes != shown.inodes {
                    problem("statistics count \(counted.inodes) inodes, the store holds \(shown.inodes)")
                }
                if counted.bytes != shown.bytes {
                    problem("statistics count \(counted.bytes) bytes, the files hold \(shown.bytes)")
                }
            }
            largest = max(largest, inodes.keys.max() ?? 0)
        }
        label = ""
        if let nextInode, nextInode <= largest {
            problem("the inode counter (\(nextInode)) is not above the largest inode number (\(largest))")
        }
        try checkReclaims()
        if forest.collectable().isEmpty { try checkEverySeen() }
    }

    /// Checks the dataset or snapshot at `view` and returns what it shows.
    mutating func checkDataset() throws(FSError) -> FSCounters {
        let reads = VersionedStore(store: store, view: view)
        inodes = [:]
        entries = []
        scans = [:]
        contentVersions = [:]
        try reads.scan(prefix: [KeyKind.inode.rawValue]) { logical, value throws(FSError) in
            guard logical.count == 9 else {
                problem("unparseable inode key \(Array(logical))")
                return true
            }
            let ino = logical.readBigEndian(at: 1)
            inodes[ino] = decoded("inode \(ino)", { () throws(FSError) in try Inode.decode(ino: ino, value) })
            return true
        }
        try reads.scanVersions(prefix: [KeyKind.dirEntry.rawValue]) { logical, version, value throws(FSError) in
            guard let (parent, name) = FSKeys.parseDirEntry(Array(logical)) else {
                problem("unparseable directory entry key \(Array(logical))")
                return true
            }
            contentVersions[parent] = max(contentVersions[parent] ?? 0, version)
            if name.isEmpty || name.count > FSOptions.maxNameLength || name.contains(0) || name.contains(UInt8(ascii: "/")) {
                problem("entry \(FileSystem.show(name)) of directory \(parent): a name must be 1 to \(FSOptions.maxNameLength) bytes without '/' or NUL")
            }
            if let entry = decoded("entry \(FileSystem.show(name)) of directory \(parent)", { () throws(FSError) in
                try DirEntry.decodeEntry(name: name, value)
            }) {
                entries.append((parent, entry))
            }
            return true
        }
        try reads.scanVersions(prefix: [KeyKind.dirScan.rawValue]) { logical, version, value throws(FSError) in
            guard logical.count == 17 else {
                problem("unparseable scan record key \(Array(logical))")
                return true
            }
            let parent = logical.readBigEndian(at: 1)
            contentVersions[parent] = max(contentVersions[parent] ?? 0, version)
            let cookie = logical.readBigEndian(at: 9)
            if let scan = decoded("scan record cookie \(cookie) of directory \(parent)", { () throws(FSError) in
                try DirEntry.decodeScan(cookie: cookie, value)
            }) {
                scans[parent, default: [:]][cookie] = scan
            }
            return true
        }
        report.inodes += inodes.count
        report.entries += entries.count
        checkTree()
        try checkChunks(reads)
        for (ino, newest) in contentVersions.sorted(by: { $0.key < $1.key }) {
            if let inode = inodes[ino], inode.contentVersion != 0, newest > inode.contentVersion {
                problem("inode \(ino) names content version \(inode.contentVersion), but holds content of version \(newest)")
            }
        }
        for (ino, inode) in inodes where !inode.shrinkMarks.isEmpty && view.ancestors.isEmpty
            && reclaims[ino]?[view.head] != .shrink && forest.datasets.values.contains(where: { $0.version == view.head && !$0.isSnapshot }) {
            problem("inode \(ino) has shrink marks but no shrink record")
        }
        var shown = FSCounters(inodes: UInt64(inodes.count), bytes: 0)
        for inode in inodes.values where inode.type == .regular || inode.type == .symlink { shown.bytes &+= inode.size }
        return shown
    }

    /// Dataset records, registry names, version nodes and statistics, and how they agree.
    mutating func loadForest() throws(FSError) {
        let nextVersion = try systemValue(SystemRecords.nextVersionName)
        let nextDataset = try systemValue(SystemRecords.nextDatasetName)
        let defaultDataset = try systemValue(SystemRecords.defaultDatasetName)
        var raw: [(UInt8, [UInt8], [UInt8])] = []
        try kv {
            for kind in [KeyKind.dataset, .versionNode, .stats, .registry] {
                try store.scan(.prefix([kind.rawValue])) { key, value in
                    raw.append((kind.rawValue, Array(key), Array(value)))
                    return true
                }
            }
        }
        var registry: [[UInt8]: UInt64] = [:]
        for (kind, key, value) in raw {
            if kind == KeyKind.registry.rawValue {
                guard key.count >= 12, key.last == 0, value.count == 8 else {
                    problem("malformed registry record \(key) -> \(value)")
                    continue
                }
                registry[key] = value.withUnsafeBytes { $0.readBigEndian(at: 0) }
                continue
            }
            guard key.count == 9 else {
                problem("malformed key of kind \(kind): \(key)")
                continue
            }
            let id = key.withUnsafeBytes { $0.readBigEndian(at: 1) }
            switch KeyKind(rawValue: kind)! {
            case .dataset:
                if let record = decoded("dataset record \(id)", { () throws(FSError) in try DatasetRecord.decode(id: id, value) }) {
                    forest.put(record)
                }
            case .versionNode:
                if let node = decoded("version node \(id)", { () throws(FSError) in try VersionNode.decode(id: id, value) }) {
                    forest.addVersion(id, node)
                }
            default:
                statsSeen.insert(id)
                stats[id] = decoded("statistics of dataset \(id)", { () throws(FSError) in try FSCounters.decode(value) })
            }
        }
        for (id, node) in forest.versions.sorted(by: { $0.key < $1.key }) {
            if node.parent != 0, forest.versions[node.parent] == nil || node.parent >= id {
                problem("version \(id) names parent \(node.parent), which is not an older version")
            }
            if let nextVersion, id >= nextVersion { problem("version \(id) is not below the version counter \(nextVersion)") }
        }
        for record in forest.datasets.values.sorted(by: { $0.id < $1.id }) {
            let name = forest.fullName(record.id)
            if forest.versions[record.version] == nil { problem("\(name) names version \(record.version), which does not exist") }
            if !statsSeen.contains(record.id) { problem("\(name) has no statistics record") }
            if registry.removeValue(forKey: forest.registryKey(record)) != record.id { problem("\(name) is missing from the registry") }
            if let nextDataset, record.id >= nextDataset { problem("\(name) has id \(record.id), not below the counter \(nextDataset)") }
            if record.isSnapshot, forest.datasets[record.parent].map({ $0.isSnapshot }) != false {
                problem("snapshot \(record.id) belongs to \(record.parent), which is not a dataset")
            }
            if !record.isSnapshot, record.container != DatasetRecord.none, forest.datasets[record.container] == nil {
                problem("\(name) is nested in \(record.container), which does not exist")
            }
        }
        for (key, id) in registry { problem("registry name \(key) names \(id), which has no record under that name") }
        if let defaultDataset, forest.datasets[defaultDataset]?.isSnapshot != false {
            problem("the default dataset \(defaultDataset) is not a dataset")
        }
        if forest.datasets[FileSystem.rootDataset] == nil { problem("the root dataset (id 0) is missing") }
    }

    mutating func systemValue(_ name: String) throws(FSError) -> UInt64? {
        guard let value = try kv({ try store.get(FSKeys.system(name)) }) else {
            problem("system record '\(name)' is missing")
            return nil
        }
        return decoded("system record '\(name)'", { () throws(FSError) in try SystemRecords.decodeUInt64(value, name) })
    }

    /// The decoded value, or nil after naming the problem (the check continues).
    mutating func decoded<T>(_ label: String, _ body: () throws(FSError) -> T) -> T? {
        do {
            return try body()
        } catch {
            problem("\(label): \(error.message)")
            return nil
        }
    }

    mutating func loadUnversioned() throws(FSError) {
        var found: [(UInt8, [UInt8], [UInt8])] = []
        try kv {
            try store.scan(KeyRange(start: [KeyKind.reclaim.rawValue], end: [KeyKind.reclaim.rawValue + 1])) { k, v in
                found.append((KeyKind.reclaim.rawValue, Array(k), Array(v)))
                return true
            }
            try store.scan(.prefix([KeyKind.cookieCounter.rawValue])) { k, v in
                found.append((KeyKind.cookieCounter.rawValue, Array(k), Array(v)))
                return true
            }
            try store.scan(.prefix([KeyKind.changeIndex.rawValue])) { k, _ in
                found.append((KeyKind.changeIndex.rawValue, Array(k), []))
                return true
            }
        }
        for (kind, key, value) in found {
            if kind == KeyKind.cookieCounter.rawValue {
                guard key.count == 9, value.count == 8 else {
                    problem("malformed cookie counter \(key) -> \(value)")
                    continue
                }
                cookieCounters[key.withUnsafeBytes { $0.readBigEndian(at: 1) }] = value.withUnsafeBytes { $0.readBigEndian(at: 0) }
                continue
            }
            guard key.count == 17, let a = FSKeys.uint64(key, at: 1), let b = FSKeys.uint64(key, at: 9) else {
                problem("unparseable key of kind \(kind): \(key)")
                continue
            }
            if kind == KeyKind.changeIndex.rawValue {
                changes.insert([a, b])
            } else if value.count == 1, let reclaimKind = ReclaimKind(rawValue: value[0]) {
                reclaims[a, default: [:]][b] = reclaimKind
            } else {
                problem("reclaim record of inode \(a) version \(b) has a bad value \(value)")
            }
        }
    }

    /// Every key of a versioned kind parses, names a version of the forest and has a
    /// change record, and its kind is known; every chunk has an inode at its version (or a
    /// delete record); WRITTEN of each version matches its chunks.
    mutating func checkVersionedKeys(checkWritten: Bool) throws(FSError) {
        var unknown: [[UInt8]] = []
        var missingChange: Set<[UInt64]> = []
        var unknownVersions: Set<UInt64> = []
        var chunks: Set<[UInt64]> = []
        let known = Set(KeyKind.allCases.map(\.rawValue))
        try kv {
            try store.scan(.all) { key, value in
                guard let kind = key.first, known.contains(kind) else {
                    unknown.append(Array(key))
                    return true
                }
                let ino: UInt64?
                switch KeyKind(rawValue: kind)! {
                case .inode, .dirEntry, .dirScan: ino = key.count >= 17 ? key.readBigEndian(at: 1) : nil
                case .chunk: ino = key.count == 25 ? key.readBigEndian(at: 1) : nil
                default: return true
                }
                guard let ino, let (_, version) = FSKeys.splitVersion(key) else {
                    unknown.append(Array(key))
                    return true
                }
                if kind == KeyKind.chunk.rawValue {
                    report.chunks += 1
                    report.storedBytes &+= UInt64(value.count)
                    chunkBytes[version, default: 0] &+= UInt64(value.count)
                    chunks.insert([ino, version])
                }
                if forest.versions[version] == nil { unknownVersions.insert(version) }
                if !changes.contains([version, ino]) { missingChange.insert([version, ino]) }
                return true
            }
        }
        for key in unknown.prefix(20) { problem("unknown or malformed key \(key)") }
        for version in unknownVersions.sorted().prefix(20) { problem("entries of version \(version), which is not in the forest") }
        for pair in missingChange.sorted(by: { ($0[0], $0[1]) < ($1[0], $1[1]) }).prefix(20) {
            problem("inode \(pair[1]) changed in version \(pair[0]) without a change index record")
        }
        for change in changes where forest.versions[change[0]] == nil {
            problem("change record of inode \(change[1]) names version \(change[0]), which is not in the forest")
        }
        if checkWritten {
            for (id, node) in forest.versions.sorted(by: { $0.key < $1.key }) where node.written != chunkBytes[id] ?? 0 {
                problem("version \(id) counts \(node.written) written bytes, its chunks hold \(chunkBytes[id] ?? 0)")
            }
        }
        // A dead version in the middle of a merge has given its inode records to its child
        // first; its chunks answer to the child's view until they follow.
        let referenced = forest.referenced
        for pair in chunks.sorted(by: { ($0[1], $0[0]) < ($1[1], $1[0]) }) {
            let (ino, version) = (pair[0], pair[1])
            guard forest.versions[version] != nil, referenced.contains(version), reclaims[ino]?[version] != .deleteFile else { continue }
            if try VersionedStore(store: store, view: forest.view(version)).get(FSKeys.inode(ino)) == nil {
                problem("chunks of inode \(ino) (version \(version)): no inode and no delete record")
            }
        }
    }

    mutating func checkTree() {
        guard let rootInode = inodes[root] else {
            problem("the root directory (inode \(root)) is missing")
            return
        }
        if rootInode.type != .directory { problem("the root inode is not a directory") }
        if rootInode.parent != root { problem("the root's parent is \(rootInode.parent), not itself") }
        var names: [UInt64: Int] = [:]
        var children: [UInt64: [UInt64]] = [:]
        var entryCounts: [UInt64: UInt64] = [:]
        var subdirs: [UInt64: UInt32] = [:]
        for (parent, entry) in entries {
            let label = "entry \(FileSystem.show(entry.name)) of directory \(parent)"
            entryCounts[parent, default: 0] += 1
            guard let dir = inodes[parent] else {
                problem("\(label): the directory does not exist")
                continue
            }
            if dir.type != .directory { problem("\(label): inode \(parent) is not a directory") }
            guard let child = inodes[entry.ino] else {
                problem("\(label): names inode \(entry.ino), which does not exist")
                continue
            }
            names[entry.ino, default: 0] += 1
            children[parent, default: []].append(entry.ino)
            if child.type != entry.type { problem("\(label): type \(entry.type) but inode \(entry.ino) is \(child.type)") }
            if child.type == .directory {
                subdirs[parent, default: 0] += 1
                if child.parent != parent { problem("\(label): directory \(entry.ino) records parent \(child.parent)") }
            }
            if entry.cookie == 0 || entry.cookie >= cookieCounters[parent] ?? 0 {
                problem("\(label): cookie \(entry.cookie) is not below the directory's cookie counter \(cookieCounters[parent] ?? 0)")
            }
            if let scan = scans[parent]?[entry.cookie] {
                if scan.ino != entry.ino || scan.name != entry.name || scan.type != entry.type {
                    problem("\(label): its scan record (cookie \(entry.cookie)) disagrees")
                }
            } else {
                problem("\(label): no scan record for cookie \(entry.cookie)")
            }
        }
        let entryCookies = Set(entries.map { [$0.parent, $0.entry.cookie] })
        for (parent, records) in scans {
            for cookie in records.keys where !entryCookies.contains([parent, cookie]) {
                problem("scan record cookie \(cookie) of directory \(parent) has no directory entry")
            }
        }
        for (ino, inode) in inodes.sorted(by: { $0.key < $1.key }) {
            let linked = names[ino, default: 0]
            if inode.type == .directory {
                if ino != root, linked != 1 { problem("directory \(ino) has \(linked) names, expected 1") }
                let expected = 2 + subdirs[ino, default: 0]
                if inode.nlink != expected { problem("directory \(ino) has nlink \(inode.nlink), expected \(expected)") }
                if cookieCounters[ino] == nil { problem("directory \(ino) has no cookie counter") }
                let count = entryCounts[ino, default: 0]
                if inode.entryCount != count { problem("directory \(ino) counts \(inode.entryCount) entries, holds \(count)") }
            } else if UInt32(linked) != inode.nlink {
                problem("inode \(ino) has nlink \(inode.nlink) but \(linked) directory entries")
            }
            if inode.type == .symlink, inode.size != UInt64(inode.target.count) {
                problem("symlink \(ino) has size \(inode.size) but a target of \(inode.target.count) bytes")
            }
        }
        var seen: Set<UInt64> = [root]
        var queue: [UInt64] = [root]
        while let next = queue.popLast() {
            for child in children[next, default: []] where seen.insert(child).inserted { queue.append(child) }
        }
        for ino in inodes.keys.sorted() where !seen.contains(ino) {
            problem("inode \(ino) is not reachable from the root")
        }
    }

    /// The chunks this dataset shows, against their inodes.
    mutating func checkChunks(_ reads: VersionedStore) throws(FSError) {
        var found: [(UInt64, UInt64, [UInt8])] = []
        try reads.scanVersions(prefix: [KeyKind.chunk.rawValue]) { logical, version, value throws(FSError) in
            guard logical.count == 17 else { return true }
            let ino = logical.readBigEndian(at: 1)
            found.append((ino, logical.readBigEndian(at: 9), Array(value)))
            contentVersions[ino] = max(contentVersions[ino] ?? 0, version)
            return true
        }
        for (ino, index, value) in found {
            let label = "chunk \(index) of inode \(ino)"
            // Chunks of an inode deleted here stay for the versions above that still show it.
            guard let inode = inodes[ino] else { continue }
            if inode.type != .regular { problem("\(label): inode \(ino) is a \(inode.type)") }
            let chunk: ChunkRecord
            do {
                chunk = try withBytes(value) { raw throws(FSError) in try ChunkRecord.decode(raw, chunkSize: chunkSize) }
            } catch {
                problem("\(label): \(error.message)")
                continue
            }
            if chunk.epoch > inode.dataEpoch { problem("\(label): epoch \(chunk.epoch) is newer than the inode's \(inode.dataEpoch)") }
            // Overflow-checked: a damaged chunk index must be reported, not trap.
            let (start, overflow) = index.multipliedReportingOverflow(by: UInt64(chunkSize))
            if overflow || start > FSOptions.maxFileSize {
                problem("\(label): the index lies beyond the maximum file size")
                continue
            }
            if !inode.hides(chunkIndex: index, epoch: chunk.epoch, chunkSize: chunkSize),
               start + UInt64(chunk.data.count) > inode.size {
                problem("\(label): visible data ends past the file size \(inode.size)")
            }
        }
    }

    mutating func checkReclaims() throws(FSError) {
        let referenced = forest.referenced
        for (ino, versions) in reclaims.sorted(by: { $0.key < $1.key }) {
            for (version, kind) in versions.sorted(by: { $0.key < $1.key }) {
                // A dead version (being collected, or gone) is the collector's: the reclaimer
                // drops records whose inode it no longer finds there.
                guard referenced.contains(version) else { continue }
                let value = try VersionedStore(store: store, view: forest.view(version)).get(FSKeys.inode(ino))
                let inode = value.flatMap { v in try? withBytes(v) { raw throws(FSError) in try Inode.decode(ino: ino, raw) } }
                switch kind {
                case .deleteFile:
                    if value != nil { problem("delete record for inode \(ino) version \(version), but the inode exists") }
                case .shrink:
                    if inode?.shrinkMarks.isEmpty ?? true {
                        problem("shrink record for inode \(ino) version \(version), but the inode has no shrink marks")
                    }
                }
            }
        }
    }

    /// Once the collector is done, every versioned entry is the one some live version sees
    /// for its key (a dead version with several children keeps only what they still see),
    /// and no whiteout sits in a version without ancestors. Chunks the reclaim queue names
    /// are its work, not leftovers.
    mutating func checkEverySeen() throws(FSError) {
        let views = forest.referenced.sorted().map { forest.view($0) }
        var group: [UInt64] = []
        var logical: [UInt8] = []
        var unseen: [(logical: [UInt8], version: UInt64)] = []
        func settle() {
            guard !group.isEmpty else { return }
            var seen: Set<UInt64> = []
            for view in views {
                // Newest first: the first version of the key the view sees answers it.
                if let answer = group.first(where: { view.sees($0) }) { seen.insert(answer) }
            }
            for version in group where !seen.contains(version) { unseen.append((logical, version)) }
            group = []
        }
        let versioned: Set<UInt8> = [KeyKind.inode.rawValue, KeyKind.dirEntry.rawValue, KeyKind.dirScan.rawValue, KeyKind.chunk.rawValue]
        var rootWhiteouts: [(logical: [UInt8], version: UInt64)] = []
        try kv {
            try store.scan(.all) { key, value in
                guard let kind = key.first, versioned.contains(kind), let (part, version) = FSKeys.splitVersion(key) else { return true }
                // A whiteout where nothing lies above hides nothing.
                if value.first == ValueTag.whiteout.rawValue, forest.versions[version]?.parent == 0 {
                    rootWhiteouts.append((Array(part), version))
                }
                if Bytes.compare(part, logical) != 0 {
                    settle()
                    logical = Array(part)
                }
                group.append(version)
                return true
            }
        }
        settle()
        // Dead versions with several children: pruned by the collector after writes below
        // them, so what it has yet to prune is its work, not a leftover.
        let live = forest.referenced
        let pruned = Set(forest.children.filter { $0.value.count >= 2 && !live.contains($0.key) }.keys)
        var shown = 0
        for (key, version) in unseen {
            if !collectorIdle, pruned.contains(version) { continue }
            if key.first == KeyKind.chunk.rawValue, key.count == 17 {
                let ino = key.withUnsafeBytes { $0.readBigEndian(at: 1) }
                if reclaims[ino]?[version] != nil { continue }
            }
            if shown < 20 { problem("entry \(key) of version \(version) is seen by no live version") }
            shown += 1
        }
        if shown > 20 { problem("\(shown - 20) more entries are seen by no live version") }
        for (key, version) in rootWhiteouts.prefix(20) {
            problem("whiteout \(key) of version \(version), which has nothing above it to hide")
        }
    }
}
