// Helpers for the VXIO tests: privilege gating, unique names, network namespaces the tests create and remove,
// plain sockets that play the kernel's or a peer's side, and frame builders.
//
// Network safety: traffic goes only to 127.0.0.1 or into namespaces named `vx-<run id>-…` that a test creates
// and deletes in a `defer`; TAPs get unique names `vxt<random>` and disappear when their descriptor closes.

import Foundation
import Testing
import VXIO
import VXPacket

#if canImport(Glibc)
import Glibc
#endif

/// Root (CAP_NET_ADMIN) is needed for TAPs, raw sockets and namespaces. CI runs as root.
let hasNetAdmin = getuid() == 0
let needsRootMessage = "needs root (CAP_NET_ADMIN/CAP_NET_RAW): TAP devices, raw sockets, network namespaces"

/// A random id per test process, so parallel runs on one machine never share a name.
let runID = String(UInt32.random(in: 0...UInt32.max), radix: 16)

/// A fresh TAP name, `vxt` + 8 hex digits (11 bytes, within IFNAMSIZ).
func uniqueTAPName() -> String {
    let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
    return "vxt" + String(repeating: "0", count: 8 - suffix.count) + suffix
}

/// Runs a command with a bounded wait; returns its exit status and standard output.
@discardableResult
func run(_ arguments: [String], timeout: TimeInterval = 10) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)  // our own child, by PID
        process.waitUntilExit()
    }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// A network namespace this test created; `delete()` it in a defer.
struct TestNamespace {
    let name: String

    init(_ label: String) throws {
        name = "vx-\(runID)-\(label)"
        let result = try run(["ip", "netns", "add", name])
        try #require(result.status == 0, "ip netns add \(name) failed")
    }

    /// Runs `ip netns exec NAME command…`.
    @discardableResult
    func exec(_ arguments: [String], timeout: TimeInterval = 10) throws -> (status: Int32, output: String) {
        try run(["ip", "netns", "exec", name] + arguments, timeout: timeout)
    }

    func delete() {
        _ = try? run(["ip", "netns", "del", name])
    }
}

/// Reads /sys/class/net/NAME/statistics/COUNTER in this process's namespace.
func interfaceCounter(_ name: String, _ counter: String) -> Int? {
    guard let text = try? String(contentsOfFile: "/sys/class/net/\(name)/statistics/\(counter)", encoding: .utf8)
    else { return nil }
    return Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
}

/// Receives into `batch` until `done` says so or `attempts` calls passed, releasing nothing.
func receiveUntil<E: PacketEngine>(
    _ engine: E, _ batch: inout RxBatch, attempts: Int = 50, timeout: Duration = .milliseconds(100),
    _ done: (RxBatch) -> Bool
) throws {
    for _ in 0..<attempts where !done(batch) && batch.remainingCapacity > 0 {
        _ = try engine.receive(into: &batch, timeout: timeout)
    }
}

/// The bytes of a received frame.
func bytes<E: PacketEngine>(of frame: ReceivedFrame, in engine: E) -> [UInt8] {
    let raw = unsafe engine.pool.unsafeBytes(of: frame.buffer, offset: Int(frame.offset), length: Int(frame.length))
    return unsafe Array(raw)
}

/// Takes a pool buffer and writes `payload` at its headroom. - Returns: the buffer, offset and length.
func stage(_ payload: [UInt8], in pool: PacketBufferPool) throws -> (BufferID, UInt32, UInt32) {
    let buffer = try #require(pool.take())
    let target = unsafe pool.unsafeBytes(of: buffer, offset: pool.headroom, length: payload.count)
    unsafe target.copyBytes(from: payload)
    return (buffer, UInt32(pool.headroom), UInt32(payload.count))
}

/// Writes `bytes` into a header slot. - Returns: the count, as `TxBatch.append`'s closure must.
func writeHeader(_ bytes: [UInt8], into slot: UnsafeMutableRawBufferPointer) -> Int {
    unsafe UnsafeMutableRawBufferPointer(rebasing: slot[0..<bytes.count]).copyBytes(from: bytes)
    return bytes.count
}

/// An Ethernet frame: dst, src, EtherType (big-endian), payload.
func ethernetFrame(dst: MACAddress, src: MACAddress, etherType: UInt16, payload: [UInt8]) -> [UInt8] {
    var frame = [UInt8]()
    frame += (0..<6).map { dst[octet: $0] }
    frame += (0..<6).map { src[octet: $0] }
    frame += [UInt8(etherType >> 8), UInt8(etherType & 0xFF)]
    return frame + payload
}

/// EtherType 0x88B5, "local experimental": no kernel protocol handles it, so test frames go nowhere.
let experimentalEtherType: UInt16 = 0x88B5

/// A 20-byte IPv4 header (no options); the raw sender's kernel fills in the checksum and total length.
func ipv4Header(protocol proto: UInt8, source: IPv4Address, destination: IPv4Address, payloadLength: Int) -> [UInt8] {
    let total = 20 + payloadLength
    return [
        0x45, 0x00, UInt8(total >> 8), UInt8(total & 0xFF),  // version 4, IHL 5, DSCP 0, total length
        0x00, 0x00, 0x40, 0x00,  // ID 0 (kernel picks), DF, fragment offset 0
        64, proto, 0x00, 0x00,  // TTL 64, protocol, checksum (kernel fills in)
        UInt8(source.value >> 24), UInt8(source.value >> 16 & 0xFF), UInt8(source.value >> 8 & 0xFF), UInt8(source.value & 0xFF),
        UInt8(destination.value >> 24), UInt8(destination.value >> 16 & 0xFF), UInt8(destination.value >> 8 & 0xFF),
        UInt8(destination.value & 0xFF),
    ]
}

/// A 40-byte IPv6 header, hop limit 64: what a raw IPv6 IPPROTO_RAW socket sends as written.
func ipv6Header(nextHeader: UInt8, source: UnderlayAddress, destination: UnderlayAddress, payloadLength: Int)
    -> [UInt8]
{
    func bytes(_ address: UnderlayAddress) -> [UInt8] {
        withUnsafeBytes(of: address.high.bigEndian) { Array($0) } + withUnsafeBytes(of: address.low.bigEndian) { Array($0) }
    }
    return [0x60, 0, 0, 0, UInt8(payloadLength >> 8), UInt8(payloadLength & 0xFF), nextHeader, 64]
        + bytes(source) + bytes(destination)
}

let loopback = UnderlayAddress(127, 0, 0, 1)
let loopbackIPv4 = IPv4Address(127, 0, 0, 1)
let loopbackIPv6 = UnderlayAddress("::1")!

/// An AF_PACKET socket bound to one interface: the kernel's side of a TAP in this namespace.
final class PacketSocket {
    /// struct sockaddr_ll (<linux/if_packet.h>), which the Glibc module does not import; 20 bytes.
    struct LinkAddress {
        var family: UInt16 = UInt16(AF_PACKET)
        var protocolBE: UInt16 = UInt16(0x0003).bigEndian  // ETH_P_ALL
        var ifindex: Int32 = 0
        var hatype: UInt16 = 0
        var pkttype: UInt8 = 0
        var halen: UInt8 = 0
        var addr: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0)
    }

    let fd: Int32
    let ifindex: Int32

    init(ifindex: Int32) throws {
        precondition(MemoryLayout<LinkAddress>.size == 20, "sockaddr_ll layout")
        self.ifindex = ifindex
        let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue), Int32(UInt16(0x0003).bigEndian))
        try #require(fd >= 0, "socket(AF_PACKET) errno \(errno)")
        self.fd = fd
        var address = LinkAddress()
        address.ifindex = ifindex
        let rc = unsafe withUnsafePointer(to: &address) { pointer in
            unsafe pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                unsafe bind(fd, sa, socklen_t(MemoryLayout<LinkAddress>.size))
            }
        }
        try #require(rc == 0, "bind(AF_PACKET) errno \(errno)")
    }

    deinit { close(fd) }

    /// Transmits `frame` out of the interface (so it reaches the TAP's descriptor).
    func send(_ frame: [UInt8]) -> Bool {
        var address = LinkAddress()
        address.ifindex = ifindex
        return unsafe frame.withUnsafeBytes { bytes in
            unsafe withUnsafePointer(to: &address) { pointer in
                unsafe pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    unsafe sendto(fd, bytes.baseAddress, bytes.count, 0, sa, socklen_t(MemoryLayout<LinkAddress>.size))
                }
            }
        } == frame.count
    }

    /// Reads frames for up to `timeoutMilliseconds` until `matching` accepts one. - Returns: that frame or nil.
    func receive(timeoutMilliseconds: Int32 = 2000, matching: ([UInt8]) -> Bool) -> [UInt8]? {
        let deadline = Date().addingTimeInterval(Double(timeoutMilliseconds) / 1000)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard unsafe poll(&pfd, 1, 100) >= 0 else { return nil }
            if pfd.revents & Int16(POLLIN) == 0 { continue }
            let count = unsafe buffer.withUnsafeMutableBytes { unsafe recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count > 0, matching(Array(buffer.prefix(count))) { return Array(buffer.prefix(count)) }
        }
        return nil
    }
}
