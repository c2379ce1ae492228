/// ARP over Ethernet for IPv4 (RFC 826): the only hardware/protocol pair the switch looks into.
///
/// ```
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   HTYPE = 1 (Ethernet)        |   PTYPE = 0x0800 (IPv4)       |
/// |  HLEN = 6     |  PLEN = 4     |   OPER (1 request, 2 reply)   |
/// |             Sender hardware address (48)                      |
/// |                               | Sender protocol address (32)  |
/// |                               | Target hardware address (48)  |
/// |                                                               |
/// |             Target protocol address (32)                      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
public struct ARPPacket: Hashable, Sendable {
    /// ARP payload size for Ethernet/IPv4 in bytes.
    public static let size = 28
    /// OPER value of a request.
    public static let request: UInt16 = 1
    /// OPER value of a reply.
    public static let reply: UInt16 = 2

    /// OPER field (1 request, 2 reply; other values are passed through).
    public var operation: UInt16
    /// Sender hardware address.
    public var senderMAC: MACAddress
    /// Sender protocol address.
    public var senderIP: IPv4Address
    /// Target hardware address (zero in a request).
    public var targetMAC: MACAddress
    /// Target protocol address.
    public var targetIP: IPv4Address

    /// Builds an ARP packet value.
    @inlinable
    public init(
        operation: UInt16, senderMAC: MACAddress, senderIP: IPv4Address, targetMAC: MACAddress,
        targetIP: IPv4Address
    ) {
        self.operation = operation
        self.senderMAC = senderMAC
        self.senderIP = senderIP
        self.targetMAC = targetMAC
        self.targetIP = targetIP
    }

    /// Decodes an ARP packet (the Ethernet payload).
    /// - Parameter bytes: starts at HTYPE.
    /// - Returns: the packet, `.truncatedARP`, or `.arpUnsupportedFormat` when it is not Ethernet/IPv4.
    @inlinable
    public static func parse(_ bytes: RawSpan) -> Result<ARPPacket, PacketDropReason> {
        guard bytes.byteCount >= size else { return .failure(.truncatedARP) }
        guard bytes.vxBE16(0) == 1, bytes.vxBE16(2) == EtherType.ipv4.rawValue, bytes.vxU8(4) == 6,
            bytes.vxU8(5) == 4
        else { return .failure(.arpUnsupportedFormat) }
        return .success(
            ARPPacket(
                operation: bytes.vxBE16(6), senderMAC: bytes.vxMAC(8), senderIP: IPv4Address(value: bytes.vxBE32(14)),
                targetMAC: bytes.vxMAC(18), targetIP: IPv4Address(value: bytes.vxBE32(24))))
    }

    /// Encodes the packet at `offset`.
    /// - Parameters:
    ///   - bytes: destination; must hold `size` bytes from `offset` (traps otherwise).
    ///   - offset: where HTYPE goes.
    /// - Returns: bytes written (`size`).
    @inlinable @discardableResult
    public func write(into bytes: inout MutableRawSpan, at offset: Int = 0) -> Int {
        bytes.vxStoreBE16(1, at: offset)
        bytes.vxStoreBE16(EtherType.ipv4.rawValue, at: offset + 2)
        bytes.vxStoreU8(6, at: offset + 4)
        bytes.vxStoreU8(4, at: offset + 5)
        bytes.vxStoreBE16(operation, at: offset + 6)
        bytes.vxStoreMAC(senderMAC, at: offset + 8)
        bytes.vxStoreBE32(senderIP.value, at: offset + 14)
        bytes.vxStoreMAC(targetMAC, at: offset + 18)
        bytes.vxStoreBE32(targetIP.value, at: offset + 24)
        return ARPPacket.size
    }

    /// The packet as a whole Ethernet frame from `senderMAC` to `destination`: the control plane's requests and
    /// replies (the overlay's ARP answers, the underlay TAP's neighbour resolution). Not for the packet path: it
    /// allocates.
    /// - Parameters:
    ///   - destination: the Ethernet destination (broadcast for a request).
    ///   - vlan: the 802.1Q tag to carry, if any (a reply keeps its request's).
    /// - Returns: 42 bytes (46 with a tag), no padding: the kernel pads to the 60-byte minimum where it must.
    public func ethernetFrame(to destination: MACAddress, vlan: VLANTag? = nil) -> [UInt8] {
        let header = EthernetHeader(destination: destination, source: senderMAC, vlan: vlan, etherType: .arp)
        var bytes = [UInt8](repeating: 0, count: header.length + ARPPacket.size)
        var span = bytes.mutableSpan
        var writable = MutableRawSpan(_elements: &span)
        let offset = header.write(into: &writable)
        write(into: &writable, at: offset)
        return bytes
    }
}
