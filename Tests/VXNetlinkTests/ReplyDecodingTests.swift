// Decoding what the kernel sends: ACKs, errors with and without extended ACK, a link dump; and malformed or
// truncated replies, which must come back as failures, never as a crash or a wrong value.

import Testing
import VXPacket
import VXTestSupport

@testable import VXNetlink

@Suite("Reply decoding", .enabled(if: isLittleEndianHost, "fixtures are little-endian"))
struct ReplyDecodingTests {
    static let ackHex =
        "24000000 0200 0001 01000000 78563412"  // nlmsghdr: len 36, NLMSG_ERROR, NLM_F_CAPPED (0x100)
        + "00000000"  // error 0: success
        + "28000000 1000 0500 01000000 78563412"  // echoed request header (RTM_NEWLINK, 40 bytes)

    static let extendedErrorHex =
        "40000000 0200 0003 02000000 78563412"  // len 64, NLMSG_ERROR, CAPPED|ACK_TLVS (0x300), seq 2
        + "efffffff"  // error -17 (EEXIST)
        + "2c000000 1000 0500 02000000 78563412"  // echoed header of a 44-byte rename request
        + "1200 0100 69666e616d6520657869737473 00 0000"  // NLMSGERR_ATTR_MSG "ifname exists\0" (len 18) + pad
        + "0800 0200 20000000"  // NLMSGERR_ATTR_OFFS = 32 (the IFLA_IFNAME attribute)

    // Without NETLINK_CAP_ACK the whole request is echoed, and the attributes start after it.
    static let uncappedErrorHex =
        "40000000 0200 0002 03000000 78563412"  // len 64, NLMSG_ERROR, ACK_TLVS only (0x200)
        + "eaffffff"  // error -22 (EINVAL)
        + "28000000 1000 0500 03000000 78563412"  // echoed header: a 40-byte request ...
        + "00 00 0000 07000000 00000000 00000000"  // ... its ifinfomsg ...
        + "0800 0400 10000000"  // ... and its IFLA_MTU = 16
        + "0400 0100"  // NLMSGERR_ATTR_MSG with an empty payload (no text)

    static let linkDumpHex =
        // lo: ifinfomsg type ARPHRD_LOOPBACK (772), index 1, flags UP|LOOPBACK|RUNNING|LOWER_UP (0x10049)
        "44000000 1000 0200 05000000 78563412"  // len 68, RTM_NEWLINK, NLM_F_MULTI, seq 5
        + "00 00 0403 01000000 49000100 00000000"
        + "0700 0300 6c6f00 00"  // IFLA_IFNAME "lo"
        + "0800 0400 00000100"  // IFLA_MTU 65536
        + "0a00 0100 000000000000 0000"  // IFLA_ADDRESS 00:00:00:00:00:00
        + "0500 1000 00 000000"  // IFLA_OPERSTATE 0 (unknown)
        // vxt1: ARPHRD_ETHER, index 5, flags UP|BROADCAST|MULTICAST (0x1003)
        + "48000000 1000 0200 05000000 78563412"  // len 72
        + "00 00 0100 05000000 03100000 00000000"
        + "0900 0300 7678743100 000000"  // IFLA_IFNAME "vxt1"
        + "0800 0400 dc050000"  // IFLA_MTU 1500
        + "0a00 0100 020000aabbcc 0000"  // IFLA_ADDRESS 02:00:00:aa:bb:cc
        + "0500 1000 02 000000"  // IFLA_OPERSTATE 2 (down)

    static let doneHex = "14000000 0300 0200 05000000 78563412" + "00000000"  // NLMSG_DONE, MULTI, error 0

    @Test func decodesAnAck() throws {
        let messages = try NetlinkMessage.split(datagram: [UInt8](hex: Self.ackHex)).get()
        #expect(messages.count == 1)
        #expect(messages[0].type == .error && messages[0].sequence == 1 && messages[0].portID == 0x1234_5678)
        #expect(try messages[0].reply().get() == .ack(warning: nil))
    }

    @Test func decodesAnErrorWithItsExtendedAck() throws {
        let message = try NetlinkMessage.split(datagram: [UInt8](hex: Self.extendedErrorHex)).get()[0]
        let reply = try message.reply().get()
        #expect(reply == .error(KernelError(errno: 17, message: "ifname exists", attributeOffset: 32)))
    }

    @Test func findsTheExtendedAckAfterAnUncappedEcho() throws {
        let message = try NetlinkMessage.split(datagram: [UInt8](hex: Self.uncappedErrorHex)).get()[0]
        #expect(try message.reply().get() == .error(KernelError(errno: 22, message: "", attributeOffset: nil)))
    }

    @Test func decodesALinkDump() throws {
        let messages = try NetlinkMessage.split(datagram: [UInt8](hex: Self.linkDumpHex)).get()
        #expect(messages.count == 2)
        #expect(messages.allSatisfy { $0.flags.contains(.multi) && $0.sequence == 5 })
        let lo = try LinkInfo.decode(messages[0]).get()
        #expect(lo.index == 1 && lo.name == "lo" && lo.mtu == 65536 && lo.mac == .zero && lo.hardwareType == 772)
        #expect(lo.flags == [.up, .loopback, .running, .lowerUp])
        #expect(lo.operState == 0)
        let tap = try LinkInfo.decode(messages[1]).get()
        #expect(tap.index == 5 && tap.name == "vxt1" && tap.mtu == 1500)
        #expect(tap.mac == MACAddress(0x02, 0x00, 0x00, 0xAA, 0xBB, 0xCC))
        #expect(tap.isUp && !tap.flags.contains(.running) && tap.operState == 2)

        let done = try NetlinkMessage.split(datagram: [UInt8](hex: Self.doneHex)).get()[0]
        #expect(try done.reply().get() == .done(errno: 0))
    }

    @Test func decodesAnIPv4Address() throws {
        let hex =
            "3c000000 1400 0200 09000000 78563412"  // len 60, RTM_NEWADDR, MULTI
            + "02 18 80 00 07000000"  // ifaddrmsg: AF_INET, /24, IFA_F_PERMANENT, universe, index 7
            + "0800 0100 0a010203"  // IFA_ADDRESS
            + "0800 0200 0a010203"  // IFA_LOCAL
            + "0800 0400 0a0102ff"  // IFA_BROADCAST
            + "0900 0300 6574683000 000000"  // IFA_LABEL "eth0"
        let message = try NetlinkMessage.split(datagram: [UInt8](hex: hex)).get()[0]
        let address = try AddressInfo.decode(message).get()
        #expect(
            address
                == AddressInfo(
                    index: 7,
                    address: InterfaceAddress("10.1.2.3/24")!,
                    broadcast: IPv4Address(10, 1, 2, 255),
                    label: "eth0"
                )
        )
    }

    // MARK: Malformed input

    @Test(arguments: [
        ("empty datagram", ""),
        ("10 bytes, shorter than a header", "24000000 0200 0001 0100"),
        ("nlmsg_len below 16", "08000000 0200 0001 01000000 78563412"),
        ("nlmsg_len beyond the datagram", "40000000 0200 0001 01000000 78563412 00000000"),
        ("a valid message then 8 stray bytes", "14000000 0300 0200 05000000 78563412 00000000 0102030405060708"),
    ])
    func rejectsMalformedDatagrams(_ label: String, _ hex: String) {
        guard case .failure = NetlinkMessage.split(datagram: [UInt8](hex: hex)) else {
            Issue.record("\(label) was accepted")
            return
        }
    }

    @Test(arguments: [
        ("error payload of 4 bytes", "14000000 0200 0000 01000000 78563412 efffffff"),
        ("positive error code", "24000000 0200 0001 01000000 78563412 05000000" + String(repeating: "00", count: 16)),
        (
            "ACK_TLVS with an attribute running past the end",
            "2c000000 0200 0003 01000000 78563412 efffffff 28000000 1000 0500 01000000 78563412 2000 0100 6162 0000"
        ),
        (
            "uncapped echo whose length is below a header",
            "28000000 0200 0002 01000000 78563412 efffffff 04000000 1000 0500 01000000 78563412 0400 0100"
        ),
        (
            "uncapped echo longer than the message",
            "28000000 0200 0002 01000000 78563412 efffffff 80000000 1000 0500 01000000 78563412 0400 0100"
        ),
        ("NLMSG_DONE with 2 payload bytes", "12000000 0300 0200 05000000 78563412 0000"),
    ])
    func rejectsMalformedControlMessages(_ label: String, _ hex: String) throws {
        let messages = try NetlinkMessage.split(datagram: [UInt8](hex: hex)).get()
        guard case .failure = messages[0].reply() else {
            Issue.record("\(label) was accepted")
            return
        }
    }

    @Test(arguments: [
        ("ifinfomsg cut to 8 bytes", "18000000 1000 0200 05000000 78563412 00 00 0100 05000000"),
        (
            "no IFLA_IFNAME",
            "28000000 1000 0200 05000000 78563412 00 00 0100 05000000 03100000 00000000 0800 0400 dc050000"
        ),
        (
            "IFLA_MTU of 2 bytes",
            "30000000 1000 0200 05000000 78563412 00 00 0100 05000000 03100000 00000000 0700 0300 6c6f00 00 0600 0400 dc05 0000"
        ),
        (
            "attribute length 2",
            "28000000 1000 0200 05000000 78563412 00 00 0100 05000000 03100000 00000000 0200 0300 00000000"
        ),
    ])
    func rejectsMalformedLinks(_ label: String, _ hex: String) throws {
        let messages = try NetlinkMessage.split(datagram: [UInt8](hex: hex)).get()
        guard case .failure = LinkInfo.decode(messages[0]) else {
            Issue.record("\(label) was accepted")
            return
        }
    }

    /// Every prefix of a valid dump datagram either splits into whole messages or is rejected; none traps.
    @Test func everyTruncationOfADumpIsHandled() throws {
        let bytes = [UInt8](hex: Self.linkDumpHex)
        for length in 0...bytes.count {
            let prefix = Array(bytes.prefix(length))
            switch NetlinkMessage.split(datagram: prefix) {
            case .success(let messages):
                #expect(length == 68 || length == 140, "prefix of \(length) bytes accepted")
                for message in messages { _ = LinkInfo.decode(message) }
            case .failure:
                #expect(length != 68 && length != 140)
            }
        }
    }

    /// Random bytes, and valid replies with random bytes flipped, never crash the decoders.
    @Test func randomBytesNeverTrap() {
        var generator = SplitMix64(seed: 0x5EED)
        let seeds = [Self.ackHex, Self.extendedErrorHex, Self.uncappedErrorHex, Self.linkDumpHex, Self.doneHex]
            .map { [UInt8](hex: $0) }
        for round in 0..<4000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = (0..<Int.random(in: 0..<96, using: &generator)).map { _ in
                    UInt8.random(in: 0...255, using: &generator)
                }
            } else {
                bytes = seeds[round % seeds.count]
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(
                        in: 0...255,
                        using: &generator
                    )
                }
            }
            guard case .success(let messages) = NetlinkMessage.split(datagram: bytes) else { continue }
            for message in messages {
                _ = message.reply()
                _ = LinkInfo.decode(message)
                _ = AddressInfo.decode(message)
            }
        }
    }
}
