// The sockets under NFSServer that SwiftNIO does not handle: the listening socket with
// its accept thread, and the write side of each connection. A worker writes its reply to
// the connection itself (ReplyWriter) instead of handing it back to the connection's
// event loop: that hand-off cost an eventfd write and a wakeup of the loop per call,
// which on this 2-core machine was a large part of each call (Docs/nfs.md, "Threads").
// SwiftNIO reads every connection: it gets the accepted socket, the workers a duplicate
// of it. A reply that does not fit in the socket's buffer goes on through the event loop.
// Connections from the loopback interface get their own congestion control
// (CongestionControl).

import Engine
import Foundation
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A listening TCP socket and the thread that accepts on it.
final class Listener: Sendable {
    let port: Int
    private let fd: Int32
    private let done = Locked(false)
    /// The accept thread is running (from `start` until it returns).
    private let running = Atomic<Bool>(false)

    /// Binds `host` (a name or address) and `port` (0: a free one).
    init(host: String, port: Int) throws {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var found: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &found)
        guard status == 0, let first = found else {
            throw KVError(.invalidArgument, "cannot resolve \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(found) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw KVError.posix("socket", path: host, errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0, listen(fd, 256) == 0 else {
            let code = errno
            close(fd)
            throw KVError.posix("bind", path: "\(host):\(port)", errno: code)
        }
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let bound = withUnsafeBytes(of: address) { raw -> UInt16 in
            // sin_port and sin6_port sit at the same offset, in network order.
            UInt16(bigEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        }
        self.fd = fd
        self.port = Int(bound)
    }

    /// Accepts until `stop`, on a thread of its own; each socket goes to `accepted`.
    func start(_ accepted: @escaping @Sendable (Int32) -> Void) {
        running.store(true, ordering: .releasing)
        let thread = Thread { [self] in
            defer { running.store(false, ordering: .releasing) }
            while true {
                let client = accept(fd, nil, nil)
                if client >= 0 {
                    _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                    accepted(client)
                    continue
                }
                if done.withLock({ $0 }) { return }
                switch errno {
                case EINTR, ECONNABORTED, EPROTO: continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM: usleep(10_000)  // out of descriptors or memory: retry soon
                default:
                    printError("zerofs: NFS accept failed (errno \(errno)); no new connections")
                    return
                }
            }
        }
        thread.name = "nfs-accept"
        thread.start()
    }

    /// Stops accepting and closes the socket.
    func stop() {
        done.withLock { $0 = true }
        // shutdown wakes a thread blocked in accept (close alone does not on Linux).
        shutdown(fd, Int32(SHUT_RDWR))
        while running.load(ordering: .acquiring) { usleep(1_000) }
        close(fd)
    }
}

/// TCP congestion control for clients on the loopback interface (NFSServer.Options
/// `loopbackCongestion`, Docs/nfs.md "Loopback clients"). A loopback connection has no
/// network to share, but a pacing algorithm (BBR, when it is the system's default) still
/// spaces a reply's segments at its estimate of the connection's bandwidth, which there
/// swings with the client's scheduling: a 1 MiB READ reply took about 110 µs or 220-310
/// µs to send, from one connection to the next.
enum CongestionControl {
    /// Gives an accepted connection `name` (nothing when empty) if its peer is on the
    /// loopback interface. A failure leaves the system's choice (`problem` says why).
    static func prepare(_ fd: Int32, _ name: String) {
        guard !name.isEmpty, let peer = peer(fd), isLoopback(peer) else { return }
        _ = set(fd, name)
    }

    /// `fd`'s peer address, or nil (not connected).
    static func peer(_ fd: Int32) -> sockaddr_storage? {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        return status == 0 ? address : nil
    }

    /// Whether `address` is on the loopback interface: 127.0.0.0/8, ::1, or an IPv4
    /// loopback address mapped into IPv6 (::ffff:127.x.x.x).
    static func isLoopback(_ address: sockaddr_storage) -> Bool {
        switch Int32(address.ss_family) {
        case AF_INET:
            // sin_addr, in network order, follows the family and the port.
            let ipv4 = withUnsafeBytes(of: address) { $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self) }
            return UInt32(bigEndian: ipv4) >> 24 == 127
        case AF_INET6:
            // sin6_addr follows the family, the port and the flow label.
            let bytes = withUnsafeBytes(of: address) { Array($0[8..<24]) }
            if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }
            return bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF && bytes[12] == 127
        default:
            return false
        }
    }

    /// Sets `fd`'s congestion control to `name`; the errno on failure.
    static func set(_ fd: Int32, _ name: String) -> Int32? {
        name.withCString { text -> Int32? in
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_CONGESTION, text, socklen_t(strlen(text))) == 0 ? nil : errno
        }
    }

    /// Why `name` cannot be used on this machine (tried on a fresh socket), or nil.
    static func problem(_ name: String) -> String? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return String(cString: strerror(errno)) }
        defer { close(fd) }
        switch set(fd, name) {
        case nil: return nil
        case ENOENT?: return "the kernel has no such algorithm"
        case EPERM?: return "not in net.ipv4.tcp_allowed_congestion_control, and the server lacks CAP_NET_ADMIN"
        case let code?: return String(cString: strerror(code))
        }
    }
}

/// The bytes of replies that clients' sockets have not taken yet, over every connection of
/// a server (what the event loops hold for them), and the most it may hold; and which
/// connections hold them, with when each last got a held reply out (or began holding):
/// when the budget is full, the one that has made no progress the longest is closed.
final class ReplyBudget: Sendable {
    let limit: Int
    private let held = Atomic<Int>(0)
    /// The most held at once.
    private let peak = Atomic<Int>(0)

    private struct Holder {
        /// When its socket last took a held reply, or it began holding (uptime, ns).
        var progressed: UInt64
        /// Closes its connection; nil once chosen (it is not chosen twice).
        var evict: (@Sendable () -> Void)?
    }
    private let holders = Mutex<[ObjectIdentifier: Holder]>([:])

    init(limit: Int) {
        self.limit = limit
    }

    var bytesHeld: Int { held.load(ordering: .relaxed) }
    var peakBytesHeld: Int { peak.load(ordering: .relaxed) }

    /// Takes `bytes` if the total stays within the limit (or `always`); false otherwise.
    func take(_ bytes: Int, always: Bool) -> Bool {
        var current = held.load(ordering: .relaxed)
        while true {
            if !always && current + bytes > limit { return false }
            let (exchanged, original) = held.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged {
                _ = peak.max(current + bytes, ordering: .relaxed)
                return true
            }
            current = original
        }
    }

    func give(_ bytes: Int) {
        held.subtract(bytes, ordering: .relaxed)
    }

    /// `holder` began holding replies at `now` (`evict` closes its connection).
    func began(_ holder: ObjectIdentifier, at now: UInt64, evict: @escaping @Sendable () -> Void) {
        holders.withLock { $0[holder] = Holder(progressed: now, evict: evict) }
    }

    /// `holder`, holding replies still, got one out at `now`.
    func progressed(_ holder: ObjectIdentifier, at now: UInt64) {
        holders.withLock { $0[holder]?.progressed = now }
    }

    /// `holder` holds no replies any more.
    func released(_ holder: ObjectIdentifier) {
        _ = holders.withLock { $0.removeValue(forKey: holder) }
    }

    /// For `holder`, over budget, that last made progress at `since`: what closes another
    /// holder's connection, the one that has made none for longest, if it made none since
    /// before `since`; nil otherwise. The one chosen is not chosen again.
    func stalest(before since: UInt64, excluding holder: ObjectIdentifier) -> (@Sendable () -> Void)? {
        holders.withLock { all in
            var chosen: (key: ObjectIdentifier, progressed: UInt64)?
            for (key, other) in all where key != holder && other.evict != nil && other.progressed < since {
                if chosen == nil || other.progressed < chosen!.progressed { chosen = (key, other.progressed) }
            }
            guard let chosen else { return nil }
            defer { all[chosen.key]!.evict = nil }
            return all[chosen.key]!.evict
        }
    }

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
}

/// The write side of one connection, shared by the workers running its calls. One worker
/// at a time writes: a worker that finds another writing leaves its reply in the queue,
/// and the writing worker sends it after its own, so no worker waits for another (waiting
/// there was 3% of the server's time with four clients: a send on the loopback wakes the
/// client, whose next call can be answered while the send is still returning). A reply
/// goes straight to the socket when the socket's buffer takes it. When it does not (a
/// client slow to read), the rest of it, and every reply after it until those are out,
/// goes through the connection's event loop, which waits for the socket as SwiftNIO
/// always does. So a worker never waits for a client, and replies never interleave or
/// overtake each other. `written` (set once by the connection) runs for each reply once
/// its bytes are all in the socket, or dropped with a closed connection: the connection
/// counts a call until then, so a client that does not read its replies stops its own
/// calls being read (NFSServer).
///
/// What the event loops hold for slow clients counts against the server's `ReplyBudget`.
/// A connection's first held reply always goes. One more that the budget has no room for
/// closes a connection: the holder whose socket has taken nothing for longest, if it
/// stalled before this one (this reply goes then, over the budget until that one's bytes
/// are dropped), or else this one. A closed connection's replies are dropped: the client
/// reconnects and sends its calls again, and the duplicate-request cache answers the ones
/// that change things. So clients that pipeline calls and read no replies, over many
/// connections, hold at most the budget plus two replies per connection, not 64
/// (`maxInFlight`) per connection, and a client reading its replies meanwhile is not the
/// one closed.
final class ReplyWriter: Sendable {
    typealias Written = @Sendable () -> Void

    private struct State {
        /// The descriptor, or -1 once closed.
        var fd: Int32
        /// The connection's channel, once SwiftNIO has made it.
        var channel: (any Channel)?
        /// A worker is writing (outside the lock); replies wait in `queue` meanwhile.
        var writing = false
        var queue: [[UInt8]] = []
        /// Runs for each reply written or dropped; nil once closed (it holds the connection's
        /// handler, which holds this writer).
        var written: Written?
        /// Replies handed to the event loop and not yet written by it.
        var viaLoop = 0
        /// `close` came while a worker was writing: that worker closes.
        var closeWhenDone = false
        /// Bytes handed to the event loop and not yet written (taken from `budget`).
        var heldBytes = 0
        /// The budget had no room for a reply: the channel is being closed.
        var overBudget = false
        /// When the socket last took a held reply, or holding began (ReplyBudget.now).
        var progressed: UInt64 = 0
    }

    private let state: Locked<State>
    private let budget: ReplyBudget
    /// Closed to make room in the budget (ReplyBudget.stalest): holds no more replies. Not
    /// in `state`: the writer choosing this one holds its own lock then.
    private let evicted = Atomic<Bool>(false)

    init(fd: Int32, budget: ReplyBudget) {
        state = Locked(State(fd: fd))
        self.budget = budget
    }

    func attach(_ channel: any Channel) {
        state.withLock { $0.channel = channel }
    }

    func onWritten(_ hook: @escaping Written) {
        state.withLock { $0.written = hook }
    }

    /// Counts a call that has no reply as written.
    func countWritten() {
        state.withLock { $0.written }?()
    }

    /// Writes the record mark and `reply`, or leaves them to the worker writing now or to
    /// the event loop.
    func send(_ reply: [UInt8]) {
        var dropped: Written?
        let fd = state.withLock { s -> Int32? in
            guard s.fd >= 0, let channel = s.channel else { return nil }
            if s.writing {
                s.queue.append(reply)
                return nil
            }
            if s.viaLoop > 0 || s.overBudget {
                if !handToLoop(&s, channel, reply, sent: 0) { dropped = s.written }
                return nil
            }
            s.writing = true
            return s.fd
        }
        dropped?()
        guard let fd else { return }
        var next = reply
        while true {
            let sent = Self.writeWhatFits(fd, next)
            var finished = 0
            var written: Written?
            let more = state.withLock { s -> [UInt8]? in
                written = s.written
                if s.closeWhenDone || sent < 0 {
                    // Closed meanwhile, or the socket failed (the event loop sees that
                    // too, and closes the connection): what is left is dropped.
                    finished = 1 + s.queue.count
                    s.queue.removeAll()
                    s.writing = false
                    if s.closeWhenDone { Self.closeNow(&s) }
                    return nil
                }
                if sent < next.count + 4, let channel = s.channel {
                    if !handToLoop(&s, channel, next, sent: sent) { finished += 1 }
                    for queued in s.queue where !handToLoop(&s, channel, queued, sent: 0) { finished += 1 }
                    s.queue.removeAll()
                    s.writing = false
                    return nil
                }
                finished = 1
                if s.queue.isEmpty {
                    s.writing = false
                    return nil
                }
                return s.queue.removeFirst()
            }
            if let written { for _ in 0..<finished { written() } }
            guard let more else { return }
            next = more
        }
    }

    /// Closes the descriptor (the connection ends once SwiftNIO has closed its own).
    func close() {
        state.withLock { s in
            if s.writing {
                s.closeWhenDone = true
            } else {
                Self.closeNow(&s)
            }
        }
    }

    private static func closeNow(_ s: inout State) {
        if s.fd >= 0 {
            Glibc.close(s.fd)
            s.fd = -1
        }
        s.channel = nil
        s.written = nil
    }

    /// Hands what is left of `reply` after `sent` bytes (of mark and reply) to the event
    /// loop, which counts it written once it has written it (or failed to); true. False
    /// when this connection is closed for the budget (the budget has no room for the
    /// reply, this connection holds replies already, and no other has stalled longer; or
    /// another chose this one to make room): the reply is dropped (the caller counts it
    /// written). REQUIRES: the lock is held, so replies reach the loop in order.
    private func handToLoop(_ s: inout State, _ channel: any Channel, _ reply: [UInt8], sent: Int) -> Bool {
        let bytes = reply.count + 4 - sent
        if s.overBudget || evicted.load(ordering: .relaxed) { return false }
        let me = ObjectIdentifier(self)
        if !budget.take(bytes, always: s.heldBytes == 0) {
            guard let evict = budget.stalest(before: s.progressed, excluding: me) else {
                s.overBudget = true
                channel.close(promise: nil)
                return false
            }
            evict()
            _ = budget.take(bytes, always: true)
        }
        if s.heldBytes == 0 {
            s.progressed = ReplyBudget.now()
            budget.began(me, at: s.progressed) { [weak self] in
                self?.evicted.store(true, ordering: .relaxed)
                channel.close(promise: nil)
            }
        }
        s.heldBytes += bytes
        var rest = channel.allocator.buffer(capacity: bytes)
        if sent < 4 {
            var mark = Self.mark(reply)
            _ = withUnsafeBytes(of: &mark) { rest.writeBytes(UnsafeRawBufferPointer(rebasing: $0[sent...])) }
            rest.writeBytes(reply)
        } else {
            rest.writeBytes(reply[(sent - 4)...])
        }
        s.viaLoop += 1
        let (budget, filled) = (budget, rest)
        channel.eventLoop.execute {
            channel.writeAndFlush(filled).whenComplete { _ in
                let written = self.state.withLock { s in
                    s.viaLoop -= 1
                    s.heldBytes -= bytes
                    if s.heldBytes == 0 {
                        budget.released(ObjectIdentifier(self))
                    } else {
                        s.progressed = ReplyBudget.now()
                        budget.progressed(ObjectIdentifier(self), at: s.progressed)
                    }
                    return s.written
                }
                budget.give(bytes)
                written?()
            }
        }
        return true
    }

    /// The record mark of a one-fragment record (big-endian in memory).
    private static func mark(_ reply: [UInt8]) -> UInt32 {
        (UInt32(reply.count) | 0x8000_0000).bigEndian
    }

    /// Sends as much of the record mark and `reply` as the socket takes without waiting:
    /// the bytes sent, or -1 when the socket failed. MSG_NOSIGNAL: a closed peer is an
    /// error, not a SIGPIPE.
    private static func writeWhatFits(_ fd: Int32, _ reply: [UInt8]) -> Int {
        var markValue = mark(reply)
        return withUnsafeBytes(of: &markValue) { mark in
            reply.withUnsafeBytes { body in
                var sent = 0
                let total = mark.count + body.count
                // Two vectors on the stack: no allocation per reply.
                var vectors = (iovec(), iovec())
                while sent < total {
                    var count = 0
                    let n = withUnsafeMutableBytes(of: &vectors) { raw -> Int in
                        let v = raw.bindMemory(to: iovec.self)
                        if sent < mark.count {
                            v[count] = iovec(iov_base: UnsafeMutableRawPointer(mutating: mark.baseAddress! + sent), iov_len: mark.count - sent)
                            count += 1
                        }
                        let bodyFrom = max(0, sent - mark.count)
                        if bodyFrom < body.count {
                            v[count] = iovec(iov_base: UnsafeMutableRawPointer(mutating: body.baseAddress! + bodyFrom), iov_len: body.count - bodyFrom)
                            count += 1
                        }
                        var message = msghdr()
                        message.msg_iov = v.baseAddress
                        message.msg_iovlen = count
                        return sendmsg(fd, &message, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                    }
                    if n < 0 {
                        if errno == EINTR { continue }
                        return errno == EAGAIN || errno == EWOULDBLOCK ? sent : -1
                    }
                    sent += n
                }
                return sent
            }
        }
    }
}
