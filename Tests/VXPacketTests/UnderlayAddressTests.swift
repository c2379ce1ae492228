// UnderlayAddress: IPv4 and IPv6 VTEP addresses in one 128-bit value, and the IPv6 text form (RFC 4291 §2.2,
// printed per RFC 5952).

import Testing
import VXPacket

@Suite("Underlay addresses (IPv4 and IPv6)")
struct UnderlayAddressTests {
    @Test(
        "IPv6 text parses to its groups and prints in RFC 5952 form",
        arguments: [
            ("2001:db8::1", "2001:db8::1", [0x2001, 0xDB8, 0, 0, 0, 0, 0, 1]),
            ("2001:DB8:0:0:0:0:0:1", "2001:db8::1", [0x2001, 0xDB8, 0, 0, 0, 0, 0, 1]),
            ("::", "::", [0, 0, 0, 0, 0, 0, 0, 0]),
            ("::1", "::1", [0, 0, 0, 0, 0, 0, 0, 1]),
            ("fe80::", "fe80::", [0xFE80, 0, 0, 0, 0, 0, 0, 0]),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1", [0x2001, 0xDB8, 0, 1, 1, 1, 1, 1]),
            ("2001:0:0:1::1", "2001:0:0:1::1", [0x2001, 0, 0, 1, 0, 0, 0, 1]),
            ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0", [1, 2, 3, 4, 5, 6, 7, 0]),
            ("::ffff:192.0.2.1", "::ffff:c000:201", [0, 0, 0, 0, 0, 0xFFFF, 0xC000, 0x0201]),
            ("64:ff9b::198.51.100.7", "64:ff9b::c633:6407", [0x64, 0xFF9B, 0, 0, 0, 0, 0xC633, 0x6407]),
        ] as [(String, String, [UInt16])])
    func parsesIPv6(_ text: String, _ printed: String, _ groups: [UInt16]) throws {
        let address = try #require(IPv6Address(text))
        let expected = IPv6Address(
            groups[0], groups[1], groups[2], groups[3], groups[4], groups[5], groups[6], groups[7])
        #expect(address == expected)
        #expect(address.description == printed)
    }

    @Test(
        "malformed IPv6 text is refused",
        arguments: [
            "", ":", ":::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "1::2::3", "12345::1", "g::1", ":1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:", "1::2:3:4:5:6:7:8", "::1.2.3", "::1.2.3.4:5", "1.2.3.4::", "fe80::1%eth0", "2001:db8::/64",
            " ::1", "::1 ", "1:2:3:4:5:6:1.2.3.4:8",
        ])
    func refusesMalformedIPv6(_ text: String) {
        #expect(IPv6Address(text) == nil, "\"\(text)\"")
    }

    @Test("IPv4 is held in its mapped form and keeps its own text")
    func ipv4RoundTrip() throws {
        let address = try #require(UnderlayAddress("192.0.2.1"))
        #expect(address.isIPv4)
        #expect(address.ipv4 == IPv4Address(192, 0, 2, 1))
        #expect(address == UnderlayAddress(IPv4Address(192, 0, 2, 1)))
        #expect(address == UnderlayAddress(192, 0, 2, 1))
        #expect(address.description == "192.0.2.1")
        #expect(address.familyName == "IPv4")
        #expect(address.vxlanOverhead == 36)
        // The mapped IPv6 text names the same endpoint.
        #expect(UnderlayAddress("::ffff:192.0.2.1") == address)
        #expect(UnderlayAddress.any.ipv4 == IPv4Address.any)
    }

    @Test("IPv6 keeps its 128 bits and prints in RFC 5952 form")
    func ipv6RoundTrip() throws {
        let address = try #require(UnderlayAddress("2001:DB8:0::A"))
        #expect(!address.isIPv4)
        #expect(address.ipv4 == nil)
        #expect(address.ipv6 == IPv6Address(0x2001, 0xDB8, 0, 0, 0, 0, 0, 0xA))
        #expect(address.description == "2001:db8::a")
        #expect(address.familyName == "IPv6")
        #expect(address.vxlanOverhead == 56)
        // Not confused with an IPv4 address whose bits share the low word.
        #expect(UnderlayAddress("::c000:201") != UnderlayAddress("192.0.2.1"))
    }

    @Test(
        "unicast: what a VTEP can be",
        arguments: [
            ("192.0.2.1", true), ("0.0.0.0", false), ("224.0.0.1", false),
            ("2001:db8::1", true), ("fd00::1", true), ("::1", true),
            ("::", false), ("ff02::1", false), ("fe80::1", false), ("febf::1", false), ("fec0::1", true),
        ])
    func unicast(_ text: String, _ expected: Bool) throws {
        let address = try #require(UnderlayAddress(text))
        #expect(address.isUnicast == expected)
    }

    @Test(
        "loopback: 127.0.0.0/8 and ::1, and nothing else",
        arguments: [
            ("127.0.0.1", true), ("127.255.0.9", true), ("126.255.255.255", false), ("128.0.0.1", false),
            ("::1", true), ("::ffff:127.0.0.1", true), ("::2", false), ("::", false), ("1::1", false),
            ("::1:0:0:1", false), ("::7f00:1", false),
        ])
    func loopback(_ text: String, _ expected: Bool) throws {
        let address = try #require(UnderlayAddress(text))
        #expect(address.isLoopback == expected)
        if let v4 = address.ipv4 { #expect(v4.isLoopback == expected, "IPv4Address agrees") }
    }

    @Test("sorted: IPv4 before IPv6, each numerically")
    func ordering() throws {
        let texts = ["2001:db8::2", "192.0.2.10", "2001:db8::1", "192.0.2.9"]
        let sorted = texts.compactMap { UnderlayAddress($0) }.sorted().map(\.description)
        #expect(sorted == ["192.0.2.9", "192.0.2.10", "2001:db8::1", "2001:db8::2"])
    }
}
