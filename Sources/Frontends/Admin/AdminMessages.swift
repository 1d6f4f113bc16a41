// Conversions between the FS and store types and the AdminService messages, and the
// mapping of errors to gRPC status codes.

import Engine
import FS
import GRPCCore

public enum AdminMessages {
    public static func dataset(_ info: DatasetInfo) -> Zerofs_Admin_V1_Dataset {
        var out = Zerofs_Admin_V1_Dataset()
        out.id = info.id
        out.name = info.name
        out.uuid = info.uuid
        out.hasParent_p = info.parentID != nil
        out.parentID = info.parentID ?? 0
        out.parentUuid = info.parentUUID ?? ""
        out.origin = info.parentName ?? ""
        out.rootInode = info.rootInode
        // Clamped: a damaged record must not stop a listing.
        let seconds = UInt64(min(max(0, info.createdAt.seconds), Int64(UInt64.max / 1_000_000_000 - 1)))
        out.createdAtNanos = seconds * 1_000_000_000 + UInt64(min(info.createdAt.nanoseconds, 999_999_999))
        out.readonly = info.readonly
        out.isSnapshot = info.isSnapshot
        out.isDefault = info.isDefault
        out.generation = info.generation
        out.flags = info.flags
        out.referBytes = info.referBytes
        out.writtenBytes = info.writtenBytes
        out.usedBytes = info.usedBytes ?? 0
        out.usedIsEstimate = info.usedIsEstimate || info.usedBytes == nil
        out.inodes = info.counters.inodes
        return out
    }

    public static func checkpoint(_ info: CheckpointInfo) -> Zerofs_Admin_V1_Checkpoint {
        var out = Zerofs_Admin_V1_Checkpoint()
        out.name = info.name
        out.createdAtNanos = info.createdAtNanos
        return out
    }

    /// Lists of problems or failures in a reply stop here (gRPC clients refuse replies
    /// over 4 MiB by default); the last line says how many more there were.
    public static let maxListed = 1000

    static func capped<T>(_ list: [T], limit: Int = maxListed, more: (Int) -> T) -> [T] {
        guard list.count > limit else { return list }
        return Array(list.prefix(limit)) + [more(list.count - limit)]
    }

    public static func objectOperations(_ o: ObjectOperations) -> Zerofs_Admin_V1_ObjectOperations {
        var out = Zerofs_Admin_V1_ObjectOperations()
        out.puts = UInt64(o.puts)
        out.gets = UInt64(o.gets)
        out.lists = UInt64(o.lists)
        out.deletes = UInt64(o.deletes)
        out.heads = UInt64(o.heads)
        out.bytesSent = UInt64(o.bytesSent)
        out.bytesReceived = UInt64(o.bytesReceived)
        out.diskCacheHits = UInt64(o.diskCacheHits)
        out.diskCacheMisses = UInt64(o.diskCacheMisses)
        return out
    }

    public static func progress(_ job: JobProgress) -> Zerofs_Admin_V1_Progress {
        var out = Zerofs_Admin_V1_Progress()
        out.running = job.running
        out.done = job.done
        out.total = job.total
        out.unit = job.unit
        out.lastFinishedAtNanos = job.lastFinishedAtNanos
        out.lastProblems = job.lastProblems
        return out
    }

    public static func scrub(_ report: ScrubReport) -> Zerofs_Admin_V1_ScrubResponse {
        var out = Zerofs_Admin_V1_ScrubResponse()
        out.objects = report.objects
        out.values = report.values
        out.bytes = report.bytes
        out.failures = capped(report.failures, limit: maxListed) { ScrubFailure(object: "...", reason: "and \($0) more failures") }.map { failure in
            var f = Zerofs_Admin_V1_ScrubFailure()
            f.object = failure.object
            f.reason = failure.reason
            return f
        }
        return out
    }
}

public enum AdminErrors {
    /// The status an error answers with: dataset errors by kind, store errors by code.
    public static func status(_ error: any Error) -> RPCError {
        switch error {
        case let rpc as RPCError:
            return rpc
        case let dataset as DatasetError:
            return RPCError(code: code(dataset.kind), message: dataset.message)
        case let kv as KVError:
            return RPCError(code: code(kv.code), message: kv.message)
        case let fs as FSError:
            return RPCError(code: fs.code == .EROFS ? .failedPrecondition : .unavailable, message: fs.description)
        default:
            return RPCError(code: .internalError, message: "\(error)")
        }
    }

    static func code(_ kind: DatasetError.Kind) -> RPCError.Code {
        switch kind {
        case .invalidName: .invalidArgument
        case .exists: .alreadyExists
        case .notFound: .notFound
        case .isDefault, .isRoot, .isSnapshot, .notSnapshot, .hasDependents, .wrongDataset, .invalidMove: .failedPrecondition
        case .storage: .unavailable
        }
    }

    static func code(_ code: KVError.Code) -> RPCError.Code {
        switch code {
        case .invalidArgument: .invalidArgument
        case .alreadyExists: .alreadyExists
        case .notFound, .storeNotFound: .notFound
        case .readOnly, .locked, .fenced, .wrongBackend, .notAStore: .failedPrecondition
        case .corruption: .dataLoss
        default: .unavailable
        }
    }
}

import SwiftProtobuf

/// Any AdminService message (for printing).
public typealias AdminMessage = SwiftProtobuf.Message

extension AdminMessages {
    /// The proto3 JSON of `message`: field names as in admin.proto, 64-bit numbers as
    /// numbers, fields at their default (0, false, "") left out as proto3 JSON does.
    public static func json(_ message: some SwiftProtobuf.Message) -> String {
        var options = JSONEncodingOptions()
        options.alwaysPrintInt64sAsNumbers = true
        options.preserveProtoFieldNames = true
        options.useDeterministicOrdering = true
        return (try? message.jsonString(options: options)) ?? "{}"
    }
}
