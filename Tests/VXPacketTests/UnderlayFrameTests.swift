// Sorting frames read from the underlay TAP as a host would (UnderlayFrame): ARP to the control plane, VXLAN to
// this VTEP decapsulated, everything else not ours; malformed VXLAN to this VTEP has its reason.

import Testing
import VXPacket
import VXTestSupport

@Suite("Underlay frames")
struct UnderlayFrameTests {
    static let mac = MACAddress(0x02, 0x76, 0x78, 0, 2, 1)
    static let other = MACAddress(0x02, 0, 0, 0, 0, 9)
    static let local = IPv4Address(192, 0, 2, 1)
    static let peer = IPv4Address(192, 0, 2, 2)
    static let inner = PacketBuilder.ethernet(
        destination: .broadcast, source: other, etherType: .ipv4, payload: [UInt8](repeating: 0x45, count: 46))

    static func vxlan(to mac: MACAddress = mac, destination: IPv4Address = local, port: UInt16 = 4789) -> [UInt8] {
        let packet = PacketBuilder.ipv4UDP(
            source: peer, destination: destination, sourcePort: 50000, destinationPort: port,
            payload: PacketBuilder.vxlanDatagram(vni: VNI(42)!, inner: inner), udpChecksum: false)
        return PacketBuilder.ethernet(destination: mac, source: other, etherType: .ipv4, payload: packet)
    }

    static func sort(_ frame: [UInt8], verify: Bool = true) -> Result<UnderlayFrame, PacketDropReason> {
        UnderlayFrame.classify(
            frame.span.bytes, localMAC: mac, localAddress: local, udpPort: 4789, verifyUDPChecksum: verify)
    }

    @Test("VXLAN to this VTEP is decapsulated; the inner frame's position is from the outer Ethernet header")
    func vxlanForUs() throws {
        let frame = Self.vxlan()
        #expect(
            Self.sort(frame)
                == .success(.vxlan(source: Self.peer, vni: VNI(42)!, innerOffset: 50, innerLength: Self.inner.count)))
        #expect(Array(frame[50...]) == Self.inner)
    }

    @Test("ARP is the control plane's, whatever its destination")
    func arp() {
        let request = PacketBuilder.arpRequest(senderMAC: Self.other, senderIP: Self.peer, targetIP: Self.local)
        #expect(Self.sort(request) == .success(.arp))
    }

    @Test("another MAC, another address, another port, IPv6 or a VLAN tag: not for this VTEP")
    func notOurs() {
        #expect(Self.sort(Self.vxlan(to: Self.other)) == .success(.notForThisVTEP))
        #expect(Self.sort(Self.vxlan(to: .broadcast)) == .success(.notForThisVTEP))
        #expect(Self.sort(Self.vxlan(destination: IPv4Address(192, 0, 2, 3))) == .success(.notForThisVTEP))
        #expect(Self.sort(Self.vxlan(port: 4790)) == .success(.notForThisVTEP))
        let ipv6 = PacketBuilder.ethernet(
            destination: Self.mac, source: Self.other, etherType: .ipv6, payload: [UInt8](repeating: 0x60, count: 60))
        #expect(Self.sort(ipv6) == .success(.notForThisVTEP))
        let tagged = PacketBuilder.ethernet(
            destination: Self.mac, source: Self.other, vlan: VLANTag(id: 5), etherType: .ipv4,
            payload: Array(Self.vxlan()[14...]))
        #expect(Self.sort(tagged) == .success(.notForThisVTEP))
    }

    @Test("malformed VXLAN to this VTEP has its reason; every truncation is handled")
    func malformed() {
        var badChecksum = Self.vxlan()
        badChecksum[14 + 10] ^= 0xFF
        #expect(Self.sort(badChecksum) == .failure(.ipv4BadChecksum))
        var noIFlag = Self.vxlan()
        noIFlag[42] = 0
        #expect(Self.sort(noIFlag) == .failure(.vxlanIFlagClear))
        let frame = Self.vxlan()
        for length in 0..<frame.count {
            // Never a trap, never a VXLAN packet with a cut inner frame.
            if case .success(.vxlan(_, _, let offset, let innerLength)) = Self.sort(Array(frame.prefix(length))) {
                #expect(offset + innerLength <= length)
            }
        }
        #expect(Self.sort([]) == .failure(.truncatedEthernet))
    }
}
