// The TCP server: a thread accepts connections (Listener); SwiftNIO event loops read
// them and frame their records; every call runs on a worker pool (WorkerPool), and the
// worker writes its reply to the socket itself (ReplyWriter), with no hand-off back to
// the event loop. A connection may pipeline calls (replies go back as they finish,
// matched by xid); beyond `maxInFlight` running calls it stops reading until some
// finish. A record longer than `maxRecord` closes that connection only.

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
        /// TCP congestion control for clients on the loopback interface ("" keeps the
        /// system's): reno, which does not pace (CongestionControl, Docs/nfs.md).
        public var loopbackCongestion = "reno"

        public init() {}
    }

    public let service: NFSService
    public let port: Int
    private let group: MultiThreadedEventLoopGroup
    private let workers: WorkerPool
    private let listener: Listener

    private init(service: NFSService, group: MultiThreadedEventLoopGroup, workers: WorkerPool, listener: Listener) {
        self.service = service
        self.port = listener.port
        self.group = group
        self.workers = workers
        self.listener = listener
    }

    /// Starts serving `service` (options.port 0: a free port, see `port`).
    public static func start(_ service: NFSService, options: Options = Options()) throws -> NFSServer {
        let listener = try Listener(host: options.host, port: options.port)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let workers = WorkerPool(threads: options.threads)
        listener.start { socket in
            var one: Int32 = 1
            setsockopt(socket, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            CongestionControl.prepare(socket, options.loopbackCongestion)
            // The workers' descriptor; SwiftNIO owns (and closes) the accepted one.
            let writing = fcntl(socket, F_DUPFD_CLOEXEC, 0)
            guard writing >= 0 else {
                close(socket)
                return
            }
            let writer = ReplyWriter(fd: writing)
            ClientBootstrap(group: group)
                // Reads of up to a whole 1 MiB WRITE at once, growing only while reads fill them.
                .channelOption(ChannelOptions.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 64 << 10, maximum: options.maxRecord))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        writer.attach(channel)
                        let handler = RPCConnectionHandler(service: service, workers: workers, writer: writer, options: options)
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                }
                .withConnectedSocket(socket)
                .whenFailure { _ in writer.close() }
        }
        return NFSServer(service: service, group: group, workers: workers, listener: listener)
    }

    /// Why the congestion control `name` cannot be set on this machine (not built into
    /// the kernel, or not in net.ipv4.tcp_allowed_congestion_control for a server without
    /// CAP_NET_ADMIN), or nil when it can.
    public static func loopbackCongestionProblem(_ name: String) -> String? {
        name.isEmpty ? nil : CongestionControl.problem(name)
    }

    /// Stops accepting, lets the calls already queued finish (their replies still go
    /// out), then closes every connection.
    public func stop() {
        listener.stop()
        workers.shutdown()
        try? group.syncShutdownGracefully()
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
    /// Calls submitted and not yet answered; workers count down.
    private let inFlight = InFlight()
    private var client = ""

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
        for record in records { run(record, context: context) }
    }

    private func run(_ record: [UInt8], context: ChannelHandlerContext) {
        let maxInFlight = maxInFlight
        if inFlight.count.wrappingAdd(1, ordering: .relaxed).newValue >= maxInFlight {
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        }
        let service = service
        let client = client
        let writer = writer
        let inFlight = inFlight
        let channel = context.channel
        let boundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        workers.submit {
            // The reply may come from another worker: the one that syncs this call's change.
            service.handle(record, client: client) { reply in
                if let reply { writer.send(reply) }
                if inFlight.count.wrappingSubtract(1, ordering: .relaxed).oldValue == maxInFlight {
                    // This call ended a pause: read again (on the loop, after the pause).
                    eventLoop.execute {
                        channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
                        boundContext.value.read()
                    }
                }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
