import Foundation
import VXPacket
import VXTestSupport

/// One scapy-made fixture: bytes plus the `// @key value` expectations (see tools/fixtures).
typealias Fixture = HexFixture

extension HexFixture {
    /// Tests/VXPacketTests/Fixtures.
    static let directory = resourceDirectory(in: .module)
    static let all = loadAll(from: directory)
    static func load(_ name: String) -> HexFixture { load(name, from: directory) }
    static var names: [String] { all.map(\.name) }
}

/// Decodes whatever layers our parsers understand into the same `key -> text` shape as the fixture
/// expectations, or `error` -> reason at the first rejection.
func decodeFields(_ bytes: [UInt8], kind: String, layout: GREKeyLayout? = nil) -> [String: String] {
    var f: [String: String] = [:]
    let span = bytes.span.bytes
    func ipv4Fields(_ ip: IPv4Header) {
        f["ipv4.src"] = ip.source.description
        f["ipv4.dst"] = ip.destination.description
        f["ipv4.hlen"] = String(ip.headerLength)
        f["ipv4.ttl"] = String(ip.timeToLive)
        f["ipv4.id"] = String(ip.identification)
        f["ipv4.proto"] = String(ip.protocol.rawValue)
        f["ipv4.csum"] = String(ip.headerChecksum)
        f["ipv4.totlen"] = String(ip.totalLength)
        f["ipv4.mf"] = ip.moreFragments ? "1" : "0"
        f["ipv4.df"] = ip.dontFragment ? "1" : "0"
        f["ipv4.frag"] = String(ip.fragmentOffset)
    }
    func transport(_ proto: IPProtocol, _ segment: RawSpan, checkable: Bool, pseudo: (IPProtocol, Int) -> UInt16) {
        switch proto {
        case .udp:
            switch UDPHeader.parse(segment, checkLength: checkable) {
            case .failure(let r): f["error"] = "\(r)"
            case .success(let udp):
                f["udp.sport"] = String(udp.sourcePort)
                f["udp.dport"] = String(udp.destinationPort)
                f["udp.len"] = String(udp.length)
                f["udp.csum"] = String(udp.checksum)
                if checkable {
                    let seg = segment.extracting(0..<Int(udp.length))
                    let ok = InternetChecksum.combine(pseudo(.udp, seg.byteCount), InternetChecksum.sum(seg)) == 0xFFFF
                    f["udp.csumok"] = ok ? "1" : "0"
                }
            }
        case .tcp:
            switch TCPHeader.parse(segment) {
            case .failure(let r): f["error"] = "\(r)"
            case .success(let tcp):
                f["tcp.sport"] = String(tcp.sourcePort)
                f["tcp.dport"] = String(tcp.destinationPort)
                f["tcp.seq"] = String(tcp.sequenceNumber)
                f["tcp.ack"] = String(tcp.acknowledgmentNumber)
                f["tcp.flags"] = String(tcp.flags.rawValue)
                f["tcp.win"] = String(tcp.window)
                f["tcp.csum"] = String(tcp.checksum)
                f["tcp.optlen"] = String(tcp.optionsLength)
                if checkable {
                    let ok = TCPHeader.verifyChecksum(
                        segment: segment, pseudoHeaderSum: pseudo(.tcp, segment.byteCount)) == nil
                    f["tcp.csumok"] = ok ? "1" : "0"
                }
            }
        default: break
        }
    }

    func greFields(_ gre: GREHeader, innerOffset: Int, innerLength: Int) {
        f["gre.key"] = gre.key.map { String($0) } ?? "none"
        f["gre.seq"] = gre.sequenceNumber.map { String($0) } ?? "none"
        f["gre.csumpresent"] = gre.checksumPresent ? "1" : "0"
        if gre.checksumPresent { f["gre.csum"] = String(gre.checksum) }
        f["inner.off"] = String(innerOffset)
        f["inner.len"] = String(innerLength)
        if let layout {
            switch layout.vni(forKey: gre.key, unkeyedVNI: VNI(7)!) {
            case .success(let vni): f["vni"] = String(vni.value)
            case .failure(let r): f["error"] = "\(r)"
            }
        }
    }

    if kind == "ipv6" {
        // An outer IPv6 packet carrying GRE: the raw IPv6 socket hands over what follows the IPv6 header.
        switch IPv6Header.parse(span) {
        case .failure(let r):
            f["error"] = "\(r)"
        case .success(let ip):
            f["ipv6.src"] = ip.source.description
            f["ipv6.dst"] = ip.destination.description
            f["ipv6.nh"] = String(ip.nextHeader.rawValue)
            f["ipv6.hlim"] = String(ip.hopLimit)
            f["ipv6.plen"] = String(ip.payloadLength)
            f["ipv6.fl"] = String(ip.flowLabel)
            let end = IPv6Header.size + Int(ip.payloadLength)
            switch TunnelDecap.greDatagram(span.extracting(IPv6Header.size..<end)) {
            case .failure(let r): f["error"] = "\(r)"
            case .success(let d):
                greFields(d.gre, innerOffset: IPv6Header.size + d.innerOffset, innerLength: d.innerLength)
            }
        }
        return f
    }

    if kind == "ipv4" {
        switch IPv4Header.parse(span) {
        case .failure(let r):
            f["error"] = "\(r)"
            return f
        case .success(let ip): ipv4Fields(ip)
        }
        if bytes[9] == IPProtocol.udp.rawValue {
            switch TunnelDecap.vxlanIPv4(span) {
            case .failure(let r): f["error"] = "\(r)"
            case .success(let d):
                f["udp.sport"] = String(d.udp.sourcePort)
                f["udp.dport"] = String(d.udp.destinationPort)
                f["udp.csum"] = String(d.udp.checksum)
                f["vxlan.vni"] = String(d.vni.value)
                f["inner.off"] = String(d.innerOffset)
                f["inner.len"] = String(d.innerLength)
            }
        } else {
            switch TunnelDecap.greIPv4(span) {
            case .failure(let r): f["error"] = "\(r)"
            case .success(let d): greFields(d.gre, innerOffset: d.innerOffset, innerLength: d.innerLength)
            }
        }
        return f
    }

    let eth: EthernetHeader
    switch EthernetHeader.parse(span) {
    case .failure(let r):
        f["error"] = "\(r)"
        return f
    case .success(let e): eth = e
    }
    f["eth.dst"] = eth.destination.description
    f["eth.src"] = eth.source.description
    f["eth.type"] = String(eth.etherType.rawValue)
    if let vlan = eth.vlan {
        f["eth.vlan"] = String(vlan.id)
        f["eth.pcp"] = String(vlan.priority)
    }
    let l3 = span.extracting(eth.length...)
    switch eth.etherType {
    case .arp:
        switch ARPPacket.parse(l3) {
        case .failure(let r): f["error"] = "\(r)"
        case .success(let arp):
            f["arp.op"] = String(arp.operation)
            f["arp.sha"] = arp.senderMAC.description
            f["arp.spa"] = arp.senderIP.description
            f["arp.tha"] = arp.targetMAC.description
            f["arp.tpa"] = arp.targetIP.description
        }
    case .ipv4:
        switch IPv4Header.parse(l3) {
        case .failure(let r): f["error"] = "\(r)"
        case .success(let ip):
            ipv4Fields(ip)
            guard ip.hasTransportHeader else {
                f["l4"] = "none"
                return f
            }
            transport(ip.protocol, l3.extracting(ip.headerLength..<Int(ip.totalLength)), checkable: !ip.isFragment) {
                InternetChecksum.pseudoHeaderSum(source: ip.source, destination: ip.destination, protocol: $0, length: $1)
            }
        }
    case .ipv6:
        switch IPv6Header.parse(l3) {
        case .failure(let r): f["error"] = "\(r)"
        case .success(let ip):
            f["ipv6.src"] = ip.source.description
            f["ipv6.dst"] = ip.destination.description
            f["ipv6.nh"] = String(ip.nextHeader.rawValue)
            switch IPv6Header.findTransport(in: l3) {
            case .failure(let r): f["error"] = "\(r)"
            case .success(let loc):
                f["ipv6.l4proto"] = String(loc.protocol.rawValue)
                f["ipv6.l4off"] = String(loc.offset)
                if loc.isFragment { f["ipv6.fragoff"] = String(loc.fragmentOffset) }
                guard loc.hasTransportHeader else {
                    f["l4"] = "none"
                    return f
                }
                let end = IPv6Header.size + Int(ip.payloadLength)
                transport(loc.protocol, l3.extracting(loc.offset..<end), checkable: !loc.isFragment) {
                    InternetChecksum.pseudoHeaderSum(
                        source: ip.source, destination: ip.destination, protocol: $0, length: $1)
                }
            }
        }
    default: break
    }
    return f
}
