// The TCP server: a thread accepts connections (Listener); SwiftNIO event loops read
// them and frame their records; every call runs on a worker pool (WorkerPool), and the
// worker writes its reply to the socket itself (ReplyWriter), with no hand-off back to
// the event loop. A connection may pipeline calls (replies go back as they finish,
// matched by xid); with `maxInFlight` calls whose replies are not yet written it stops
// reading, and running the calls it has read, until replies go out: a client that reads no
// replies holds at most that many in the server. A record longer than `maxRecord` closes
// that connection only. Over every connection, the replies clients have not taken are held
// within `maxUnsentReplyBytes` (ReplyWriter); at most `maxConnections` connections are
// served at once (one more is closed at once); TCP keepalive closes a connection whose
// client is gone.

import Engine
import FS
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

public final class NFSServer: Sendable {
    public struct Options: Sendable {
        public var host = "127.0.0.1"
        public var port = 2049
        public var threads = 8
        public var maxRecord = (1 << 20) + 4096
        public var maxInFlight = 64
        /// Connections served at once; one accepted beyond them is closed at once.
        public var maxConnections = 1024
        /// Bytes of replies the server holds for clients that have not read them, over
        /// every connection (ReplyBudget).
        public var maxUnsentReplyBytes = 128 << 20
        /// TCP congestion control for clients on the loopback interface ("" keeps the
        /// system's): reno, which does not pace (CongestionControl, Docs/nfs.md).
        public var loopbackCongestion = "reno"

        public init() {}
    }

    public let service: NFSService
    public let port: Int
    /// Replies held for clients that have not read them.
    let replyBudget: ReplyBudget
    /// Connections being served.
    let connections: ConnectionCount
    private let group: MultiThreadedEventLoopGroup
    private let workers: WorkerPool
    private let listener: Listener
    /// This server holds the process's `AllocatorTrimmer` until it stops.
    private let holdsTrimmer = Atomic<Bool>(true)

    private init(
        service: NFSService, group: MultiThreadedEventLoopGroup, workers: WorkerPool, listener: Listener, replyBudget: ReplyBudget, connections: ConnectionCount
    ) {
        self.service = service
        self.port = listener.port
        self.replyBudget = replyBudget
        self.connections = connections
        self.group = group
        self.workers = workers
        self.listener = listener
    }

    /// Starts serving `service` (options.port 0: a free port, see `port`).
    public static func start(_ service: NFSService, options: Options = Options()) throws -> NFSServer {
        let workers = try WorkerPool(threads: options.threads)
        let listener: Listener
        do {
            listener = try Listener(host: options.host, port: options.port)
        } catch {
            workers.shutdown()
            throw error
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let budget = ReplyBudget(limit: options.maxUnsentReplyBytes)
        let connections = ConnectionCount(limit: options.maxConnections)
        listener.start { socket in
            guard connections.enter() else {
                close(socket)
                connections.noteRefused()
                return
            }
            AcceptedSocket.prepare(socket)
            CongestionControl.prepare(socket, options.loopbackCongestion)
            // The workers' descriptor; SwiftNIO owns (and closes) the accepted one.
            let writing = fcntl(socket, F_DUPFD_CLOEXEC, 0)
            guard writing >= 0 else {
                close(socket)
                connections.leave()
                return
            }
            let slot = ConnectionSlot(connections)
            let writer = ReplyWriter(fd: writing, budget: budget)
            ClientBootstrap(group: group)
                // Reads of up to a whole 1 MiB WRITE at once, growing only while reads fill them.
                .channelOption(ChannelOptions.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 64 << 10, maximum: options.maxRecord))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        writer.attach(channel)
                        let handler = RPCConnectionHandler(service: service, workers: workers, writer: writer, options: options)
                        try channel.pipeline.syncOperations.addHandler(handler)
                        channel.closeFuture.whenComplete { _ in slot.release() }
                    }
                }
                .withConnectedSocket(socket)
                .whenFailure { _ in
                    writer.close()
                    slot.release()
                }
        }
        // Bursts of calls leave free memory with the allocator; it goes back once they end.
        AllocatorTrimmer.shared.hold()
        return NFSServer(service: service, group: group, workers: workers, listener: listener, replyBudget: budget, connections: connections)
    }

    /// Why the congestion control `name` cannot be set on this machine (not built into
    /// the kernel, or not in net.ipv4.tcp_allowed_congestion_control for a server without
    /// CAP_NET_ADMIN), or nil when it can.
    public static func loopbackCongestionProblem(_ name: String) -> String? {
        name.isEmpty ? nil : CongestionControl.problem(name)
    }

    /// Stops accepting, lets the calls already queued finish (their replies still go
    /// out; calls read after that are dropped), then closes every connection.
    public func stop() {
        listener.stop()
        workers.shutdown()
        try? group.syncShutdownGracefully()
        if holdsTrimmer.exchange(false, ordering: .acquiringAndReleasing) { AllocatorTrimmer.shared.release() }
    }
}

/// One connection: frames records and hands calls to the pool; the workers write the
/// replies.
final class RPCConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let service: NFSService
    let workers: WorkerPool
    let writer: ReplyWriter
    let maxInFlight: Int
    private var decoder: RecordDecoder
    /// Calls submitted whose replies are not yet all written; workers (or the event loop,
    /// for a reply it writes) count down.
    private let inFlight = InFlight()
    /// Calls read and not yet submitted, from `backlogHead` on: one read can hold
    /// thousands of small records, and they wait here while `maxInFlight` are in flight.
    private var backlog: [[UInt8]] = []
    private var backlogHead = 0
    /// Reading is off (autoRead false) while calls wait or `maxInFlight` are in flight.
    private var paused = false
    private var client = ""
    private let connection = NFSService.newConnectionID()

    final class InFlight: Sendable {
        let count = Atomic<Int>(0)
    }

    init(service: NFSService, workers: WorkerPool, writer: ReplyWriter, options: NFSServer.Options) {
        self.service = service
        self.workers = workers
        self.writer = writer
        maxInFlight = options.maxInFlight
        decoder = RecordDecoder(limit: options.maxRecord)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // A written reply ends its call: at the limit that may let waiting calls run, or
        // reading go on (on the loop). Set once: no closure per call.
        let inFlight = inFlight
        let maxInFlight = maxInFlight
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        writer.onWritten {
            if inFlight.count.wrappingSubtract(1, ordering: .relaxed).oldValue == maxInFlight {
                eventLoop.execute { bound.value.handler.submitWaiting(context: bound.value.context) }
            }
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        client = context.remoteAddress?.ipAddress ?? "?"
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // SwiftNIO closed its descriptor; the connection ends when the workers' closes too.
        writer.close()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let records: [[UInt8]]
        do {
            records = try buffer.withUnsafeReadableBytes { raw throws(RecordTooLong) in try decoder.feed(raw) }
        } catch {
            context.close(promise: nil)
            return
        }
        // The usual read: one call, none waiting, room in flight.
        if records.count == 1, backlogHead == backlog.count, !paused, inFlight.count.load(ordering: .relaxed) < maxInFlight {
            run(records[0], context: context)
            // At the limit now: stop reading (submitWaiting).
            if inFlight.count.load(ordering: .relaxed) >= maxInFlight { submitWaiting(context: context) }
            return
        }
        backlog += records
        submitWaiting(context: context)
    }

    /// Submits waiting calls while fewer than `maxInFlight` are in flight (a call counts
    /// until its reply is written: a client that reads no replies gets no more calls run),
    /// and stops reading while calls wait or the limit is reached. On the event loop.
    private func submitWaiting(context: ChannelHandlerContext) {
        while backlogHead < backlog.count, inFlight.count.load(ordering: .relaxed) < maxInFlight {
            let record = backlog[backlogHead]
            backlog[backlogHead] = []
            backlogHead += 1
            run(record, context: context)
        }
        if backlogHead == backlog.count {
            backlog.removeAll(keepingCapacity: true)
            backlogHead = 0
        }
        // Only this loop counts up: a call ending after this load, at the limit, runs
        // this again (below).
        let full = backlogHead < backlog.count || inFlight.count.load(ordering: .relaxed) >= maxInFlight
        guard full != paused else { return }
        paused = full
        context.channel.setOption(ChannelOptions.autoRead, value: !full).whenComplete { _ in }
        if !full { context.read() }
    }

    private func run(_ record: [UInt8], context: ChannelHandlerContext) {
        inFlight.count.wrappingAdd(1, ordering: .relaxed)
        let service = service
        let client = client
        let connection = connection
        let writer = writer
        workers.submit {
            // The reply may come from another worker: the one that syncs this call's change.
            // A call without a reply (not a call at all) ends here.
            service.handle(record, client: client, connection: connection) { reply in
                if let reply { writer.send(reply) } else { writer.countWritten() }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// The connections a server serves, at most `limit`.
final class ConnectionCount: Sendable {
    let limit: Int
    private let count = Atomic<Int>(0)
    /// When a refusal was last reported (ns, wall clock), so a flood is one line per 10 s.
    private let lastReport = Atomic<UInt64>(0)

    init(limit: Int) {
        self.limit = limit
    }

    var current: Int { count.load(ordering: .relaxed) }

    /// Counts a new connection; false (not counted) when `limit` are served.
    func enter() -> Bool {
        if count.wrappingAdd(1, ordering: .relaxed).newValue <= limit { return true }
        count.wrappingSubtract(1, ordering: .relaxed)
        return false
    }

    func leave() {
        count.wrappingSubtract(1, ordering: .relaxed)
    }

    func noteRefused() {
        let now = FileOps.nowNanos()
        let last = lastReport.load(ordering: .relaxed)
        guard now &- last >= 10_000_000_000 || last == 0,
              lastReport.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged else { return }
        printError("zerofs: NFS: \(limit) connections are served (servers.nfs.max_connections); new ones are closed until some end")
    }
}

/// One served connection's place in `ConnectionCount`, given back once.
final class ConnectionSlot: Sendable {
    private let connections: ConnectionCount
    private let released = Atomic<Bool>(false)

    init(_ connections: ConnectionCount) {
        self.connections = connections
    }

    func release() {
        if !released.exchange(true, ordering: .relaxed) { connections.leave() }
    }
}

/// The options of an accepted connection: no Nagle delay (a reply goes out at once), and
/// TCP keepalive, so a client machine that went away without closing (a crash, a cable) is
/// found after about two minutes of silence (60 s idle, then six probes 10 s apart) and its
/// connection closed, instead of holding its descriptors and its place among
/// `maxConnections` for ever.
enum AcceptedSocket {
    static let idleSeconds: Int32 = 60
    static let intervalSeconds: Int32 = 10
    static let probes: Int32 = 6

    static func prepare(_ fd: Int32) {
        func set(_ level: Int32, _ name: Int32, _ value: Int32) {
            var value = value
            setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size))
        }
        set(Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        set(SOL_SOCKET, SO_KEEPALIVE, 1)
        set(Int32(IPPROTO_TCP), TCP_KEEPIDLE, idleSeconds)
        set(Int32(IPPROTO_TCP), TCP_KEEPINTVL, intervalSeconds)
        set(Int32(IPPROTO_TCP), TCP_KEEPCNT, probes)
    }
}
