// UDP on 127.0.0.1 for tests: a plain socket that plays a peer's side of a tunnel socket, and the kernel's own
// account of a socket's receive-queue drops, for tests that overflow one.

import Foundation
import VXPacket

#if canImport(Glibc)
import Glibc
#endif

/// A plain UDP socket bound to 127.0.0.1 and a port the kernel picks.
public final class PlainUDPSocket {
    public let fd: Int32
    public let port: UInt16

    /// - Throws: `PlainUDPSocket.Failure` with the errno of the failed `socket`, `bind` or `getsockname`.
    public init() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(errno: errno) }
        var sin = Self.loopbackAddress(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &sin) { pointer in
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
        port = UInt16(bigEndian: sin.sin_port)
    }

    deinit { close(fd) }

    public struct Failure: Error {
        public let errno: Int32
    }

    /// Sends `payload` to 127.0.0.1:`port`. - Returns: true when the kernel took it.
    @discardableResult
    public func send(_ payload: [UInt8], to port: UInt16) -> Bool {
        var sin = Self.loopbackAddress(port: port)
        return payload.withUnsafeBytes { bytes in
            withUnsafePointer(to: &sin) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    sendto(fd, bytes.baseAddress, bytes.count, 0, sa, socklen_t(MemoryLayout<sockaddr_in>.size))
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

    private static func loopbackAddress(port: UInt16) -> sockaddr_in {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr = in_addr(s_addr: IPv4Address(127, 0, 0, 1).value.bigEndian)
        return sin
    }
}

/// The drops column of /proc/self/net/udp for the 127.0.0.1 socket bound to `port`, found by its local address
/// rather than by inode (as the daemon's KernelSocketDrops does), so tests do not check the product's parser
/// against itself.
/// - Returns: the count, or nil when no such socket is listed.
public func loopbackUDPDrops(port: UInt16) -> UInt64? {
    let hex = String(port, radix: 16, uppercase: true)
    let local = "0100007F:" + String(repeating: "0", count: 4 - hex.count) + hex
    let table = (try? String(contentsOfFile: "/proc/self/net/udp", encoding: .utf8)) ?? ""
    for line in table.split(separator: "\n").dropFirst() {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        if fields.count >= 13, fields[1] == local { return UInt64(fields[fields.count - 1]) }
    }
    return nil
}
