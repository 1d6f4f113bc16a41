// Loopback clients: the server knows a loopback peer (IPv4, IPv6, and IPv4 mapped into
// IPv6) and can switch its connection's congestion control; a name the kernel does not
// have is reported, not fatal.

@testable import NFS
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct LoopbackCongestionTests {
    /// A connected pair over `family`'s loopback (`mapped`: an IPv6 listener reached from
    /// 127.0.0.1): the accepted socket, and the client's. nil when the family is missing.
    func pair(_ family: Int32, mapped: Bool = false) throws -> (accepted: Int32, client: Int32)? {
        let listener = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { return nil }
        defer { close(listener) }
        var storage = sockaddr_storage()
        var length: socklen_t
        if family == AF_INET {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in.self) }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        } else {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            // ::1, or :: (every address, IPv4 too) for the mapped case.
            if !mapped { withUnsafeMutableBytes(of: &address.sin6_addr) { $0[15] = 1 } }
            var off: Int32 = 0
            setsockopt(listener, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &off, socklen_t(MemoryLayout<Int32>.size))
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in6.self) }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) }
        }
        guard bound == 0, listen(listener, 4) == 0 else { return nil }
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        // The port sits at the same offset in both families.
        let port = withUnsafeBytes(of: storage) { $0.loadUnaligned(fromByteOffset: 2, as: UInt16.self) }
        let clientFamily = mapped ? AF_INET : family
        let client = socket(clientFamily, Int32(SOCK_STREAM.rawValue), 0)
        var target = sockaddr_storage()
        var targetLength: socklen_t
        if clientFamily == AF_INET {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            withUnsafeMutableBytes(of: &target) { $0.storeBytes(of: address, as: sockaddr_in.self) }
            targetLength = socklen_t(MemoryLayout<sockaddr_in>.size)
        } else {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port
            withUnsafeMutableBytes(of: &address.sin6_addr) { $0[15] = 1 }
            withUnsafeMutableBytes(of: &target) { $0.storeBytes(of: address, as: sockaddr_in6.self) }
            targetLength = socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, targetLength) }
        }
        guard connected == 0 else {
            close(client)
            return nil
        }
        let accepted = accept(listener, nil, nil)
        guard accepted >= 0 else {
            close(client)
            return nil
        }
        return (accepted, client)
    }

    func congestion(_ fd: Int32) -> String {
        var name = [CChar](repeating: 0, count: 16)
        var length = socklen_t(name.count)
        _ = getsockopt(fd, Int32(IPPROTO_TCP), TCP_CONGESTION, &name, &length)
        return String(cString: name)
    }

    @Test func loopbackPeersAreKnownInEveryFamily() throws {
        let ipv4 = try #require(try pair(AF_INET))
        defer { close(ipv4.accepted); close(ipv4.client) }
        #expect(CongestionControl.isLoopbackPeer(ipv4.accepted))
        // Machines without IPv6 skip those two.
        if let ipv6 = try pair(AF_INET6) {
            defer { close(ipv6.accepted); close(ipv6.client) }
            #expect(CongestionControl.isLoopbackPeer(ipv6.accepted))
        }
        if let mapped = try pair(AF_INET6, mapped: true) {
            defer { close(mapped.accepted); close(mapped.client) }
            #expect(CongestionControl.isLoopbackPeer(mapped.accepted))
        }
        // Not connected: no peer, so not a loopback one.
        let lone = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(lone) }
        #expect(!CongestionControl.isLoopbackPeer(lone))
    }

    @Test func theConnectionTakesTheNamedAlgorithmAndAMissingOneIsReported() throws {
        let sockets = try #require(try pair(AF_INET))
        defer { close(sockets.accepted); close(sockets.client) }
        // reno is built into every Linux kernel and always allowed.
        #expect(CongestionControl.set(sockets.accepted, "reno") == nil)
        #expect(congestion(sockets.accepted) == "reno")
        #expect(CongestionControl.set(sockets.accepted, "no_such_cc") == ENOENT)
        #expect(congestion(sockets.accepted) == "reno")
        #expect(NFSServer.loopbackCongestionProblem("reno") == nil)
        #expect(NFSServer.loopbackCongestionProblem("") == nil)
        let problem = try #require(NFSServer.loopbackCongestionProblem("no_such_cc"))
        #expect(problem.contains("No such file"))
    }
}
