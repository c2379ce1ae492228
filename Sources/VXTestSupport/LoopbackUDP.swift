// UDP on 127.0.0.1 (or ::1) for tests: a plain socket that plays a peer's side of a tunnel socket, and the kernel's own
// account of a socket's receive-queue drops, for tests that overflow one.

import Foundation
import VXPacket

#if canImport(Glibc)
import Glibc
#endif

/// A plain UDP socket bound to a loopback address (127.0.0.1, or ::1) and a port the kernel picks.
public final class PlainUDPSocket {
    public let fd: Int32
    public let port: UInt16
    /// True for a socket on ::1, which sends to ::1.
    public let isIPv6: Bool

    /// - Parameter ipv6: bind ::1 instead of 127.0.0.1 (and send there).
    /// - Throws: `PlainUDPSocket.Failure` with the errno of the failed `socket`, `bind` or `getsockname`.
    public init(ipv6: Bool = false) throws {
        let fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(errno: errno) }
        var address = Self.loopbackAddress(port: 0, ipv6: ipv6)
        var length = socklen_t(ipv6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, length) == 0 ? getsockname(fd, sa, &length) : -1
            }
        }
        guard rc == 0 else {
            let code = errno
            close(fd)
            throw Failure(errno: code)
        }
        self.fd = fd
        self.isIPv6 = ipv6
        port = UInt16(bigEndian: address.sin6_port)  // sin_port and sin6_port share their offset
    }

    deinit { close(fd) }

    public struct Failure: Error {
        public let errno: Int32
    }

    /// Sends `payload` to the socket's loopback address, `port`. - Returns: true when the kernel took it.
    @discardableResult
    public func send(_ payload: [UInt8], to port: UInt16) -> Bool {
        var address = Self.loopbackAddress(port: port, ipv6: isIPv6)
        let length = socklen_t(isIPv6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        return payload.withUnsafeBytes { bytes in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    sendto(fd, bytes.baseAddress, bytes.count, 0, sa, length)
                }
            }
        } == payload.count
    }

    /// Waits up to `timeoutMilliseconds` for one datagram. - Returns: its payload, or nil.
    public func receive(timeoutMilliseconds: Int32 = 2000) -> [UInt8]? {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, timeoutMilliseconds) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        return count >= 0 ? Array(buffer.prefix(count)) : nil
    }

    /// 127.0.0.1 or ::1 with `port`, in a `sockaddr_in6`-sized value (a `sockaddr_in` at its start for IPv4).
    private static func loopbackAddress(port: UInt16, ipv6: Bool) -> sockaddr_in6 {
        var storage = sockaddr_in6()
        if ipv6 {
            storage.sin6_family = sa_family_t(AF_INET6)
            storage.sin6_port = port.bigEndian
            storage.sin6_addr = in6addr_loopback
            return storage
        }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr = in_addr(s_addr: IPv4Address(127, 0, 0, 1).value.bigEndian)
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: sin, as: sockaddr_in.self) }
        return storage
    }
}

/// The drops column of /proc/self/net/udp (udp6 with `ipv6`) for the 127.0.0.1 (::1) socket bound to `port`, found
/// by its local address rather than by inode (as the daemon's KernelSocketDrops does), so tests do not check the
/// product's parser against itself.
/// - Returns: the count, or nil when no such socket is listed.
public func loopbackUDPDrops(port: UInt16, ipv6: Bool = false) -> UInt64? {
    let hex = String(port, radix: 16, uppercase: true)
    // The kernel prints addresses as 32-bit words in host order: 127.0.0.1 is 0100007F, ::1 ends in 01000000.
    let address = ipv6 ? "00000000000000000000000001000000" : "0100007F"
    let local = address + ":" + String(repeating: "0", count: 4 - hex.count) + hex
    let table = (try? String(contentsOfFile: "/proc/self/net/udp\(ipv6 ? "6" : "")", encoding: .utf8)) ?? ""
    for line in table.split(separator: "\n").dropFirst() {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        if fields.count >= 13, fields[1] == local { return UInt64(fields[fields.count - 1]) }
    }
    return nil
}
