import Testing
import VXControl

/// Params that must be refused, with the exact message a person sees (code -32602 every time).
@Suite struct ValidationTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let method: String
        let params: String
        let message: String
        var testDescription: String { "\(method) \(params)" }
    }

    static let cases: [Case] = [
        // add-port
        Case(method: "add-port", params: #"{"name":"tap0","vni":16777216}"#,
             message: "VNI 16777216 is out of range (0-16777215)"),
        Case(method: "add-port", params: #"{"name":"tap0","vni":-1}"#, message: "VNI -1 is out of range (0-16777215)"),
        Case(method: "add-port", params: #"{"name":"tap0","vni":"100"}"#,
             message: #"parameter "vni" must be an integer"#),
        Case(method: "add-port", params: #"{"name":"tap0","vni":1.5}"#,
             message: #"parameter "vni" must be an integer"#),
        Case(method: "add-port", params: #"{"vni":1}"#, message: #"missing parameter "name""#),
        Case(method: "add-port", params: #"{"name":"tap0"}"#, message: #"missing parameter "vni""#),
        Case(method: "add-port", params: #"{"name":"","vni":1}"#, message: "interface name must not be empty"),
        Case(method: "add-port", params: #"{"name":"abcdefghijklmnop","vni":1}"#,
             message: #"interface name "abcdefghijklmnop" is too long (16 bytes, at most 15)"#),
        Case(method: "add-port", params: #"{"name":"a/b","vni":1}"#,
             message: #"interface name "a/b" must not contain '/'"#),
        Case(method: "add-port", params: #"{"name":"eth0:1","vni":1}"#,
             message: #"interface name "eth0:1" must not contain ':'"#),
        Case(method: "add-port", params: #"{"name":"tap 0","vni":1}"#,
             message: #"interface name "tap 0" must not contain whitespace"#),
        Case(method: "add-port", params: #"{"name":"..","vni":1}"#, message: #"interface name ".." is reserved"#),
        Case(method: "add-port", params: #"{"name":"tap0","vni":1,"mtu":67}"#, message: "MTU 67 is out of range (68-65535)"),
        Case(method: "add-port", params: #"{"name":"tap0","vni":1,"mtu":65536}"#,
             message: "MTU 65536 is out of range (68-65535)"),
        Case(method: "add-port", params: #"{"name":"tap0","vni":1,"mut":9000}"#,
             message: #"unknown parameter "mut" (accepted: name, vni, mtu)"#),
        Case(method: "add-port", params: #"{"name":7,"vni":1}"#, message: #"parameter "name" must be a string"#),
        // del-port
        Case(method: "del-port", params: "{}", message: #"missing parameter "name""#),
        Case(method: "del-port", params: #"{"name":null}"#, message: #"parameter "name" must be a string, not null"#),
        // add-peer
        Case(
            method: "add-peer", params: #"{"ip":"300.1.1.1","vni":1}"#,
            message: #""300.1.1.1" is not an IPv4 or IPv6 address"#),
        Case(method: "add-peer", params: #"{"ip":"0.0.0.0","vni":1}"#, message: "0.0.0.0 cannot be a peer address"),
        Case(
            method: "add-peer", params: #"{"ip":"2001:db8::1::2","vni":1}"#,
            message: #""2001:db8::1::2" is not an IPv4 or IPv6 address"#),
        Case(
            method: "add-peer", params: #"{"ip":"ff02::1","vni":1}"#,
            message: "ff02::1 cannot be a peer address (IPv6 multicast, link-local or unspecified)"),
        Case(
            method: "add-peer", params: #"{"ip":"fe80::1%eth0","vni":1}"#,
            message: #""fe80::1%eth0" is not an IPv4 or IPv6 address"#),
        Case(method: "add-peer", params: #"{"ip":"192.0.2.1","vni":1,"encap":"geneve"}"#,
             message: #"unknown encapsulation "geneve" (expected vxlan or gre)"#),
        Case(method: "add-peer", params: #"{"ip":"192.0.2.1","vni":1,"encap":"gre","greKey":"big"}"#,
             message: #"unknown GRE key mode "big" (expected vni, nvgre or none)"#),
        Case(method: "add-peer", params: #"{"ip":"192.0.2.1","vni":1,"greKey":"nvgre"}"#,
             message: #"GRE key mode "nvgre" applies only to GRE peers, not vxlan"#),
        // del-peer
        Case(method: "del-peer", params: #"{"ip":"192.0.2.1","vni":99999999}"#,
             message: "VNI 99999999 is out of range (0-16777215)"),
        Case(method: "del-peer", params: #"{"vni":1}"#, message: #"missing parameter "ip""#),
        // fdb, show, stats
        Case(method: "fdb", params: #"{"vni":16777216}"#, message: "VNI 16777216 is out of range (0-16777215)"),
        Case(method: "show", params: #"{"all":true}"#, message: #"unknown parameter "all" (this method takes none)"#),
        Case(method: "stats", params: "[]", message: "params must be an object of named members, not an array"),
    ]

    @Test(arguments: cases)
    func invalidParamsAreRefusedWithAClearMessage(_ testCase: Case) async throws {
        let router = ControlRouter(service: RecordingService())
        let params = try ControlJSON.parse(Array(testCase.params.utf8))
        do {
            _ = try await router.call(method: testCase.method, params: params)
            Issue.record("\(testCase.method) accepted \(testCase.params)")
        } catch {
            #expect(error.code == .invalidParams)
            #expect(error.message == testCase.message)
        }
    }

    @Test(arguments: ["tap0", "a", "abcdefghijklmno", "vx-100.1_b", "tæp"])
    func validInterfaceNames(_ text: String) throws {
        #expect(try InterfaceName(validating: text).value == text)
    }

    @Test func vniTextFromTheCommandLine() throws {
        #expect(try ControlValidation.vni("16777215").value == 16_777_215)
        #expect(throws: ControlError.self) { try ControlValidation.vni("0x10") }
        #expect(throws: ControlError.self) { try ControlValidation.vni("") }
    }
}

/// A service that accepts everything and records nothing: for tests that only exercise decoding.
struct RecordingService: ControlService {
    func addPort(_ params: AddPortParams) async throws(ControlError) -> PortInfo {
        PortInfo(name: params.name, vni: params.vni, mtu: params.mtu ?? 1450)
    }

    func deletePort(_ params: DeletePortParams) async throws(ControlError) -> EmptyResult { EmptyResult() }

    func addPeer(_ params: AddPeerParams) async throws(ControlError) -> PeerInfo {
        PeerInfo(ip: params.ip, encapsulation: params.encapsulation, vnis: [params.vni])
    }

    func deletePeer(_ params: DeletePeerParams) async throws(ControlError) -> EmptyResult { EmptyResult() }

    func show() async throws(ControlError) -> ShowResult { ShowResult(ports: [], peers: [], vnis: []) }

    func fdb(_ params: FDBParams) async throws(ControlError) -> FDBResult { FDBResult(entries: []) }

    func stats() async throws(ControlError) -> StatsResult { StatsResult(ports: [], peers: [], drops: [:]) }
}

extension ValidationTests {
    static let numberCases: [Case] = [
        Case(method: "add-port", params: #"{"name":"tap0","vni":1,"mtu":"9000"}"#,
             message: #"parameter "mtu" must be an integer"#),
        Case(method: "add-port", params: #"{"name":"tap0","vni":1,"mtu":68.5}"#,
             message: #"parameter "mtu" must be an integer"#),
        Case(method: "add-port", params: #"{"name":"tap0","vni":18446744073709551615}"#,
             message: #"parameter "vni" is too large (18446744073709551615)"#),
        Case(method: "add-port", params: #"{"name":"tap0","vni":null}"#,
             message: #"parameter "vni" must be an integer, not null"#),
        Case(method: "fdb", params: #"{"vni":true}"#, message: #"parameter "vni" must be an integer"#),
    ]

    @Test(arguments: numberCases)
    func numbersMustBeIntegersInRange(_ testCase: Case) async throws {
        try await invalidParamsAreRefusedWithAClearMessage(testCase)
    }
}
