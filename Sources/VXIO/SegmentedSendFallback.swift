// When the kernel refuses a UDP GSO send.
//
// A GSO send (UDP_SEGMENT) asks the kernel to cut one buffer into datagrams of `segmentSize` bytes. The kernel
// refuses the whole send, with EMSGSIZE or EINVAL, when one such datagram with its IPv4 and UDP headers is larger
// than the route's MTU: GSO never fragments. A single datagram of the same size is simply fragmented (the
// senders clear DF, as the kernel's own VXLAN does). So the worker's segment size, chosen for a 1500-byte
// underlay, would drop every full-size segment on a smaller underlay (a cloud VM's 1450, a tunnel in a tunnel)
// where VXLAN used to work, slowly but correctly. The engines therefore resend a refused GSO message one
// datagram per sendmsg, without UDP_SEGMENT, and the kernel fragments those that need it.
//
// This is the slow path of a misfit configuration (give ports an MTU that fits the underlay: docs/offload.md),
// not a hot path: one syscall per datagram.

#if os(Linux)
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
internal import CVXLinux
import SystemPackage
import VXPacket

enum SegmentedSendFallback {
    /// The errnos with which the kernel refuses a GSO send whose datagrams do not fit the route's MTU.
    static func isOversizeRefusal(_ errno: Int32) -> Bool {
        errno == EMSGSIZE || errno == EINVAL
    }

    /// Sends the UDP payload `header` + `payload` as datagrams of `segmentSize` bytes (the last may be shorter),
    /// one sendmsg each, to `remote:port`.
    /// - Returns: how many datagrams the kernel took and the report of those it did not.
    @unsafe
    static func sendEach(
        fd: Int32, header: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, segmentSize: Int,
        to remote: UnderlayAddress, port: UInt16
    ) -> TransmitReport {
        var report = TransmitReport()
        let total = header.count + payload.count
        guard segmentSize > 0, total > 0 else { return report }
        var address = sockaddr_in6()
        let addressLength = unsafe SocketAddress.store(remote, port: port, into: &address)
        var vectors = unsafe (iovec(), iovec())
        var start = 0
        // Bounded: `start` grows by `segmentSize` (> 0) per pass.
        while start < total {
            let end = min(start + segmentSize, total)
            var count = 0
            unsafe withUnsafeMutableBytes(of: &vectors) { raw in
                let list = unsafe raw.bindMemory(to: iovec.self)
                // The part of [start, end) in the header, then the part in the payload.
                if start < header.count {
                    let headerEnd = min(end, header.count)
                    unsafe list[count] = iovec(
                        iov_base: UnsafeMutableRawPointer(mutating: header.baseAddress! + start),
                        iov_len: headerEnd - start)
                    count += 1
                }
                if end > header.count {
                    let from = max(start, header.count) - header.count
                    unsafe list[count] = iovec(
                        iov_base: UnsafeMutableRawPointer(mutating: payload.baseAddress! + from),
                        iov_len: end - header.count - from)
                    count += 1
                }
            }
            do {
                let outcome = try unsafe withUnsafeMutablePointer(to: &address) { name throws(Errno) in
                    try unsafe withUnsafeMutablePointer(to: &vectors) { list throws(Errno) in
                        var message = unsafe msghdr()
                        unsafe message.msg_name = UnsafeMutableRawPointer(name)
                        unsafe message.msg_namelen = addressLength
                        unsafe message.msg_iov = UnsafeMutableRawPointer(list).assumingMemoryBound(to: iovec.self)
                        unsafe message.msg_iovlen = count
                        return try Syscall.retrying { Int(unsafe sendmsg(fd, &message, Int32(MSG_DONTWAIT))) }
                    }
                }
                switch outcome {
                case .processed: report.sent += 1
                case .wouldBlock: report.count(errno: EAGAIN)
                }
            } catch {
                report.count(errno: error.rawValue)
            }
            start = end
        }
        return report
    }
}
#endif
