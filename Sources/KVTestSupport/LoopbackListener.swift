// A TCP socket listening on a free port of 127.0.0.1, for tests that need something to
// connect to (or something that takes connections and never answers).

#if canImport(Glibc)
import Glibc
#endif

public struct LoopbackListener {
    public let fd: Int32
    /// Where it listens (its port filled in).
    public let address: sockaddr_in
    public var port: Int { Int(UInt16(bigEndian: address.sin_port)) }

    /// Listens with a backlog of `backlog`, or nil when the socket cannot be made.
    public init?(backlog: Int32 = 8) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound && listen(fd, backlog) == 0 else {
            _ = Glibc.close(fd)
            return nil
        }
        self.fd = fd
        self.address = address
    }

    public func close() { _ = Glibc.close(fd) }
}
