// Loopback clients: which peer addresses are loopback ones (IPv4, IPv6, IPv4 mapped into
// IPv6, and the ones that are not), that an accepted loopback connection takes the named
// congestion control (or keeps the system's with ""), and that a name the kernel does
// not have is reported, not fatal.

import KVTestSupport
@testable import NFS
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct LoopbackCongestionTests {
    func address(_ text: String) -> sockaddr_storage {
        var storage = sockaddr_storage()
        if text.contains(":") {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            #expect(inet_pton(AF_INET6, text, &address.sin6_addr) == 1)
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in6.self) }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            #expect(inet_pton(AF_INET, text, &address.sin_addr) == 1)
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in.self) }
        }
        return storage
    }

    @Test func loopbackAddressesAreKnownInEveryFamily() {
        for text in ["127.0.0.1", "127.255.255.254", "::1", "::ffff:127.0.0.1", "::ffff:127.1.2.3"] {
            #expect(CongestionControl.isLoopback(address(text)), "\(text)")
        }
        for text in ["128.0.0.1", "10.0.0.1", "126.255.255.255", "0.0.0.0", "::", "::2", "fe80::1", "::ffff:10.0.0.1",
                     "::ffff:128.0.0.1", "::127.0.0.1", "2001:db8::1"] {
            #expect(!CongestionControl.isLoopback(address(text)), "\(text)")
        }
        var unix = sockaddr_storage()
        unix.ss_family = sa_family_t(AF_UNIX)
        #expect(!CongestionControl.isLoopback(unix))
    }

    /// A connected pair over IPv4 loopback: the accepted socket and the client's.
    func pair() throws -> (accepted: Int32, client: Int32) {
        let listener = try #require(LoopbackListener(backlog: 4))
        defer { listener.close() }
        var address = listener.address
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        let accepted = accept(listener.fd, nil, nil)
        if connected != 0 || accepted < 0 {
            close(client)
            if accepted >= 0 { close(accepted) }
            try #require(Bool(false), "no loopback connection: errno \(errno)")
        }
        return (accepted, client)
    }

    func congestion(_ fd: Int32) -> String {
        var name = [CChar](repeating: 0, count: 16)
        var length = socklen_t(name.count)
        _ = getsockopt(fd, Int32(IPPROTO_TCP), TCP_CONGESTION, &name, &length)
        return String(cString: name)
    }

    @Test func anAcceptedLoopbackConnectionTakesTheNamedAlgorithm() throws {
        let system = try pair()
        defer { close(system.accepted); close(system.client) }
        let systemDefault = congestion(system.accepted)
        #expect(!systemDefault.isEmpty)
        #expect(CongestionControl.peer(system.accepted).map(CongestionControl.isLoopback) == true)
        // "" keeps the system's choice.
        CongestionControl.prepare(system.accepted, "")
        #expect(congestion(system.accepted) == systemDefault)
        // reno is built into every Linux kernel and allowed to every process; cubic,
        // when the default is reno, so that the change shows.
        let wanted = systemDefault == "reno" ? "cubic" : "reno"
        let sockets = try pair()
        defer { close(sockets.accepted); close(sockets.client) }
        CongestionControl.prepare(sockets.accepted, wanted)
        #expect(congestion(sockets.accepted) == wanted)
        // A name the kernel lacks changes nothing.
        #expect(CongestionControl.set(sockets.accepted, "no_such_cc") == ENOENT)
        #expect(congestion(sockets.accepted) == wanted)
        // Not connected: no peer, so nothing to do.
        let lone = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(lone) }
        #expect(CongestionControl.peer(lone) == nil)
    }

    @Test func aNameTheKernelRefusesIsReported() {
        #expect(NFSServer.loopbackCongestionProblem("reno") == nil)
        #expect(NFSServer.loopbackCongestionProblem("") == nil)
        #expect(NFSServer.loopbackCongestionProblem("no_such_cc") == "the kernel has no such algorithm")
    }
}
