import Testing
import VXDHCP
import VXPacket
import VXTestSupport

@Suite("DHCP codec and frames")
struct CodecTests {
    /// A minimal valid DISCOVER: the fixed header, the cookie, option 53, END.
    static func minimalDiscover() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 240)
        bytes[0] = 1  // op
        bytes[1] = 1  // htype
        bytes[2] = 6  // hlen
        bytes[4...7] = [0xDE, 0xAD, 0xBE, 0xEF]  // xid
        bytes[28...33] = [2, 0, 0, 0, 0, 1]  // chaddr
        bytes[236...239] = [99, 130, 83, 99]  // magic cookie
        return bytes + [53, 1, 1, 255]
    }

    @Test func parsesAMinimalDiscover() throws {
        let m = try parse(Self.minimalDiscover()).get()
        #expect(m.operation == .request && m.messageType == .discover)
        #expect(m.transactionID == 0xDEAD_BEEF)
        #expect(m.clientMAC == MACAddress(2, 0, 0, 0, 0, 1))
        #expect(m.options == DHCPOptions())
        #expect(m.serverName.isEmpty && m.bootFileName.isEmpty)
    }

    static let base = Array(minimalDiscover()[..<240])
    static func with(_ index: Int, _ value: UInt8) -> [UInt8] {
        var b = minimalDiscover()
        b[index] = value
        return b
    }
    static let rejections: [(String, [UInt8], DHCPDropReason)] = [
        ("shorter than header + cookie", Array(minimalDiscover()[..<239]), .truncatedMessage),
        ("op 3", with(0, 3), .badOperation),
        ("hlen 17", with(2, 17), .badHardwareAddressLength),
        ("BOOTP vendor area", with(236, 0), .badMagicCookie),
        ("option length past the end", base + [53, 1, 1, 12, 5, 65, 66], .truncatedOption),
        ("option code without length", base + [53, 1, 1, 12], .truncatedOption),
        ("no message type", base + [12, 1, 65, 255], .missingMessageType),
        ("message type 9", base + [53, 1, 9, 255], .unknownMessageType),
        ("message type length 2", base + [53, 2, 1, 1, 255], .badOptionLength),
        ("requested address length 3", base + [53, 1, 1, 50, 3, 1, 2, 3, 255], .badOptionLength),
        ("router list length 6", base + [53, 1, 1, 3, 6, 1, 2, 3, 4, 5, 6, 255], .badOptionLength),
        ("client id length 1", base + [53, 1, 1, 61, 1, 1, 255], .badOptionLength),
        ("max size length 4", base + [53, 1, 1, 57, 4, 0, 0, 2, 64, 255], .badOptionLength),
        ("empty host name", base + [53, 1, 1, 12, 0, 255], .badOptionLength),
        ("option overload", base + [53, 1, 1, 52, 1, 3, 255], .optionOverloadUnsupported),
    ]

    @Test(arguments: rejections)
    func rejects(_ name: String, _ bytes: [UInt8], _ reason: DHCPDropReason) {
        #expect(parse(bytes).failureValue == reason, "\(name)")
    }

    @Test func toleratesPaddingAndAMissingEndAndIgnoresWhatFollowsEnd() throws {
        let base = Array(Self.minimalDiscover()[..<240])
        let noEnd = try parse(base + [0, 0, 53, 1, 3, 0]).get()
        #expect(noEnd.messageType == .request)
        let trailing = try parse(base + [53, 1, 1, 255, 12, 200]).get()
        #expect(trailing.options.hostName == nil)
    }

    @Test func repeatedOptionsAreConcatenatedAndLongValuesAreSplit() throws {
        // RFC 3396: a 300-byte host name is sent as two instances of option 12 and read back as one.
        var message = DHCPMessage(
            operation: .request,
            messageType: .discover,
            transactionID: 1,
            clientMAC: MACAddress(2, 0, 0, 0, 0, 1)
        )
        message.options.hostName = Array(repeating: UInt8(ascii: "h"), count: 300)
        let bytes = message.encoded(minimumSize: 0)
        #expect(bytes.count == 240 + 3 + (2 + 255) + (2 + 45) + 1)
        #expect(Array(bytes[243..<245]) == [12, 255] && Array(bytes[500..<502]) == [12, 45])
        #expect(try parse(bytes).get() == message)
        // Two router options become one list.
        let twoRouters = Array(Self.minimalDiscover()[..<240]) + [53, 1, 2, 3, 4, 10, 0, 0, 1, 3, 4, 10, 0, 0, 2, 255]
        #expect(
            try parse(twoRouters).get().options.routers == [
                IPv4Address(10, 0, 0, 1), IPv4Address(10, 0, 0, 2),
            ]
        )
    }

    @Test func unknownOptionsAreKeptInOrder() throws {
        let bytes = Array(Self.minimalDiscover()[..<240]) + [60, 2, 65, 66, 53, 1, 1, 43, 1, 7, 255]
        let m = try parse(bytes).get()
        #expect(m.options.other == [DHCPOption(code: 60, data: [65, 66]), DHCPOption(code: 43, data: [7])])
    }

    @Test func repliesArePaddedTo300Bytes() {
        let m = DHCPMessage(
            operation: .reply,
            messageType: .ack,
            transactionID: 1,
            clientMAC: MACAddress(2, 0, 0, 0, 0, 1)
        )
        #expect(m.encoded().count == DHCPMessage.minimumReplySize)
        #expect(m.encoded(minimumSize: 0).count == 244)
    }

    @Test func broadcastFlagAccessor() {
        var m = DHCPMessage(
            operation: .request,
            messageType: .discover,
            transactionID: 1,
            clientMAC: MACAddress(2, 0, 0, 0, 0, 1),
            flags: 0x0001
        )
        m.broadcast = true
        #expect(m.flags == 0x8001)
        m.broadcast = false
        #expect(m.flags == 0x0001)
    }

    // MARK: Frames

    static func discoverFrame(vlan: VLANTag? = nil) -> [UInt8] {
        PacketBuilder.ethernetIPv4UDP(
            destination: .broadcast,
            source: MACAddress(2, 0, 0, 0, 0, 1),
            vlan: vlan,
            sourceIP: .any,
            destinationIP: IPv4Address(value: 0xFFFF_FFFF),
            sourcePort: 68,
            destinationPort: 67,
            payload: minimalDiscover()
        )
    }

    @Test func classifiesTaggedAndUntaggedClientFrames() {
        for vlan in [nil, VLANTag(id: 42, priority: 3)] {
            let frame = Self.discoverFrame(vlan: vlan)
            #expect(isClientToServer(frame))
            guard case .client(let c) = classify(frame) else {
                Issue.record("not classified")
                continue
            }
            #expect(c.ethernet.vlan == vlan && c.message.transactionID == 0xDEAD_BEEF)
        }
    }

    @Test func ethernetPaddingAfterTheDatagramIsIgnored() {
        let frame = Self.discoverFrame() + [UInt8](repeating: 0xAB, count: 20)
        guard case .client = classify(frame) else {
            Issue.record("not classified")
            return
        }
    }

    @Test func aZeroUDPChecksumIsAcceptedAndABadOneIsNot() {
        var frame = Self.discoverFrame()
        let checksumOffset = 14 + 20 + 6
        frame[checksumOffset + 1] ^= 0x01
        #expect(classify(frame) == .malformed(.badUDPChecksum))
        frame[checksumOffset] = 0
        frame[checksumOffset + 1] = 0
        guard case .client = classify(frame) else {
            Issue.record("zero checksum rejected")
            return
        }
    }

    @Test func udpLengthLongerThanTheDatagramIsMalformed() {
        var frame = Self.discoverFrame()
        frame[14 + 20 + 4] = 0xFF
        #expect(classify(frame) == .malformed(.badUDPLength))
    }

    @Test func fragmentsAreMalformedAndLaterFragmentsAreNotDHCP() {
        var frame = Self.discoverFrame()
        frame[14 + 6] = 0x20  // MF
        frame[14 + 10] = 0
        frame[14 + 11] = 0
        mutateChecksum(&frame)
        #expect(classify(frame) == .malformed(.fragmented))
        frame[14 + 7] = 0x10  // offset 16 * 8: no UDP header
        mutateChecksum(&frame)
        #expect(classify(frame) == .notDHCP)
        #expect(!isClientToServer(frame))
    }

    private func mutateChecksum(_ frame: inout [UInt8]) {
        var span = frame.mutableSpan
        var bytes = MutableRawSpan(_elements: &span)
        IPv4Header.updateChecksum(in: &bytes, at: 14)
    }

    @Test func aBadDHCPPayloadInAGoodFrameIsMalformedWithItsReason() {
        var payload = Self.minimalDiscover()
        payload[236] = 0
        let frame = PacketBuilder.ethernetIPv4UDP(
            destination: .broadcast,
            source: MACAddress(2, 0, 0, 0, 0, 1),
            sourceIP: .any,
            destinationIP: IPv4Address(value: 0xFFFF_FFFF),
            sourcePort: 68,
            destinationPort: 67,
            payload: payload
        )
        #expect(classify(frame) == .malformed(.badMagicCookie))
    }

    @Test func reasonTablesAreDenseAndNamed() {
        #expect(DHCPDropReason.allCases.count == DHCPDropReason.count)
        #expect(DHCPDropReason.allCases.map { Int($0.rawValue) } == Array(0..<DHCPDropReason.count))
        #expect(Set(DHCPDropReason.allCases.map(\.name)).count == DHCPDropReason.count)
        #expect(DHCPNakReason.allCases.count == DHCPNakReason.count)
        #expect(DHCPNakReason.allCases.map { Int($0.rawValue) } == Array(0..<DHCPNakReason.count))
    }

    @Test func subnets() {
        let s = IPv4Subnet("10.20.0.77/24")!
        #expect(s.description == "10.20.0.0/24")
        #expect(s.mask == IPv4Address(255, 255, 255, 0) && s.broadcast == IPv4Address(10, 20, 0, 255))
        #expect(s.contains(IPv4Address(10, 20, 0, 0)) && !s.containsHost(IPv4Address(10, 20, 0, 0)))
        #expect(!s.contains(IPv4Address(10, 20, 1, 1)))
        #expect(IPv4Subnet("0.0.0.0/0")?.contains(IPv4Address(1, 2, 3, 4)) == true)
        for bad in ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "x/8", "10.0.0.0/8/8"] {
            #expect(IPv4Subnet(bad) == nil, "\(bad)")
        }
    }
}
