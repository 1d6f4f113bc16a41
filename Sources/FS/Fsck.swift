// The FS consistency checker: reads every FS key of a store (not being written to) and
// checks every invariant the operations keep. Each problem is named precisely; an empty
// list means the filesystem is consistent. Checks (Docs/filesystem.md, "fsck"):
//   format and system records; every key parses; the tree is connected from the root;
//   entries and scan records agree one to one; cookies lie below their directory's
//   counter; entry types match inodes; nlink and
//   entry counts match the entries; directory parents match; no visible data past a
//   file's size; no chunk without an inode unless a delete record names it; reclaim
//   records match inodes and marks; the change index covers every versioned key;
//   statistics and the inode counter match what exists.

import Engine

public struct FsckReport: Sendable {
    public var problems: [String] = []
    public var inodes = 0
    public var entries = 0
    public var chunks = 0

    public var isClean: Bool { problems.isEmpty }
}

public enum Fsck {
    public static func check(_ store: any KVReader, view: VersionView = VersionView(head: 1)) throws(FSError) -> FsckReport {
        var checker = Checker(store: store, view: view)
        try checker.run()
        return checker.report
    }
}

private struct Checker {
    let store: any KVReader
    let view: VersionView
    var report = FsckReport()
    var chunkSize = 32768
    var inodes: [UInt64: Inode] = [:]
    var entries: [(parent: UInt64, entry: DirEntry)] = []
    var scans: [UInt64: [UInt64: DirEntry]] = [:]
    var reclaims: [UInt64: [UInt64: ReclaimKind]] = [:]
    var changes: Set<[UInt64]> = []
    var cookieCounters: [UInt64: UInt64] = [:]

    init(store: any KVReader, view: VersionView) {
        self.store = store
        self.view = view
    }

    mutating func problem(_ text: String) { report.problems.append(text) }

    mutating func run() throws(FSError) {
        let reads = VersionedStore(store: store, view: view)
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
        var stats = FSCounters()
        if let value = try kv({ try store.get(FSKeys.stats(FileSystem.rootDataset)) }) {
            stats = decoded("statistics record", { () throws(FSError) in try FSCounters.decode(value) }) ?? stats
        } else {
            problem("no statistics record for dataset 0")
        }

        try loadUnversioned()
        try reads.scan(prefix: [KeyKind.inode.rawValue]) { logical, value throws(FSError) in
            guard logical.count == 9 else {
                problem("unparseable inode key \(Array(logical))")
                return true
            }
            let ino = logical.readBigEndian(at: 1)
            inodes[ino] = decoded("inode \(ino)", { () throws(FSError) in try Inode.decode(ino: ino, value) })
            return true
        }
        try reads.scan(prefix: [KeyKind.dirEntry.rawValue]) { logical, value throws(FSError) in
            guard let (parent, name) = FSKeys.parseDirEntry(Array(logical)) else {
                problem("unparseable directory entry key \(Array(logical))")
                return true
            }
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
        try reads.scan(prefix: [KeyKind.dirScan.rawValue]) { logical, value throws(FSError) in
            guard logical.count == 17 else {
                problem("unparseable scan record key \(Array(logical))")
                return true
            }
            let parent = logical.readBigEndian(at: 1)
            let cookie = logical.readBigEndian(at: 9)
            if let scan = decoded("scan record cookie \(cookie) of directory \(parent)", { () throws(FSError) in
                try DirEntry.decodeScan(cookie: cookie, value)
            }) {
                scans[parent, default: [:]][cookie] = scan
            }
            return true
        }
        report.inodes = inodes.count
        report.entries = entries.count

        let physical = try checkVersionedKeys()
        checkTree()
        if stats.inodes != UInt64(inodes.count) {
            problem("statistics count \(stats.inodes) inodes, the store holds \(inodes.count)")
        }
        if stats.chunks != UInt64(physical) {
            problem("statistics count \(stats.chunks) chunks, the store holds \(physical)")
        }
        if let maxIno = inodes.keys.max(), let nextInode, nextInode <= maxIno {
            problem("the inode counter (\(nextInode)) is not above the largest inode number (\(maxIno))")
        }
        try checkChunks(reads)
        checkReclaims()
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

    /// Every key of a versioned kind parses, its version has a change record, and its kind
    /// is known. Returns the number of chunk entries.
    mutating func checkVersionedKeys() throws(FSError) -> Int {
        var unknown: [[UInt8]] = []
        var missingChange: [(UInt64, UInt64)] = []
        var chunkCount = 0
        let known = Set(KeyKind.allCases.map(\.rawValue))
        try kv {
            try store.scan(.all) { key, _ in
                guard let kind = key.first, known.contains(kind) else {
                    unknown.append(Array(key))
                    return true
                }
                let ino: UInt64?
                switch KeyKind(rawValue: kind)! {
                case .inode, .dirEntry, .dirScan: ino = key.count >= 17 ? key.readBigEndian(at: 1) : nil
                case .chunk:
                    chunkCount += 1
                    ino = key.count == 25 ? key.readBigEndian(at: 1) : nil
                default: return true
                }
                guard let ino, let (_, version) = FSKeys.splitVersion(key) else {
                    unknown.append(Array(key))
                    return true
                }
                if !changes.contains([version, ino]) { missingChange.append((version, ino)) }
                return true
            }
        }
        for key in unknown.prefix(20) { problem("unknown or malformed key \(key)") }
        let missing = Set(missingChange.map { [$0.0, $0.1] }).sorted { ($0[0], $0[1]) < ($1[0], $1[1]) }
        for pair in missing.prefix(20) {
            let (version, ino) = (pair[0], pair[1])
            problem("inode \(ino) changed in version \(version) without a change index record")
        }
        report.chunks = chunkCount
        return chunkCount
    }

    mutating func checkTree() {
        guard let root = inodes[FileSystem.rootInode] else {
            problem("the root directory (inode 1) is missing")
            return
        }
        if root.type != .directory { problem("the root inode is not a directory") }
        if root.parent != FileSystem.rootInode { problem("the root's parent is \(root.parent), not itself") }
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
                if ino != FileSystem.rootInode, linked != 1 { problem("directory \(ino) has \(linked) names, expected 1") }
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
        var seen: Set<UInt64> = [FileSystem.rootInode]
        var queue: [UInt64] = [FileSystem.rootInode]
        while let next = queue.popLast() {
            for child in children[next, default: []] where seen.insert(child).inserted { queue.append(child) }
        }
        for ino in inodes.keys.sorted() where !seen.contains(ino) {
            problem("inode \(ino) is not reachable from the root")
        }
    }

    mutating func checkChunks(_ reads: VersionedStore) throws(FSError) {
        var found: [(UInt64, UInt64, UInt64, [UInt8])] = []
        try kv {
            try store.scan(.prefix([KeyKind.chunk.rawValue])) { key, value in
                if key.count == 25 {
                    found.append((key.readBigEndian(at: 1), key.readBigEndian(at: 9), UInt64.max - key.readBigEndian(at: 17), Array(value)))
                }
                return true
            }
        }
        for (ino, index, version, value) in found {
            let label = "chunk \(index) of inode \(ino) (version \(version))"
            guard let inode = inodes[ino] else {
                if reclaims[ino]?[version] != .deleteFile { problem("\(label): no inode and no delete record") }
                continue
            }
            if inode.type != .regular { problem("\(label): inode \(ino) is a \(inode.type)") }
            guard value.first == ValueTag.live.rawValue else { continue }
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

    mutating func checkReclaims() {
        for (ino, versions) in reclaims {
            for (version, kind) in versions {
                switch kind {
                case .deleteFile:
                    if inodes[ino] != nil { problem("delete record for inode \(ino) version \(version), but the inode exists") }
                case .shrink:
                    if inodes[ino]?.shrinkMarks.isEmpty ?? true {
                        problem("shrink record for inode \(ino) version \(version), but the inode has no shrink marks")
                    }
                }
            }
        }
        for (ino, inode) in inodes where !inode.shrinkMarks.isEmpty && reclaims[ino]?[view.head] != .shrink {
            problem("inode \(ino) has shrink marks but no shrink record")
        }
    }
}
