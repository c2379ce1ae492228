import Testing
import VXControl

/// Network-method params that must be refused, with the exact message a person sees (code -32602 every time).
@Suite struct NetworkValidationTests {
    typealias Case = ValidationTests.Case

    private static let net = #""name":"net1","vni":100"#

    static let networkCreateCases: [Case] = [
        // subnet: syntax, prefix, host bits, size
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0"}"#,
             message: #""10.0.0.0" is not an IPv4 subnet (e.g. 10.0.0.0/24)"#),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0/24"}"#,
             message: #""10.0.0/24" is not an IPv4 subnet (e.g. 10.0.0.0/24)"#),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/"}"#,
             message: #""10.0.0.0/" is not an IPv4 subnet (e.g. 10.0.0.0/24)"#),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/24/8"}"#,
             message: #""10.0.0.0/24/8" is not an IPv4 subnet (e.g. 10.0.0.0/24)"#),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/+8"}"#,
             message: #""10.0.0.0/+8" is not an IPv4 subnet (e.g. 10.0.0.0/24)"#),
        Case(method: "network-create", params: #"{\#(net),"subnet":"010.0.0.0/8"}"#,
             message: #""010.0.0.0/8" is not an IPv4 subnet (e.g. 10.0.0.0/24)"#),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/33"}"#,
             message: "prefix length 33 of 10.0.0.0/33 is out of range (0-32)"),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.1/24"}"#,
             message: "10.0.0.1/24 is not a network address (did you mean 10.0.0.0/24?)"),
        Case(method: "network-create", params: #"{\#(net),"subnet":"172.16.5.4/12"}"#,
             message: "172.16.5.4/12 is not a network address (did you mean 172.16.0.0/12?)"),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/31"}"#,
             message: "subnet 10.0.0.0/31 is too small for a network (at most /30)"),
        Case(method: "network-create", params: #"{\#(net),"subnet":24}"#, message: #"parameter "subnet" must be a string"#),
        Case(method: "network-create", params: #"{\#(net)}"#, message: #"missing parameter "subnet""#),
        // range
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/24","range":"10.0.0.100"}"#,
             message: #""10.0.0.100" is not an address range (e.g. 10.0.0.100-10.0.0.199)"#),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/24","range":"10.0.0.100-"}"#,
             message: #""10.0.0.100-" is not an address range (e.g. 10.0.0.100-10.0.0.199)"#),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/24","range":"10.0.1.1-10.0.1.9"}"#,
             message: "range 10.0.1.1-10.0.1.9 is not inside subnet 10.0.0.0/24"),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/24","range":"10.0.0.200-10.0.1.5"}"#,
             message: "range 10.0.0.200-10.0.1.5 is not inside subnet 10.0.0.0/24"),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/24","range":"10.0.0.199-10.0.0.100"}"#,
             message: "range 10.0.0.199-10.0.0.100 is reversed (10.0.0.199 comes after 10.0.0.100)"),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/24","range":"10.0.0.0-10.0.0.9"}"#,
             message: "range 10.0.0.0-10.0.0.9 includes the network address of subnet 10.0.0.0/24"),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/24","range":"10.0.0.200-10.0.0.255"}"#,
             message: "range 10.0.0.200-10.0.0.255 includes the broadcast address of subnet 10.0.0.0/24"),
        // gateway
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/24","gateway":"10.0.1.1"}"#,
             message: "gateway 10.0.1.1 is not inside subnet 10.0.0.0/24"),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/24","gateway":"10.0.0.0"}"#,
             message: "gateway 10.0.0.0 is the network address of subnet 10.0.0.0/24"),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/24","gateway":"10.0.0.255"}"#,
             message: "gateway 10.0.0.255 is the broadcast address of subnet 10.0.0.0/24"),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/24","gateway":"gw"}"#,
             message: #""gw" is not an IPv4 address"#),
        Case(
            method: "network-create",
            params: #"{\#(net),"subnet":"10.0.0.0/24","gateway":"10.0.0.9","range":"10.0.0.9-10.0.0.9"}"#,
            message: "range 10.0.0.9-10.0.0.9 holds nothing but the gateway"
        ),
        // name, vni, dhcp, unknown members
        Case(method: "network-create", params: #"{"name":"","vni":1,"subnet":"10.0.0.0/24"}"#,
             message: "network name must not be empty"),
        Case(method: "network-create", params: #"{"name":"abcdefghijklmnopqrstuvwxyz0123456","vni":1,"subnet":"10.0.0.0/24"}"#,
             message: #"network name "abcdefghijklmnopqrstuvwxyz0123456" is too long (33 characters, at most 32)"#),
        Case(method: "network-create", params: #"{"name":"my net","vni":1,"subnet":"10.0.0.0/24"}"#,
             message: #"network name "my net" may contain only letters, digits, '_', '.' and '-'"#),
        Case(method: "network-create", params: #"{"name":"nét","vni":1,"subnet":"10.0.0.0/24"}"#,
             message: #"network name "nét" may contain only letters, digits, '_', '.' and '-'"#),
        Case(method: "network-create", params: #"{"name":"a/b","vni":1,"subnet":"10.0.0.0/24"}"#,
             message: #"network name "a/b" may contain only letters, digits, '_', '.' and '-'"#),
        Case(method: "network-create", params: #"{"name":"-net","vni":1,"subnet":"10.0.0.0/24"}"#,
             message: #"network name "-net" must not start with '-'"#),
        Case(method: "network-create", params: #"{"name":"..","vni":1,"subnet":"10.0.0.0/24"}"#,
             message: #"network name ".." is reserved"#),
        Case(method: "network-create", params: #"{"name":"n","vni":16777216,"subnet":"10.0.0.0/24"}"#,
             message: "VNI 16777216 is out of range (0-16777215)"),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/24","dhcp":"yes"}"#,
             message: #"parameter "dhcp" must be true or false"#),
        Case(method: "network-create", params: #"{\#(net),"subnet":"10.0.0.0/24","gw":"10.0.0.1"}"#,
             message: #"unknown parameter "gw" (accepted: name, vni, subnet, range, gateway, dhcp)"#),
        // network-rm, network-ls
        Case(method: "network-rm", params: "{}", message: #"missing parameter "name""#),
        Case(method: "network-rm", params: #"{"name":"-rf"}"#, message: #"network name "-rf" must not start with '-'"#),
        Case(method: "network-ls", params: #"{"all":true}"#, message: #"unknown parameter "all" (this method takes none)"#),
    ]

    private static let attach = #""network":"net1""#

    static let attachCases: [Case] = [
        // the container: exactly one reference, each valid
        Case(method: "attach", params: #"{\#(attach)}"#, message: "give exactly one of netns, pid or docker"),
        Case(method: "attach", params: #"{\#(attach),"netns":null}"#, message: "give exactly one of netns, pid or docker"),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","pid":5}"#,
             message: "give exactly one of netns, pid or docker (got netns and pid)"),
        Case(method: "attach", params: #"{\#(attach),"pid":5,"docker":"web"}"#,
             message: "give exactly one of netns, pid or docker (got pid and docker)"),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","pid":5,"docker":"web"}"#,
             message: "give exactly one of netns, pid or docker (got netns, pid and docker)"),
        Case(method: "attach", params: #"{\#(attach),"netns":""}"#, message: "namespace name must not be empty"),
        Case(method: "attach", params: #"{\#(attach),"netns":"/run/netns/c1"}"#,
             message: #"namespace name "/run/netns/c1" must not contain '/' (give a name under /run/netns)"#),
        Case(method: "attach", params: #"{\#(attach),"netns":".."}"#, message: #"namespace name ".." is reserved"#),
        Case(method: "attach", params: #"{\#(attach),"pid":0}"#, message: "PID 0 is out of range (1-2147483647)"),
        Case(method: "attach", params: #"{\#(attach),"pid":-4}"#, message: "PID -4 is out of range (1-2147483647)"),
        Case(method: "attach", params: #"{\#(attach),"pid":2147483648}"#,
             message: "PID 2147483648 is out of range (1-2147483647)"),
        Case(method: "attach", params: #"{\#(attach),"pid":"42"}"#, message: #"parameter "pid" must be an integer"#),
        Case(method: "attach", params: #"{\#(attach),"docker":""}"#, message: "Docker container name must not be empty"),
        Case(method: "attach", params: #"{\#(attach),"docker":"-web"}"#,
             message: #"Docker container "-web" is not a container name or id (/?[A-Za-z0-9][A-Za-z0-9_.-]*)"#),
        Case(method: "attach", params: #"{\#(attach),"docker":"web; reboot"}"#,
             message: #"Docker container "web; reboot" is not a container name or id (/?[A-Za-z0-9][A-Za-z0-9_.-]*)"#),
        // ifname
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","ifname":"eth0:1"}"#,
             message: #"interface name "eth0:1" must not contain ':'"#),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","ifname":"abcdefghijklmnop"}"#,
             message: #"interface name "abcdefghijklmnop" is too long (16 bytes, at most 15)"#),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","ifname":""}"#,
             message: "interface name must not be empty"),
        // ip: "auto" or a CIDR, nothing else
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","ip":"garbage"}"#,
             message: #"ip "garbage" is neither "auto" nor an address with a prefix length (e.g. 10.0.0.5/24)"#),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","ip":"10.0.0.5"}"#,
             message: #"ip "10.0.0.5" is neither "auto" nor an address with a prefix length (e.g. 10.0.0.5/24)"#),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","ip":"Auto"}"#,
             message: #"ip "Auto" is neither "auto" nor an address with a prefix length (e.g. 10.0.0.5/24)"#),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","ip":"10.0.0.x/24"}"#,
             message: #""10.0.0.x/24" is not an IPv4 address with a prefix length (e.g. 10.0.0.5/24)"#),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","ip":"10.0.0.5/64"}"#,
             message: "prefix length 64 of 10.0.0.5/64 is out of range (0-32)"),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","ip":"10.0.0.0/24"}"#,
             message: "10.0.0.0/24 is the network address of its subnet, not a host address"),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","ip":"10.0.0.255/24"}"#,
             message: "10.0.0.255/24 is the broadcast address of its subnet, not a host address"),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","ip":true}"#, message: #"parameter "ip" must be a string"#),
        // mac, mtu
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","mac":"02:00:00:00:00"}"#,
             message: #""02:00:00:00:00" is not a MAC address"#),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","mac":"01:00:5e:00:00:01"}"#,
             message: "MAC 01:00:5e:00:00:01 is a multicast address (an interface needs a unicast one)"),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","mac":"00:00:00:00:00:00"}"#,
             message: "MAC 00:00:00:00:00:00 cannot be an interface address"),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","mtu":67}"#, message: "MTU 67 is out of range (68-65535)"),
        // gateway
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","gateway":"10.0.0.1"}"#,
             message: "gateway 10.0.0.1 needs an address on the interface (ip)"),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","ip":"10.0.0.5/24","gateway":"10.0.1.1"}"#,
             message: "gateway 10.0.1.1 is not inside 10.0.0.0/24, the subnet of 10.0.0.5/24"),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","ip":"10.0.0.5/24","gateway":"10.0.0.5"}"#,
             message: "gateway 10.0.0.5 is the interface's own address"),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","ip":"auto","gateway":"0.0.0.0"}"#,
             message: "0.0.0.0 cannot be a gateway"),
        Case(method: "attach", params: #"{\#(attach),"netns":"c1","ip":"auto","gateway":"224.0.0.1"}"#,
             message: "224.0.0.1 cannot be a gateway"),
        // network, unknown members
        Case(method: "attach", params: #"{"netns":"c1"}"#, message: #"missing parameter "network""#),
        Case(method: "attach", params: #"{"network":"my net","netns":"c1"}"#,
             message: #"network name "my net" may contain only letters, digits, '_', '.' and '-'"#),
        Case(method: "attach", params: #"{\#(attach),"namespace":"c1"}"#,
             message: #"unknown parameter "namespace" (accepted: network, netns, pid, docker, ifname, ip, mac, mtu, gateway)"#),
    ]

    static let detachAndLeasesCases: [Case] = [
        Case(method: "detach", params: "{}", message: "give exactly one of netns, pid or docker"),
        Case(method: "detach", params: #"{"netns":"c1","docker":"web"}"#,
             message: "give exactly one of netns, pid or docker (got netns and docker)"),
        Case(method: "detach", params: #"{"pid":0}"#, message: "PID 0 is out of range (1-2147483647)"),
        Case(method: "detach", params: #"{"netns":"c1","ifname":"a b"}"#,
             message: #"interface name "a b" must not contain whitespace"#),
        Case(method: "detach", params: #"{"netns":"c1","network":"net1"}"#,
             message: #"unknown parameter "network" (accepted: netns, pid, docker, ifname)"#),
        Case(method: "leases", params: #"{"network":""}"#, message: "network name must not be empty"),
        Case(method: "leases", params: #"{"network":7}"#, message: #"parameter "network" must be a string"#),
        Case(method: "leases", params: #"{"vni":100}"#, message: #"unknown parameter "vni" (accepted: network)"#),
    ]

    /// Only the network catalog, registered by `register(networkService:)` on an empty router.
    static let router: ControlRouter = {
        var router = ControlRouter()
        router.register(networkService: AcceptingNetworkService())
        return router
    }()

    @Test(arguments: networkCreateCases + attachCases + detachAndLeasesCases)
    func invalidParamsAreRefusedWithAClearMessage(_ testCase: Case) async throws {
        let params = try ControlJSON.parse(Array(testCase.params.utf8))
        do {
            _ = try await Self.router.call(method: testCase.method, params: params)
            Issue.record("\(testCase.method) accepted \(testCase.params)")
        } catch {
            #expect(error.code == .invalidParams)
            #expect(error.message == testCase.message)
        }
    }

    static let validCases: [String] = [
        #"{"method":"network-create","params":{"name":"a","vni":0,"subnet":"0.0.0.0/0"}}"#,
        #"{"method":"network-create","params":{"name":"net_1.b-c","vni":16777215,"subnet":"192.168.0.0/30","dhcp":true}}"#,
        #"{"method":"network-create","params":{"name":"abcdefghijklmnopqrstuvwxyz012345","vni":1,"subnet":"10.0.0.0/8","range":"10.0.0.1-10.255.255.254"}}"#,
        #"{"method":"attach","params":{"network":"net1","pid":2147483647}}"#,
        #"{"method":"attach","params":{"network":"net1","docker":"f00dfeed1234","ip":"auto","gateway":"10.0.0.1"}}"#,
        #"{"method":"attach","params":{"network":"net1","netns":"c1","ip":"10.0.0.5/24","gateway":"10.0.0.1","mac":"02:AA:bb:00:00:01"}}"#,
        #"{"method":"detach","params":{"docker":"web","ifname":"eth1"}}"#,
        #"{"method":"leases"}"#,
        #"{"method":"network-ls","params":{}}"#,
    ]

    @Test(arguments: validCases)
    func validParamsAreAccepted(_ request: String) async throws {
        guard case .object(let members) = try ControlJSON.parse(Array(request.utf8)),
            case .string(let method)? = members["method"]
        else {
            Issue.record("bad fixture \(request)")
            return
        }
        _ = try await Self.router.call(method: method, params: members["params"] ?? .object([:]))
    }
}

/// A network service that accepts everything: for tests that only exercise decoding and validation.
struct AcceptingNetworkService: NetworkControlService {
    func createNetwork(_ params: NetworkCreateParams) async throws(ControlError) -> NetworkInfo {
        NetworkInfo(created: params)
    }

    func listNetworks() async throws(ControlError) -> NetworkListResult { NetworkListResult(networks: []) }

    func removeNetwork(_ params: NetworkRemoveParams) async throws(ControlError) -> EmptyResult { EmptyResult() }

    func attach(_ params: AttachParams) async throws(ControlError) -> AttachmentInfo {
        AttachmentInfo(
            port: name("vx00000001"), network: params.network, vni: vni(1), container: params.container,
            namespace: "/run/netns/x", ifname: params.ifname, ip: nil, mac: mac("02:00:00:00:00:01"), mtu: 1450
        )
    }

    func detach(_ params: DetachParams) async throws(ControlError) -> DetachResult { DetachResult(detached: []) }

    func leases(_ params: LeasesParams) async throws(ControlError) -> LeasesResult { LeasesResult(leases: []) }
}
