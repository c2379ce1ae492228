// What a frame read from the underlay TAP is to the switch that owns a VTEP address on it.
//
// With `vxswitchd --underlay-tap` the switch is a host on the underlay segment: the TAP is bridged to the uplink,
// and the switch has its own MAC and IPv4 address there (the kernel does not). So every frame of the segment that
// the bridge floods or forwards to the TAP arrives here, and the switch sorts them as a host's NIC driver and IP
// stack would: ARP goes to the control plane (neighbor resolution, answers for our address), VXLAN to our address
// and port is decapsulated, everything else is not ours.

/// One frame read from the underlay TAP, sorted.
public enum UnderlayFrame: Hashable, Sendable {
    /// An ARP packet (any destination MAC): the control plane's.
    case arp
    /// A VXLAN packet for this VTEP: the sender's address, the VNI, and where the inner Ethernet frame is, from the
    /// start of the outer Ethernet header.
    case vxlan(source: IPv4Address, vni: VNI, innerOffset: Int, innerLength: Int)
    /// Not addressed to this VTEP (another host's unicast, broadcast IP, IPv6, 802.1Q...): a host ignores it.
    case notForThisVTEP

    /// Sorts `frame` (starting at the outer Ethernet header).
    /// - Parameters:
    ///   - frame: the frame after the virtio-net header.
    ///   - localMAC: the switch's underlay MAC.
    ///   - localAddress: the switch's VTEP address.
    ///   - udpPort: the VXLAN port it listens on.
    ///   - verifyUDPChecksum: check a non-zero outer UDP checksum (false when the kernel marked it partial).
    /// - Returns: the kind, or why a frame addressed to this VTEP is malformed (a PacketDropReason of the outer
    ///   IPv4, UDP or VXLAN header).
    public static func classify(
        _ frame: RawSpan, localMAC: MACAddress, localAddress: IPv4Address, udpPort: UInt16,
        verifyUDPChecksum: Bool
    ) -> Result<UnderlayFrame, PacketDropReason> {
        let ethernet: EthernetHeader
        switch EthernetHeader.parse(frame) {
        case .success(let header): ethernet = header
        case .failure(let reason): return .failure(reason)
        }
        guard ethernet.vlan == nil else { return .success(.notForThisVTEP) }
        if ethernet.etherType == .arp { return .success(.arp) }
        guard ethernet.etherType == .ipv4, ethernet.destination == localMAC else { return .success(.notForThisVTEP) }
        let packet = frame.extracting(ethernet.length..<frame.byteCount)
        // The destination address first: a host drops another address's packet without judging its headers.
        guard packet.byteCount >= IPv4Header.minimumSize,
            IPv4Address(value: packet.vxBE32(16)) == localAddress, packet.vxU8(9) == IPProtocol.udp.rawValue
        else { return .success(.notForThisVTEP) }
        switch TunnelDecap.vxlanIPv4(packet, udpDestinationPort: udpPort, verifyUDPChecksum: verifyUDPChecksum) {
        case .failure(.udpWrongPort):
            return .success(.notForThisVTEP)
        case .failure(let reason):
            return .failure(reason)
        case .success(let decap):
            return .success(
                .vxlan(
                    source: decap.ipv4.source, vni: decap.vni, innerOffset: ethernet.length + decap.innerOffset,
                    innerLength: decap.innerLength))
        }
    }
}
