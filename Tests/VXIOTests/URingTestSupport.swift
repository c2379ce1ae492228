// Fixtures for the io_uring engine tests: loopback UDP sockets, a raw IPv4 sender and a throwaway TAP.
//
// Network safety: every address used here is 127.0.0.1 or inside a /24 assigned to the TAP these fixtures
// create (kernel traffic for it goes into that TAP and nowhere else). Every fd is closed and every TAP deleted
// in `close()`/deinit, which the tests call from `defer`.

#if os(Linux)
#if canImport(Musl)
import Musl
#elseif canImport(Glibc)
import Glibc
#endif
import CVXLinux
import Foundation
import VXIO
import VXPacket

/// Tests that need CAP_NET_ADMIN / CAP_NET_RAW run only as root; otherwise Swift Testing reports them skipped
/// with this condition's comment.
let runningAsRoot = getuid() == 0

enum FixtureError: Error, CustomStringConvertible {
    case syscall(String, Int32)
    case command(String, Int32)

    var description: String {
        switch self {
        case .syscall(let name, let code): "\(name): \(String(cString: strerror(code)))"
        case .command(let line, let status): "`\(line)` exited with \(status)"
        }
    }
}

/// A nonblocking UDP socket bound to 127.0.0.1 on a kernel-chosen port.
final class LoopbackUDPSocket {
    let fd: Int32
    let port: UInt16

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw FixtureError.syscall("socket", errno) }
        var address = sockaddr_in.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            let code = errno
            close(fd)
            throw FixtureError.syscall("bind", code)
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.fd = fd
        self.port = UInt16(bigEndian: address.sin_port)
    }

    deinit { close(fd) }

    /// Sends `bytes` to 127.0.0.1:`port`. Returns false when the socket buffer is full.
    @discardableResult
    func send(_ bytes: [UInt8], toPort port: UInt16) -> Bool {
        var address = sockaddr_in.loopback(port: port)
        let sent = bytes.withUnsafeBytes { payload in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, payload.baseAddress, payload.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        return sent == bytes.count
    }

    /// Waits up to `milliseconds` for one datagram.
    func receive(waitingMilliseconds milliseconds: Int32) -> [UInt8]? {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, milliseconds) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 2048)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return count >= 0 ? Array(buffer[..<count]) : nil
    }
}

/// A raw IPPROTO_RAW socket (IP_HDRINCL implied): the engine's `.rawSender`.
final class RawIPv4Socket {
    let fd: Int32

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_RAW))
        guard fd >= 0 else { throw FixtureError.syscall("socket(SOCK_RAW)", errno) }
        self.fd = fd
    }

    deinit { close(fd) }
}

/// A TAP named `vxu<4 hex>` with 10.213.`subnet`.1/24, up. Deleted by `close()` (and by closing its fd, since
/// it is not persistent).
final class TestTAP {
    let name: String
    let fd: Int32
    /// Third octet of the TAP's 10.213.x.0/24.
    let subnet: UInt8
    private var closed = false

    init() throws {
        let suffix = String(UInt16.random(in: 0...UInt16.max), radix: 16)
        let name = "vxu" + String(repeating: "0", count: 4 - suffix.count) + suffix
        var actual = [CChar](repeating: 0, count: 16)
        let fd = cvx_tap_open(name, 0, &actual)
        guard fd >= 0 else { throw FixtureError.syscall("cvx_tap_open(\(name))", -fd) }
        self.fd = fd
        self.name = String(decoding: actual.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.subnet = UInt8.random(in: 1...254)
        do {
            try run("/usr/sbin/ip", "link", "set", self.name, "up")
            try run("/usr/sbin/ip", "addr", "add", "10.213.\(subnet).1/24", "dev", self.name)
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    /// Closes the fd and deletes the interface (ignoring "does not exist": closing the fd already removed it).
    func close() {
        guard !closed else { return }
        closed = true
        _ = Glibc.close(fd)
        _ = try? run("/usr/sbin/ip", "link", "del", name, quietly: true)
    }

    /// The kernel's count of frames written into the TAP (its "receive" side).
    func kernelReceivedPackets() -> Int? {
        guard let text = try? String(contentsOfFile: "/sys/class/net/\(name)/statistics/rx_packets", encoding: .utf8)
        else { return nil }
        return Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Makes the kernel ARP for 10.213.`subnet`.2 on this TAP by sending a UDP datagram there: the ARP
    /// requests are written into the TAP and go nowhere else.
    func provokeARP() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw FixtureError.syscall("socket", errno) }
        defer { _ = Glibc.close(fd) }
        var address = sockaddr_in.loopback(port: 9)
        address.sin_addr.s_addr = (UInt32(10) << 24 | 213 << 16 | UInt32(subnet) << 8 | 2).bigEndian
        let payload: [UInt8] = [0x76, 0x78]
        _ = payload.withUnsafeBytes { bytes in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT), $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }
}

@discardableResult
private func run(_ executable: String, _ arguments: String..., quietly: Bool = false) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if quietly {
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
    }
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw FixtureError.command(([executable] + arguments).joined(separator: " "), process.terminationStatus)
    }
    return process.terminationStatus
}

extension sockaddr_in {
    static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }
}

extension URingEngine {
    /// The bytes of a received frame.
    func bytes(of frame: ReceivedFrame) -> [UInt8] {
        Array(pool.unsafeBytes(of: frame.buffer, offset: Int(frame.offset), length: Int(frame.length)))
    }

    /// Receives until `predicate` has seen what it wants or `seconds` pass, releasing every buffer.
    /// - Returns: the frames' bytes and sources, in arrival order, and the largest batch seen.
    func collect(
        seconds: Double, capacity: Int = 64, until done: ([(PortHandle, UnderlayAddress, [UInt8])]) -> Bool
    ) throws -> (frames: [(PortHandle, UnderlayAddress, [UInt8])], largestBatch: Int) {
        var batch = RxBatch(capacity: capacity)
        var frames: [(PortHandle, UnderlayAddress, [UInt8])] = []
        var largest = 0
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while !done(frames), ContinuousClock.now < deadline {
            batch.reset()
            _ = try receive(into: &batch, timeout: .milliseconds(50))
            largest = max(largest, batch.count)
            for frame in batch.frames {
                frames.append((frame.source, frame.remote, bytes(of: frame)))
                release(frame.buffer)
            }
        }
        return (frames, largest)
    }
}
#endif
