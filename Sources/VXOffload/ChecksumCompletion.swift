// Checksum completion for frames a TAP hands out with NEEDS_CSUM and no GSO.
//
// With TUNSETOFFLOAD TUN_F_CSUM the TAP advertises NETIF_F_HW_CSUM, so the kernel stops computing TCP/UDP
// checksums for packets routed out of it and leaves them CHECKSUM_PARTIAL: `csum_start` is the transport header,
// `csum_offset` the checksum field within it (16 for TCP, 6 for UDP), and the field itself holds the folded
// one's-complement sum of the pseudo-header, NOT complemented. TCP puts it there in __tcp_v4_send_check:
// `th->check = ~tcp_v4_check(skb->len, saddr, daddr, 0)`, where tcp_v4_check is csum_tcpudp_magic, the complement
// of the folded pseudo-header sum, so the double complement leaves the plain sum; IPv6 (__tcp_v6_send_check) and UDP
// (udp4_hwcsum, udp6_hwcsum) do the same. The pseudo-header length is the transport length of this skb (header plus
// all its data); NAT keeps the seed right when it rewrites addresses (inet_proto_csum_replace4 with pseudohdr).
//
// Completing it is therefore exactly the kernel's own fallback, skb_checksum_help: sum every byte from
// `csum_start` to the end of the frame, seed included, fold, complement, store at `csum_start + csum_offset`, and
// send 0x0000 as 0xFFFF (CSUM_MANGLED_0; both are zero in one's complement, but 0 means "no checksum" to UDP). The
// end is the end of the frame, as in the kernel (skb->len): frames read from a TAP carry no Ethernet padding.
//
// Hot path: one pass over the L4 bytes, in place, no allocation.

import VXPacket

/// Completes partial (CHECKSUM_PARTIAL / NEEDS_CSUM) L4 checksums in place.
public enum ChecksumCompletion {
    /// Completes the checksum of `frame` as `header` asks: does nothing unless NEEDS_CSUM is set.
    ///
    /// For GSO frames use `TCPSegmenter` instead, which computes every segment's checksum from scratch.
    /// - Parameters:
    ///   - frame: the frame after the virtio-net header, starting at the Ethernet header.
    ///   - header: the frame's virtio-net header.
    /// - Returns: nil when done (or nothing to do), `.checksumOffsetInvalid` when the offsets leave the frame.
    public static func complete(_ frame: inout MutableRawSpan, header: VirtioNetHeader) -> OffloadDropReason? {
        guard header.flags.contains(.needsChecksum) else { return nil }
        return complete(
            &frame,
            checksumStart: Int(header.checksumStart),
            checksumOffset: Int(header.checksumOffset)
        )
    }

    /// Sums `frame[checksumStart...]`, whose checksum field holds the pseudo-header sum, and stores the complement
    /// in the checksum field.
    /// - Parameters:
    ///   - frame: the whole frame; the checksum covers everything from `checksumStart` to its end.
    ///   - checksumStart: offset of the transport header (`csum_start`).
    ///   - checksumOffset: offset of the checksum field within it (`csum_offset`).
    /// - Returns: nil when done, `.checksumOffsetInvalid` when the field is not inside the frame.
    public static func complete(
        _ frame: inout MutableRawSpan,
        checksumStart: Int,
        checksumOffset: Int
    ) -> OffloadDropReason? {
        let field = checksumStart &+ checksumOffset
        guard checksumStart >= 0, checksumOffset >= 0, field <= frame.byteCount &- 2 else {
            return .checksumOffsetInvalid
        }
        let sum = InternetChecksum.sum(frame.bytes.extracting(checksumStart..<frame.byteCount))
        let checksum = ~sum
        frame.vxStoreBE16(checksum == 0 ? 0xFFFF : checksum, at: field)
        return nil
    }
}
