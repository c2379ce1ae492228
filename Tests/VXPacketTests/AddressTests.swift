// IPv4Address's classification: the rule the daemon's argument checks and the underlay neighbour table share.

import Testing
import VXPacket

@Suite("IPv4 addresses")
struct AddressTests {
    @Test("unicast: an address one host can have", arguments: [
        ("192.0.2.1", true), ("10.0.0.0", true), ("223.255.255.255", true), ("127.0.0.1", true),
        ("0.0.0.0", false), ("224.0.0.1", false), ("239.255.255.255", false), ("240.0.0.1", false),
        ("255.255.255.255", false),
    ])
    func unicast(_ text: String, _ expected: Bool) throws {
        let address = try #require(IPv4Address(text))
        #expect(address.isUnicast == expected)
    }
}
