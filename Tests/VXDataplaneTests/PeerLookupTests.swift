// The per-frame peer lookup (`DataplaneConfig.endpoint(at:)`) over both underlay families: every peer is found by
// its own address and by no other, with IPv4 peers held IPv4-mapped in the same 128-bit table as IPv6 ones.

import Testing
import VXDataplane
import VXForwarding
import VXPacket

@Suite("Peer lookup by underlay address")
struct PeerLookupTests {
    /// A config with `addresses` as VXLAN peers of one VNI, each with its template.
    static func config(peers addresses: [UnderlayAddress], local: UnderlayAddress) -> (DataplaneConfig, [PeerID]) {
        var builder = TopologyBuilder()
        let domain = builder.addDomain(vni: VNI(42)!)!
        let ids = addresses.map { builder.addPeer($0, to: domain)! }
        let topology = builder.build()
        let tunnels = zip(ids, addresses).map { id, address in
            PeerTunnel(
                peer: id, address: address, encapsulation: .vxlan, greKeyLayout: .vni, unkeyedVNI: nil,
                templates: [domain: EncapTemplate(encapsulation: .vxlan, local: local, remote: address, vni: VNI(42)!)])
        }
        return (DataplaneConfig(topology: topology, peers: tunnels), ids)
    }

    @Test("IPv6 peers: each found by its address, strangers and near misses not")
    func ipv6Peers() throws {
        // 200 peers fill the table past its first sizes; neighbours differ in one low bit or only in the high half.
        let addresses = (1...100).flatMap { i in
            [
                UnderlayAddress(IPv6Address(high: 0x2001_0DB8_0000_0000, low: UInt64(i))),
                UnderlayAddress(IPv6Address(high: 0x2001_0DB8_0000_0001, low: UInt64(i))),
            ]
        }
        let (config, ids) = Self.config(peers: addresses, local: UnderlayAddress("2001:db8::ffff")!)
        for (address, id) in zip(addresses, ids) {
            #expect(config.endpoint(at: address)?.peer == id, "\(address)")
        }
        for stranger in ["2001:db8::0", "2001:db8::65", "2001:db8:0:2::1", "::1", "0.0.0.1", "192.0.2.1"] {
            #expect(config.endpoint(at: UnderlayAddress(stranger)!) == nil, "\(stranger)")
        }
    }

    @Test("IPv4 peers in the 128-bit table: an IPv6 address with the same low bits is not one of them")
    func ipv4PeersAreNotConfusedWithIPv6() throws {
        let addresses = (1...50).map { UnderlayAddress(192, 0, 2, UInt8($0)) }
        let (config, ids) = Self.config(peers: addresses, local: UnderlayAddress(192, 0, 2, 200))
        for (address, id) in zip(addresses, ids) {
            #expect(config.endpoint(at: address)?.peer == id, "\(address)")
        }
        // ::c000:201 holds 192.0.2.1's 32 bits without the ::ffff: marker.
        #expect(config.endpoint(at: UnderlayAddress("::c000:201")!) == nil)
        #expect(config.endpoint(at: UnderlayAddress(192, 0, 2, 51)) == nil)
        #expect(config.endpoint(at: .any) == nil)
    }
}
