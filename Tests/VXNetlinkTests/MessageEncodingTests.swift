// Every request VXNetlink sends, byte for byte, against hex worked out by hand from the kernel headers
// (<linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_addr.h>), one line per structure or
// attribute, in the style of containerization's NetlinkSessionTest. Host byte order is little-endian here.
//
// Every request is stamped with sequence 1 and port id 0x12345678 ("01000000" "78563412").

import Testing
import VXPacket

@testable import VXNetlink

@Suite("Request encoding, byte for byte", .enabled(if: isLittleEndianHost, "fixtures are little-endian"))
struct MessageEncodingTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let request: NetlinkRequest
        let hex: String
        var testDescription: String { name }
    }

    static let mac = MACAddress(0x02, 0x42, 0xAC, 0x11, 0x00, 0x02)
    static let address = InterfaceAddress("10.1.2.3/24")!

    static let cases: [Case] = [
        Case(
            name: "RTM_GETLINK by name",
            request: RouteRequest.getLink(name: "eth0"),
            hex: "34000000 1200 0500 01000000 78563412"  // nlmsghdr: len 52, RTM_GETLINK, REQUEST|ACK, seq, pid
                + "00 00 0000 00000000 00000000 00000000"  // ifinfomsg: AF_UNSPEC, pad, type, index 0, flags, change
                + "0800 1d00 08000000"  // IFLA_EXT_MASK = RTEXT_FILTER_SKIP_STATS
                + "0900 0300 6574683000 000000"  // IFLA_IFNAME "eth0\0" (len 9) + 3 bytes padding
        ),
        Case(
            name: "RTM_GETLINK by index",
            request: RouteRequest.getLink(index: 7),
            hex: "28000000 1200 0500 01000000 78563412"  // nlmsghdr: len 40
                + "00 00 0000 07000000 00000000 00000000"  // ifinfomsg: index 7
                + "0800 1d00 08000000"  // IFLA_EXT_MASK
        ),
        Case(
            name: "RTM_GETLINK dump",
            request: RouteRequest.dumpLinks(),
            hex: "28000000 1200 0103 01000000 78563412"  // nlmsghdr: REQUEST|DUMP (0x301)
                + "00 00 0000 00000000 00000000 00000000"  // ifinfomsg: all zero (strict dump check)
                + "0800 1d00 08000000"  // IFLA_EXT_MASK
        ),
        Case(
            name: "RTM_NEWLINK move by fd",
            request: RouteRequest.setLinkNamespace(index: 7, to: .fileDescriptor(9)),
            hex: "28000000 1000 0500 01000000 78563412"  // nlmsghdr: len 40, RTM_NEWLINK, REQUEST|ACK
                + "00 00 0000 07000000 00000000 00000000"  // ifinfomsg: index 7, no flag change
                + "0800 1c00 09000000"  // IFLA_NET_NS_FD = 9
        ),
        Case(
            name: "RTM_NEWLINK move by pid",
            request: RouteRequest.setLinkNamespace(index: 7, to: .processID(4242)),
            hex: "28000000 1000 0500 01000000 78563412"
                + "00 00 0000 07000000 00000000 00000000"
                + "0800 1300 92100000"  // IFLA_NET_NS_PID = 4242 (0x1092)
        ),
        Case(
            name: "RTM_NEWLINK rename",
            request: RouteRequest.renameLink(index: 7, to: "eth1"),
            hex: "2c000000 1000 0500 01000000 78563412"  // nlmsghdr: len 44
                + "00 00 0000 07000000 00000000 00000000"
                + "0900 0300 6574683100 000000"  // IFLA_IFNAME "eth1\0" + padding
        ),
        Case(
            name: "RTM_NEWLINK set MAC",
            request: RouteRequest.setLinkAddress(index: 7, mac),
            hex: "2c000000 1000 0500 01000000 78563412"  // nlmsghdr: len 44
                + "00 00 0000 07000000 00000000 00000000"
                + "0a00 0100 0242ac110002 0000"  // IFLA_ADDRESS 02:42:ac:11:00:02 (len 10) + 2 bytes padding
        ),
        Case(
            name: "RTM_NEWLINK set MTU",
            request: RouteRequest.setLinkMTU(index: 7, 1400),
            hex: "28000000 1000 0500 01000000 78563412"
                + "00 00 0000 07000000 00000000 00000000"
                + "0800 0400 78050000"  // IFLA_MTU = 1400 (0x578)
        ),
        Case(
            name: "RTM_NEWLINK set master",
            request: RouteRequest.setLinkMaster(index: 7, master: 3),
            hex: "28000000 1000 0500 01000000 78563412"
                + "00 00 0000 07000000 00000000 00000000"
                + "0800 0a00 03000000"  // IFLA_MASTER = ifindex 3
        ),
        Case(
            name: "RTM_NEWLINK up",
            request: RouteRequest.setLinkUp(index: 7, true),
            hex: "20000000 1000 0500 01000000 78563412"  // nlmsghdr: len 32, no attributes
                + "00 00 0000 07000000 01000000 01000000"  // ifinfomsg: flags IFF_UP, change IFF_UP
        ),
        Case(
            name: "RTM_NEWLINK down",
            request: RouteRequest.setLinkUp(index: 7, false),
            hex: "20000000 1000 0500 01000000 78563412"
                + "00 00 0000 07000000 00000000 01000000"  // ifinfomsg: flags 0, change IFF_UP
        ),
        Case(
            name: "RTM_DELLINK",
            request: RouteRequest.deleteLink(index: 7),
            hex: "20000000 1100 0500 01000000 78563412"  // nlmsghdr: len 32, RTM_DELLINK
                + "00 00 0000 07000000 00000000 00000000"
        ),
        Case(
            name: "RTM_NEWQDISC root noqueue",
            request: RouteRequest.replaceRootQdisc(index: 7, kind: "noqueue"),
            hex: "30000000 2400 0505 01000000 78563412"  // len 48, RTM_NEWQDISC, REQUEST|ACK|REPLACE|CREATE (0x505)
                + "00 00 0000 07000000 00000000 ffffffff 00000000"  // tcmsg: index 7, handle 0, parent TC_H_ROOT
                + "0c00 0100 6e6f7175 65756500"  // TCA_KIND "noqueue\0"
        ),
        Case(
            name: "RTM_NEWADDR /24 with broadcast",
            request: RouteRequest.addAddress(index: 7, address),
            hex: "30000000 1400 0506 01000000 78563412"  // len 48, RTM_NEWADDR, REQUEST|ACK|EXCL|CREATE (0x605)
                + "02 18 00 00 07000000"  // ifaddrmsg: AF_INET, /24, flags 0, scope universe, index 7
                + "0800 0200 0a010203"  // IFA_LOCAL 10.1.2.3 (network byte order)
                + "0800 0100 0a010203"  // IFA_ADDRESS 10.1.2.3
                + "0800 0400 0a0102ff"  // IFA_BROADCAST 10.1.2.255
        ),
        Case(
            name: "RTM_NEWADDR /31 without broadcast",
            request: RouteRequest.addAddress(index: 7, InterfaceAddress("10.1.2.3/31")!),
            hex: "28000000 1400 0506 01000000 78563412"  // len 40
                + "02 1f 00 00 07000000"  // ifaddrmsg: /31
                + "0800 0200 0a010203"  // IFA_LOCAL
                + "0800 0100 0a010203"  // IFA_ADDRESS
        ),
        Case(
            name: "RTM_DELADDR",
            request: RouteRequest.deleteAddress(index: 7, address),
            hex: "28000000 1500 0500 01000000 78563412"  // len 40, RTM_DELADDR, REQUEST|ACK
                + "02 18 00 00 07000000"
                + "0800 0200 0a010203"  // IFA_LOCAL
                + "0800 0100 0a010203"  // IFA_ADDRESS
        ),
        Case(
            name: "RTM_GETADDR dump filtered by index",
            request: RouteRequest.dumpAddresses(index: 7),
            hex: "18000000 1600 0103 01000000 78563412"  // len 24, RTM_GETADDR, REQUEST|DUMP
                + "02 00 00 00 07000000"  // ifaddrmsg: AF_INET, index 7 (strict check filters on it)
        ),
        Case(
            name: "RTM_NEWROUTE default via gateway",
            request: RouteRequest.addDefaultRoute(via: IPv4Address(10, 1, 2, 1), index: 7),
            hex: "2c000000 1800 0506 01000000 78563412"  // len 44, RTM_NEWROUTE, REQUEST|ACK|EXCL|CREATE
                // rtmsg: AF_INET, dst_len 0, src_len 0, tos 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE,
                // RTN_UNICAST, flags 0
                + "02 00 00 00 fe 03 00 01 00000000"
                + "0800 0500 0a010201"  // RTA_GATEWAY 10.1.2.1
                + "0800 0400 07000000"  // RTA_OIF 7
        ),
        Case(
            name: "RTM_DELROUTE default",
            request: RouteRequest.deleteDefaultRoute(via: IPv4Address(10, 1, 2, 1)),
            hex: "24000000 1900 0500 01000000 78563412"  // len 36, RTM_DELROUTE, REQUEST|ACK
                + "02 00 00 00 fe 03 00 01 00000000"
                + "0800 0500 0a010201"  // RTA_GATEWAY
        ),
    ]

    @Test("encodes", arguments: cases)
    func encodes(_ testCase: Case) {
        let bytes = testCase.request.encoded(sequence: 1, portID: 0x1234_5678)
        #expect(bytes.hex == compact(testCase.hex))
        #expect(bytes.count % 4 == 0, "a message ends 4-byte aligned")
    }

    @Test func everyRequestAsksForAnAnswer() {
        for testCase in Self.cases {
            let flags = testCase.request.flags
            #expect(flags.contains(.request))
            #expect(flags.contains(.ack) != testCase.request.isDump, "\(testCase.name)")
        }
    }
}

@Suite("Attributes: alignment and padding", .enabled(if: isLittleEndianHost, "fixtures are little-endian"))
struct AttributeTests {
    @Test(arguments: [
        (0, "0400 0100"),  // header only: no padding
        (1, "0500 0100 aa 000000"),
        (2, "0600 0100 aaaa 0000"),
        (3, "0700 0100 aaaaaa 00"),
        (4, "0800 0100 aaaaaaaa"),
        (5, "0900 0100 aaaaaaaaaa 000000"),
    ])
    func padsToFourBytesButLengthExcludesPadding(payloadLength: Int, hex: String) {
        let attribute = NetlinkAttribute(type: 1, payload: Array(repeating: 0xAA, count: payloadLength))
        var writer = ByteWriter()
        attribute.encode(into: &writer)
        #expect(writer.bytes.hex == compact(hex))
        #expect(writer.bytes.count == attribute.encodedSize)
    }

    @Test func decodesConsecutiveAttributesAndMasksFlagBits() throws {
        // IFLA_IFNAME "lo" (len 7, 1 byte padding), then a nested-flagged IFLA_LINKINFO (0x8012) holding 4 bytes,
        // then a last attribute whose padding is missing at the end of the buffer.
        let bytes = [UInt8](hex: "0700 0300 6c6f00 00" + "0800 1280 01020304" + "0500 1000 06")
        let attributes = try #require(NetlinkAttribute.decodeAll(bytes, in: 0..<bytes.count))
        #expect(attributes.count == 3)
        #expect(attributes[0].type == LinkAttribute.name && attributes[0].stringValue == "lo")
        #expect(attributes[1].type == 18 && attributes[1].payload == [1, 2, 3, 4])
        #expect(attributes[2].type == LinkAttribute.operState && attributes[2].uint8Value == 6)
    }

    @Test(arguments: [
        "0300 0300",  // len 3 < 4
        "0900 0300 6c6f00",  // len 9 runs past the end
        "0800 0300 01020304 02",  // a trailing byte that cannot be a header
    ])
    func rejectsInconsistentLengths(hex: String) {
        let bytes = [UInt8](hex: hex)
        #expect(NetlinkAttribute.decodeAll(bytes, in: 0..<bytes.count) == nil)
    }

    @Test func typedAccessorsCheckSizes() {
        #expect(NetlinkAttribute(type: 4, payload: [1, 2, 3]).uint32Value == nil)
        #expect(NetlinkAttribute(type: 1, payload: [1, 2, 3, 4, 5]).macValue == nil)
        #expect(NetlinkAttribute(type: 1, payload: [10, 0, 0, 1]).ipv4Value == IPv4Address(10, 0, 0, 1))
        #expect(NetlinkAttribute.string(3, "eth0").stringValue == "eth0")
    }
}

@Suite("Interface addresses")
struct InterfaceAddressTests {
    @Test func parsesAndDerivesTheSubnet() throws {
        let address = try #require(InterfaceAddress("192.168.7.20/28"))
        #expect(address.address == IPv4Address(192, 168, 7, 20))
        #expect(address.prefixLength == 28)
        #expect(address.network == IPv4Address(192, 168, 7, 16))
        #expect(address.broadcast == IPv4Address(192, 168, 7, 31))
        #expect(address.contains(IPv4Address(192, 168, 7, 17)))
        #expect(!address.contains(IPv4Address(192, 168, 7, 32)))
        #expect(address.description == "192.168.7.20/28")
        #expect(InterfaceAddress("10.0.0.1/32")?.broadcast == nil)
        #expect(InterfaceAddress("0.0.0.0/0")?.netmask == 0)
    }

    @Test(arguments: ["10.0.0.1", "10.0.0.1/33", "10.0.0.1/", "/24", "10.0.0/24", "10.0.0.1/2a", "10.0.0.1/024"])
    func rejectsMalformedText(_ text: String) {
        #expect(InterfaceAddress(text) == nil)
    }
}
