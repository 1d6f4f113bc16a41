// The TCP server: SwiftNIO event loops read and write the sockets; every call runs on a
// worker pool (WorkerPool). A connection may pipeline calls (replies go back as they finish, matched
// by xid); beyond `maxInFlight` running calls it stops reading until some finish. A
// record longer than `maxRecord` closes that connection only.

import FS
import NIOCore
import NIOPosix

public final class NFSServer: Sendable {
    public struct Options: Sendable {
        public var host = "127.0.0.1"
        public var port = 2049
        public var threads = 8
        public var maxRecord = (1 << 20) + 4096
        public var maxInFlight = 64

        public init() {}
    }

    public let service: NFSService
    public let port: Int
    private let group: MultiThreadedEventLoopGroup
    private let workers: WorkerPool
    private let channel: any Channel

    private init(service: NFSService, port: Int, group: MultiThreadedEventLoopGroup, workers: WorkerPool, channel: any Channel) {
        self.service = service
        self.port = port
        self.group = group
        self.workers = workers
        self.channel = channel
    }

    /// Starts serving `service` (options.port 0: a free port, see `port`).
    public static func start(_ service: NFSService, options: Options = Options()) throws -> NFSServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let workers = WorkerPool(threads: options.threads)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = RPCConnectionHandler(service: service, workers: workers, options: options)
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        do {
            let channel = try bootstrap.bind(host: options.host, port: options.port).wait()
            let port = channel.localAddress?.port ?? options.port
            return NFSServer(service: service, port: port, group: group, workers: workers, channel: channel)
        } catch {
            workers.shutdown()
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    /// Stops accepting, lets the calls already queued finish (their replies still go out
    /// on the live event loops), then closes every connection.
    public func stop() {
        try? channel.close().wait()
        workers.shutdown()
        try? group.syncShutdownGracefully()
    }
}

/// One connection: frames records, hands calls to the pool, writes replies.
final class RPCConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let service: NFSService
    let workers: WorkerPool
    let maxInFlight: Int
    private var decoder: RecordDecoder
    private var inFlight = 0
    private var client = ""

    init(service: NFSService, workers: WorkerPool, options: NFSServer.Options) {
        self.service = service
        self.workers = workers
        maxInFlight = options.maxInFlight
        decoder = RecordDecoder(limit: options.maxRecord)
    }

    func channelActive(context: ChannelHandlerContext) {
        client = context.remoteAddress?.ipAddress ?? "?"
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
        let records: [[UInt8]]
        do {
            records = try decoder.feed(bytes)
        } catch {
            context.close(promise: nil)
            return
        }
        for record in records { run(record, context: context) }
    }

    private func run(_ record: [UInt8], context: ChannelHandlerContext) {
        inFlight += 1
        if inFlight >= maxInFlight { context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in } }
        let service = service
        let client = client
        let channel = context.channel
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let boundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        workers.submit {
            let reply = service.handle(record, client: client)
            eventLoop.execute {
                let handler = bound.value
                handler.inFlight -= 1
                if handler.inFlight == handler.maxInFlight - 1 {
                    channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
                    boundContext.value.read()
                }
                guard let reply, channel.isActive else { return }
                // The record mark, then the reply: one copy into the socket's buffer.
                var buffer = channel.allocator.buffer(capacity: reply.count + 4)
                buffer.writeInteger(UInt32(reply.count) | 0x8000_0000)
                buffer.writeBytes(reply)
                channel.writeAndFlush(buffer, promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
