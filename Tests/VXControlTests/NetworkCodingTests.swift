import Testing
import VXControl
import VXPacket

func cidr(_ text: String) -> IPv4CIDR { try! IPv4CIDR(parsing: text) }
func range(_ text: String) -> IPv4Range { try! IPv4Range(parsing: text) }

/// The network methods' params and results, encoded byte for byte and decoded back.
@Suite struct NetworkCodingTests {
    @Test func networkCreateParams() throws {
        let full = try NetworkCreateParams(
            name: "net1", vni: vni(100), subnet: cidr("10.0.0.0/24"), range: range("10.0.0.100-10.0.0.199"),
            gateway: ip("10.0.0.1"), dhcp: true
        )
        let json =
            #"{"dhcp":true,"gateway":"10.0.0.1","name":"net1","range":"10.0.0.100-10.0.0.199","subnet":"10.0.0.0/24","vni":100}"#
        #expect(try encoded(full) == json)
        #expect(try decoded(NetworkCreateParams.self, json) == full)

        let minimal = try NetworkCreateParams(name: "net1", vni: vni(100), subnet: cidr("10.0.0.0/24"))
        #expect(try encoded(minimal) == #"{"dhcp":false,"name":"net1","subnet":"10.0.0.0/24","vni":100}"#)
        #expect(try decoded(NetworkCreateParams.self, #"{"name":"net1","vni":100,"subnet":"10.0.0.0/24"}"#) == minimal)
        #expect(
            try decoded(NetworkCreateParams.self, #"{"name":"net1","vni":100,"subnet":"10.0.0.0/24","gateway":null}"#)
                == minimal
        )
    }

    static let network = NetworkInfo(
        name: "net1", vni: vni(100), subnet: cidr("10.0.0.0/24"), range: range("10.0.0.2-10.0.0.254"),
        gateway: ip("10.0.0.1"), dhcp: false, ports: [name("vx3f9a1c2b")], leases: 1
    )

    @Test func networkInfoAndList() throws {
        let json =
            #"{"dhcp":false,"gateway":"10.0.0.1","leases":1,"name":"net1","ports":["vx3f9a1c2b"],"#
            + #""range":"10.0.0.2-10.0.0.254","subnet":"10.0.0.0/24","vni":100}"#
        #expect(try encoded(Self.network) == json)
        #expect(try decoded(NetworkInfo.self, json) == Self.network)

        let bare = NetworkInfo(name: "n2", vni: vni(7), subnet: cidr("192.168.0.0/30"), range: range("192.168.0.1-192.168.0.2"))
        let bareJSON =
            #"{"dhcp":false,"leases":0,"name":"n2","ports":[],"range":"192.168.0.1-192.168.0.2","subnet":"192.168.0.0/30","vni":7}"#
        #expect(try encoded(bare) == bareJSON)
        #expect(try decoded(NetworkInfo.self, bareJSON) == bare)

        let list = NetworkListResult(networks: [Self.network, bare])
        #expect(try encoded(list) == #"{"networks":["# + json + "," + bareJSON + "]}")
        #expect(try decoded(NetworkListResult.self, try encoded(list)) == list)
    }

    @Test func networkRemoveParams() throws {
        #expect(try encoded(NetworkRemoveParams(name: "net1")) == #"{"name":"net1"}"#)
        #expect(try decoded(NetworkRemoveParams.self, #"{"name":"net1"}"#) == NetworkRemoveParams(name: "net1"))
    }

    struct AttachCase: Sendable, CustomTestStringConvertible {
        let params: AttachParams
        let json: String
        var testDescription: String { json }
    }

    static let attachCases: [AttachCase] = [
        AttachCase(
            params: try! AttachParams(network: "net1", container: .netns("c1"), ip: .auto),
            json: #"{"ifname":"eth0","ip":"auto","netns":"c1","network":"net1"}"#
        ),
        AttachCase(
            params: try! AttachParams(
                network: "net1", container: .pid(4242), ifname: name("eth1"), ip: .address(cidr("10.0.0.5/24")),
                mac: mac("02:00:00:00:00:05"), mtu: 9000, gateway: ip("10.0.0.1")
            ),
            json:
                #"{"gateway":"10.0.0.1","ifname":"eth1","ip":"10.0.0.5/24","mac":"02:00:00:00:00:05","mtu":9000,"#
                + #""network":"net1","pid":4242}"#
        ),
        AttachCase(
            params: try! AttachParams(network: "net1", container: .docker("web")),
            json: #"{"docker":"web","ifname":"eth0","network":"net1"}"#
        ),
    ]

    @Test(arguments: attachCases)
    func attachParamsFlattenTheContainer(_ testCase: AttachCase) throws {
        #expect(try encoded(testCase.params) == testCase.json)
        #expect(try decoded(AttachParams.self, testCase.json) == testCase.params)
    }

    @Test func attachParamsDefaultToEth0AndNoAddress() throws {
        let params = try decoded(AttachParams.self, #"{"network":"net1","netns":"c1"}"#)
        #expect(params.ifname == InterfaceName.eth0)
        #expect(params.ip == nil)
        #expect(params.mac == nil && params.mtu == nil && params.gateway == nil)
        #expect(params.container == .netns("c1"))
    }

    static let attachment = AttachmentInfo(
        port: name("vx3f9a1c2b"), network: "net1", vni: vni(100), container: .netns("c1"),
        namespace: "/run/netns/c1", ifname: name("eth0"), ip: "10.0.0.100/24", mac: mac("02:5e:3f:9a:1c:2b"),
        mtu: 1450, gateway: ip("10.0.0.1")
    )
    static let attachmentJSON =
        #"{"container":{"netns":"c1"},"gateway":"10.0.0.1","ifname":"eth0","ip":"10.0.0.100/24","#
        + #""mac":"02:5e:3f:9a:1c:2b","mtu":1450,"namespace":"/run/netns/c1","network":"net1","port":"vx3f9a1c2b","vni":100}"#

    @Test func attachmentInfoNestsTheContainer() throws {
        #expect(try encoded(Self.attachment) == Self.attachmentJSON)
        #expect(try decoded(AttachmentInfo.self, Self.attachmentJSON) == Self.attachment)

        let bare = AttachmentInfo(
            port: name("vx00000001"), network: "net1", vni: vni(100), container: .pid(77), namespace: "/proc/77/ns/net",
            ifname: name("eth1"), ip: nil, mac: mac("02:00:00:00:00:01"), mtu: 1500
        )
        let bareJSON =
            #"{"container":{"pid":77},"ifname":"eth1","mac":"02:00:00:00:00:01","mtu":1500,"#
            + #""namespace":"/proc/77/ns/net","network":"net1","port":"vx00000001","vni":100}"#
        #expect(try encoded(bare) == bareJSON)
        #expect(try decoded(AttachmentInfo.self, bareJSON) == bare)
    }

    @Test func detachParamsAndResult() throws {
        let all = DetachParams(container: .netns("c1"))
        #expect(try encoded(all) == #"{"netns":"c1"}"#)
        #expect(try decoded(DetachParams.self, #"{"netns":"c1"}"#) == all)
        let one = DetachParams(container: .pid(7), ifname: name("eth1"))
        #expect(try encoded(one) == #"{"ifname":"eth1","pid":7}"#)
        #expect(try decoded(DetachParams.self, #"{"pid":7,"ifname":"eth1"}"#) == one)
        let docker = DetachParams(container: .docker("0123456789ab"))
        #expect(try decoded(DetachParams.self, #"{"docker":"0123456789ab"}"#) == docker)

        let result = DetachResult(detached: [Self.attachment])
        #expect(try encoded(result) == #"{"detached":["# + Self.attachmentJSON + "]}")
        #expect(try decoded(DetachResult.self, try encoded(result)) == result)
    }

    @Test func leasesParamsAndResult() throws {
        #expect(try encoded(LeasesParams()) == "{}")
        #expect(try decoded(LeasesParams.self, "{}") == LeasesParams())
        #expect(try encoded(LeasesParams(network: "net1")) == #"{"network":"net1"}"#)
        #expect(try decoded(LeasesParams.self, #"{"network":"net1"}"#) == LeasesParams(network: "net1"))

        let result = LeasesResult(leases: [
            LeaseInfo(network: "net1", ip: ip("10.0.0.100"), owner: "vx3f9a1c2b", kind: .static),
            LeaseInfo(network: "net1", ip: ip("10.0.0.101"), owner: "mac:02:42:ac:11:00:02", kind: .dhcp,
                      expires: 1_767_225_600),
        ])
        let json =
            #"{"leases":[{"ip":"10.0.0.100","kind":"static","network":"net1","owner":"vx3f9a1c2b"},"#
            + #"{"expires":1767225600,"ip":"10.0.0.101","kind":"dhcp","network":"net1","owner":"mac:02:42:ac:11:00:02"}]}"#
        #expect(try encoded(result) == json)
        #expect(try decoded(LeasesResult.self, json) == result)
    }

    @Test func aResultWithAnUnknownLeaseKindIsRefused() {
        #expect(throws: ControlError.self) {
            try decoded(LeaseInfo.self, #"{"ip":"10.0.0.1","kind":"leased","network":"n","owner":"x"}"#)
        }
    }

    @Test func theCatalogNamesTheNetworkMethods() {
        #expect(
            ControlMethods.networkNames == ["network-create", "network-ls", "network-rm", "attach", "detach", "leases"]
        )
        #expect(ControlMethods.allNames == ControlMethods.serviceNames + ControlMethods.networkNames)
    }
}

/// The arithmetic of subnets, ranges and the effective range.
@Suite struct NetworkValueTests {
    @Test func cidrParts() throws {
        let address = try IPv4CIDR(interfaceAddress: "10.1.2.3/20")
        #expect(address.address == ip("10.1.2.3"))
        #expect(address.prefixLength == 20)
        #expect(address.mask == ip("255.255.240.0"))
        #expect(address.network == ip("10.1.0.0"))
        #expect(address.broadcast == ip("10.1.15.255"))
        #expect(address.subnet == (try IPv4CIDR(subnet: "10.1.0.0/20")))
        #expect(address.contains(ip("10.1.15.255")) && !address.contains(ip("10.1.16.0")))
        #expect(address.containsHost(ip("10.1.0.1")) && !address.containsHost(ip("10.1.0.0")))
        #expect(address.hostRange == range("10.1.0.1-10.1.15.254"))
        #expect(address.description == "10.1.2.3/20")
    }

    struct HostRangeCase: Sendable, CustomTestStringConvertible {
        let subnet: String
        let hosts: String
        var testDescription: String { subnet }
    }

    @Test(arguments: [
        HostRangeCase(subnet: "0.0.0.0/0", hosts: "0.0.0.1-255.255.255.254"),
        HostRangeCase(subnet: "10.0.0.0/8", hosts: "10.0.0.1-10.255.255.254"),
        HostRangeCase(subnet: "10.0.0.0/30", hosts: "10.0.0.1-10.0.0.2"),
        HostRangeCase(subnet: "10.0.0.0/31", hosts: "10.0.0.0-10.0.0.1"),  // RFC 3021: both are hosts
        HostRangeCase(subnet: "10.0.0.7/32", hosts: "10.0.0.7-10.0.0.7"),
    ])
    func hostRanges(_ testCase: HostRangeCase) throws {
        #expect(try IPv4CIDR(subnet: testCase.subnet).hostRange == range(testCase.hosts))
    }

    @Test func theThreeParsersDifferOnlyInTheHostBits() throws {
        #expect(try IPv4CIDR(parsing: "10.0.0.1/24").address == ip("10.0.0.1"))
        #expect(throws: ControlError.self) { try IPv4CIDR(subnet: "10.0.0.1/24") }
        #expect(try IPv4CIDR(interfaceAddress: "10.0.0.1/24").address == ip("10.0.0.1"))
        #expect(try IPv4CIDR(parsing: "10.0.0.0/24") == (try IPv4CIDR(subnet: "10.0.0.0/24")))
        #expect(throws: ControlError.self) { try IPv4CIDR(interfaceAddress: "10.0.0.0/24") }
        #expect(try IPv4CIDR(interfaceAddress: "10.0.0.0/31").address == ip("10.0.0.0"))
        #expect(try IPv4CIDR(interfaceAddress: "10.0.0.255/32").address == ip("10.0.0.255"))
        #expect(try IPv4CIDR(subnet: "0.0.0.0/0").prefixLength == 0)
    }

    struct EffectiveRangeCase: Sendable, CustomTestStringConvertible {
        let subnet: String
        let range: String?
        let gateway: String?
        let effective: String
        var testDescription: String { "\(subnet) range \(range ?? "-") gateway \(gateway ?? "-")" }
    }

    @Test(arguments: [
        EffectiveRangeCase(subnet: "10.0.0.0/24", range: nil, gateway: nil, effective: "10.0.0.1-10.0.0.254"),
        EffectiveRangeCase(subnet: "10.0.0.0/24", range: nil, gateway: "10.0.0.1", effective: "10.0.0.2-10.0.0.254"),
        EffectiveRangeCase(subnet: "10.0.0.0/24", range: nil, gateway: "10.0.0.254", effective: "10.0.0.1-10.0.0.253"),
        // A gateway in the middle stays inside the range; the daemon never hands it out.
        EffectiveRangeCase(subnet: "10.0.0.0/24", range: nil, gateway: "10.0.0.128", effective: "10.0.0.1-10.0.0.254"),
        EffectiveRangeCase(
            subnet: "10.0.0.0/24", range: "10.0.0.100-10.0.0.199", gateway: "10.0.0.100",
            effective: "10.0.0.100-10.0.0.199"
        ),
        EffectiveRangeCase(subnet: "10.0.0.0/30", range: nil, gateway: "10.0.0.1", effective: "10.0.0.2-10.0.0.2"),
    ])
    func effectiveRange(_ testCase: EffectiveRangeCase) throws {
        let params = try NetworkCreateParams(
            name: "n", vni: vni(1), subnet: IPv4CIDR(subnet: testCase.subnet), range: testCase.range.map(range),
            gateway: testCase.gateway.map(ip)
        )
        #expect(params.effectiveRange == range(testCase.effective))
        #expect(NetworkInfo(created: params).range == range(testCase.effective))
    }

    struct AddressCase: Sendable, CustomTestStringConvertible {
        let text: String
        let address: AttachAddress?  // nil: refused
        var testDescription: String { text }
    }

    @Test(arguments: [
        AddressCase(text: "auto", address: .auto),
        AddressCase(text: "10.0.0.5/24", address: .address(cidr("10.0.0.5/24"))),
        AddressCase(text: "10.0.0.5/32", address: .address(cidr("10.0.0.5/32"))),
        AddressCase(text: "garbage", address: nil),
        AddressCase(text: "AUTO", address: nil),
        AddressCase(text: "", address: nil),
        AddressCase(text: "10.0.0.5", address: nil),
        AddressCase(text: "10.0.0.5/", address: nil),
        AddressCase(text: "10.0.0.5/33", address: nil),
        AddressCase(text: "10.0.0.0/24", address: nil),
        AddressCase(text: "10.0.0.255/24", address: nil),
    ])
    func attachAddressIsAutoOrAnInterfaceAddress(_ testCase: AddressCase) {
        let parsed = try? AttachAddress(parsing: testCase.text)
        #expect(parsed == testCase.address)
        if let parsed { #expect(parsed.description == testCase.text) }
    }

    @Test func containerReferencesRoundTripTheirDescription() throws {
        #expect(try ContainerReference(netns: "c1", pid: nil, docker: nil) == .netns("c1"))
        #expect(try ContainerReference(netns: nil, pid: 1, docker: nil) == .pid(1))
        #expect(try ContainerReference(netns: nil, pid: nil, docker: "f00dfeed1234") == .docker("f00dfeed1234"))
        #expect(ContainerReference.docker("web").description == "docker web")
        #expect(ContainerReference.pid(4242).description == "pid 4242")
        #expect(ContainerReference.netns("c1").description == "netns c1")
    }

    @Test func rangeCountAndMembership() throws {
        let r = range("10.0.0.100-10.0.0.199")
        #expect(r.count == 100)
        #expect(r.contains(ip("10.0.0.100")) && r.contains(ip("10.0.0.199")) && !r.contains(ip("10.0.0.200")))
        #expect(range("0.0.0.0-255.255.255.255").count == 1 << 32)
        #expect(range("10.0.0.5-10.0.0.5").addresses == ip("10.0.0.5")...ip("10.0.0.5"))
    }
}
