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
        out.createdAtNanos = UInt64(max(0, info.createdAt.seconds)) * 1_000_000_000 + UInt64(info.createdAt.nanoseconds)
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
        out.failures = report.failures.map { failure in
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
