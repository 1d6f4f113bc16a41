// Whether something takes TCP connections at an address: a plain blocking connect, with a
// limit on how long it may wait (a full listen queue would hold it for minutes).

#if canImport(Glibc)
import Glibc
#endif

/// True when a connection to `host`:`port` (a name or numeric address) is accepted within
/// `seconds`, false when it is refused or times out; nil when no attempt could be made
/// (the host does not resolve, no socket).
public func acceptsTCPConnections(host: String, port: Int, within seconds: Int) -> Bool? {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_flags = AI_NUMERICSERV
    var result: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(host, String(port), &hints, &result) == 0, let info = result else { return nil }
    defer { freeaddrinfo(result) }
    let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var timeout = timeval(tv_sec: seconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0
}
