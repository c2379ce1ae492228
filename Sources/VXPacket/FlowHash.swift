// Flow hash over an inner Ethernet frame: picks the VXLAN UDP source port (RFC 7348 §5 entropy) and can spread
// flows over workers.
//
// Input words: both MACs and the EtherType (and the 802.1Q VLAN id when tagged); for IPv4 and IPv6 the
// addresses and the protocol; for TCP and UDP the ports, unless the packet is a non-first fragment (which has no
// ports; a first fragment does carry them, as in OVS `flow_extract`). Each word goes through one round of
// xor-multiply-xorshift, and a murmur3 `fmix64` finalises, so every input bit reaches the high 32 bits returned.
// Cost: at most ~8 multiplies and a few bounded loads; no allocation, no branches on data beyond the header walk.
//
// Stability contract: for a given seed the hash of a frame never changes across processes, runs or hosts
// (loads use an explicit little-endian order), so tunnel source ports stay put across restarts. Changing the
// algorithm or `defaultSeed` is a visible change (the pinned value in the tests will fail).

/// A fast, seeded, process-stable hash of an inner frame's flow identity.
public enum FlowHash {
    /// The default seed (the 64-bit golden ratio): fixed so hashes are stable across processes.
    public static let defaultSeed: UInt64 = 0x9E37_79B9_7F4A_7C15

    @usableFromInline static let multiplier: UInt64 = 0x9FB2_1C65_1E98_DF25

    @inlinable @inline(__always)
    static func round(_ state: UInt64, _ word: UInt64) -> UInt64 {
        let h = (state ^ word) &* multiplier
        return h ^ (h >> 29)
    }

    @inlinable @inline(__always)
    static func finalize(_ state: UInt64) -> UInt64 {
        var h = state
        h ^= h >> 33
        h &*= 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        h &*= 0xC4CE_B9FE_1A85_EC53
        h ^= h >> 33
        return h
    }

    /// Hashes the flow identity of an Ethernet frame.
    /// - Parameters:
    ///   - frame: the inner Ethernet frame; any length (short or malformed frames hash what is there).
    ///   - seed: the seed; the default is fixed for cross-process stability.
    /// - Returns: a 32-bit hash; equal for frames of the same flow.
    @inlinable
    public static func hash(frame: RawSpan, seed: UInt64 = defaultSeed) -> UInt32 {
        let count = frame.byteCount
        guard count >= EthernetHeader.size else {
            return UInt32(truncatingIfNeeded: finalize(round(seed, UInt64(count))) >> 32)
        }
        // Destination MAC and the first two octets of the source; then the rest of the source and the type.
        var h = round(seed, frame.vxLE64(0))
        var etherType = frame.vxBE16(12)
        h = round(h, UInt64(frame.vxLE32(8)) | UInt64(etherType) << 32)
        var l3 = EthernetHeader.size
        if etherType == EtherType.vlan.rawValue, count >= EthernetHeader.taggedSize {
            etherType = frame.vxBE16(16)
            h = round(h, UInt64(frame.vxBE16(14) & 0x0FFF) | UInt64(etherType) << 16)
            l3 = EthernetHeader.taggedSize
        }
        if etherType == EtherType.ipv4.rawValue, count - l3 >= IPv4Header.minimumSize {
            let headerLength = Int(frame.vxU8(l3) & 0x0F) * 4
            let proto = frame.vxU8(l3 + 9)
            h = round(h, frame.vxLE64(l3 + 12))
            var word = UInt64(proto)
            let notLaterFragment = frame.vxBE16(l3 + 6) & 0x1FFF == 0
            if notLaterFragment, proto == IPProtocol.tcp.rawValue || proto == IPProtocol.udp.rawValue,
                headerLength >= IPv4Header.minimumSize, count - l3 - headerLength >= 4
            {
                word |= UInt64(frame.vxLE32(l3 + headerLength)) << 8
            }
            h = round(h, word)
        } else if etherType == EtherType.ipv6.rawValue, count - l3 >= IPv6Header.size {
            h = round(h, frame.vxLE64(l3 + 8))
            h = round(h, frame.vxLE64(l3 + 16))
            h = round(h, frame.vxLE64(l3 + 24))
            h = round(h, frame.vxLE64(l3 + 32))
            let packet = frame.extracting(l3...)
            if case .success(let location) = IPv6Header.findTransport(in: packet) {
                var word = UInt64(location.protocol.rawValue)
                if location.hasTransportHeader, location.protocol == .tcp || location.protocol == .udp,
                    packet.byteCount - location.offset >= 4
                {
                    word |= UInt64(packet.vxLE32(location.offset)) << 8
                }
                h = round(h, word)
            } else {
                h = round(h, UInt64(frame.vxU8(l3 + 6)))
            }
        }
        return UInt32(truncatingIfNeeded: finalize(h) >> 32)
    }
}
