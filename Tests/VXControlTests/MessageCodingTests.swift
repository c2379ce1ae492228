import Foundation
import Testing
import VXControl
import VXPacket

func encoded(_ value: some Encodable) throws -> String {
    String(decoding: try ControlJSON.encodeLine(value), as: UTF8.self)
}

func decoded<T: Decodable>(_ type: T.Type, _ json: String) throws(ControlError) -> T {
    try ControlJSON.decode(T.self, from: try ControlJSON.parse(Array(json.utf8)))
}

func name(_ text: String) -> InterfaceName { try! InterfaceName(validating: text) }
func vni(_ value: Int) -> VNI { VNI(value)! }
func ip(_ text: String) -> IPv4Address { IPv4Address(text)! }
func vtep(_ text: String) -> UnderlayAddress { UnderlayAddress(text)! }
func mac(_ text: String) -> MACAddress { MACAddress(text)! }

/// Every params and result type, encoded byte for byte and decoded back.
@Suite struct MessageCodingTests {
    @Test func addPortParams() throws {
        let full = try AddPortParams(name: name("tap0"), vni: vni(100), mtu: 9000)
        #expect(try encoded(full) == #"{"mtu":9000,"name":"tap0","vni":100}"#)
        #expect(try decoded(AddPortParams.self, #"{"name":"tap0","vni":100,"mtu":9000}"#) == full)
        let noMTU = try AddPortParams(name: name("tap0"), vni: vni(100))
        #expect(try encoded(noMTU) == #"{"name":"tap0","vni":100}"#)
        #expect(try decoded(AddPortParams.self, #"{"name":"tap0","vni":100,"mtu":null}"#) == noMTU)
    }

    @Test func deletePortParams() throws {
        #expect(try encoded(DeletePortParams(name: name("tap9"))) == #"{"name":"tap9"}"#)
        #expect(try decoded(DeletePortParams.self, #"{"name":"tap9"}"#) == DeletePortParams(name: name("tap9")))
    }

    @Test func addPeerParamsDefaultToVXLANAndGREKeyVNI() throws {
        let vxlan = AddPeerParams(ip: vtep("192.0.2.2"), vni: vni(100))
        #expect(try encoded(vxlan) == #"{"encap":"vxlan","ip":"192.0.2.2","vni":100}"#)
        #expect(try decoded(AddPeerParams.self, #"{"ip":"192.0.2.2","vni":100}"#) == vxlan)

        let gre = AddPeerParams(ip: vtep("192.0.2.3"), vni: vni(7), encapsulation: .gre(key: .vni))
        #expect(try decoded(AddPeerParams.self, #"{"ip":"192.0.2.3","vni":7,"encap":"gre"}"#) == gre)
        #expect(try encoded(gre) == #"{"encap":"gre","greKey":"vni","ip":"192.0.2.3","vni":7}"#)

        let nvgre = AddPeerParams(ip: vtep("192.0.2.3"), vni: vni(7), encapsulation: .gre(key: .nvgre))
        #expect(try decoded(AddPeerParams.self, #"{"ip":"192.0.2.3","vni":7,"encap":"gre","greKey":"nvgre"}"#) == nvgre)
    }

    @Test func deletePeerParams() throws {
        #expect(try encoded(DeletePeerParams(ip: vtep("192.0.2.2"))) == #"{"ip":"192.0.2.2"}"#)
        let one = DeletePeerParams(ip: vtep("192.0.2.2"), vni: vni(0))
        #expect(try encoded(one) == #"{"ip":"192.0.2.2","vni":0}"#)
        #expect(try decoded(DeletePeerParams.self, #"{"ip":"192.0.2.2","vni":0}"#) == one)
    }

    @Test func emptyAndFDBParams() throws {
        #expect(try encoded(EmptyParams()) == "{}")
        #expect(try decoded(EmptyParams.self, "{}") == EmptyParams())
        #expect(try encoded(FDBParams()) == "{}")
        #expect(try encoded(FDBParams(vni: vni(5))) == #"{"vni":5}"#)
        #expect(try decoded(FDBParams.self, #"{"vni":5}"#) == FDBParams(vni: vni(5)))
        #expect(try encoded(EmptyResult()) == "{}")
        #expect(try decoded(EmptyResult.self, #"{"future":1}"#) == EmptyResult())
    }

    static let show = ShowResult(
        ports: [PortInfo(name: name("tap0"), vni: vni(100), mtu: 1450, ifindex: 7)],
        peers: [
            PeerInfo(ip: vtep("192.0.2.2"), encapsulation: .vxlan, vnis: [vni(100), vni(200)]),
            PeerInfo(ip: vtep("192.0.2.3"), encapsulation: .gre(key: .nvgre), vnis: [vni(100)]),
        ],
        vnis: [VNIInfo(vni: vni(100), ports: [name("tap0")], peers: [vtep("192.0.2.2"), vtep("192.0.2.3")])]
    )

    @Test func showResult() throws {
        let json =
            #"{"peers":[{"encap":"vxlan","ip":"192.0.2.2","vnis":[100,200]},"#
            + #"{"encap":"gre","greKey":"nvgre","ip":"192.0.2.3","vnis":[100]}],"#
            + #""ports":[{"ifindex":7,"mtu":1450,"name":"tap0","vni":100}],"#
            + #""vnis":[{"peers":["192.0.2.2","192.0.2.3"],"ports":["tap0"],"vni":100}]}"#
        #expect(try encoded(Self.show) == json)
        #expect(try decoded(ShowResult.self, json) == Self.show)
    }

    @Test func showResultWithUnderlayNeighbors() throws {
        var show = ShowResult(ports: [], peers: [], vnis: [])
        show.underlayNeighbors = [
            UnderlayNeighborInfo(ip: ip("192.0.2.1"), mac: nil, isNextHop: true, age: nil),
            UnderlayNeighborInfo(
                ip: ip("192.0.2.12"), mac: MACAddress("02:76:78:00:02:0c")!, isNextHop: false, age: 31),
        ]
        let json =
            #"{"peers":[],"ports":[],"underlayNeighbors":[{"ip":"192.0.2.1","nextHop":true},"#
            + #"{"age":31,"ip":"192.0.2.12","mac":"02:76:78:00:02:0c","nextHop":false}],"vnis":[]}"#
        #expect(try encoded(show) == json)
        #expect(try decoded(ShowResult.self, json) == show)
        // The socket underlay has no table: the key is left out, and a reply without it decodes to nil.
        #expect(!(try encoded(Self.show)).contains("underlayNeighbors"))
        #expect(try decoded(ShowResult.self, #"{"peers":[],"ports":[],"vnis":[]}"#).underlayNeighbors == nil)
        #expect(throws: ControlError.self) {
            try decoded(
                ShowResult.self,
                #"{"peers":[],"ports":[],"underlayNeighbors":[{"ip":"192.0.2.1","mac":"nope","nextHop":true}],"#
                    + #""vnis":[]}"#)
        }
    }

    @Test func portInfoWithoutIfindexLeavesItOut() throws {
        let port = PortInfo(name: name("mem0"), vni: vni(1), mtu: 1500)
        #expect(try encoded(port) == #"{"mtu":1500,"name":"mem0","vni":1}"#)
        #expect(try decoded(PortInfo.self, #"{"mtu":1500,"name":"mem0","vni":1}"#) == port)
    }

    @Test func aFailedPortCarriesItsFailure() throws {
        let port = PortInfo(
            name: name("tap1"), vni: vni(1), mtu: 1450, ifindex: 9,
            failure: "EBADFD (File descriptor in bad state) on read")
        let json = #"{"failure":"EBADFD (File descriptor in bad state) on read","ifindex":9,"mtu":1450,"name":"tap1","vni":1}"#
        #expect(try encoded(port) == json)
        #expect(try decoded(PortInfo.self, json) == port)
    }

    @Test func fdbResult() throws {
        let result = FDBResult(entries: [
            FDBEntry(vni: vni(100), mac: mac("02:00:00:00:00:01"), destination: .port(name("tap0")), age: 12),
            FDBEntry(
                vni: vni(100), mac: mac("02:00:00:00:00:02"), destination: .peer(vtep("192.0.2.2")), age: 0,
                isStatic: true
            ),
        ])
        let json =
            #"{"entries":[{"age":12,"destination":"port tap0","mac":"02:00:00:00:00:01","static":false,"vni":100},"#
            + #"{"age":0,"destination":"peer 192.0.2.2","mac":"02:00:00:00:00:02","static":true,"vni":100}]}"#
        #expect(try encoded(result) == json)
        #expect(try decoded(FDBResult.self, json) == result)
    }

    @Test func statsResultKeepsCountersFlatInEachObject() throws {
        let result = StatsResult(
            ports: [
                PortStats(
                    name: name("tap0"),
                    counters: TrafficCounters(rxFrames: 10, rxBytes: 1000, txFrames: 5, txBytes: 500,
                                              drops: ["no-fdb-entry": 2])
                )
            ],
            peers: [PeerStats(ip: vtep("192.0.2.2"), counters: TrafficCounters(rxFrames: UInt64.max))],
            drops: ["bad-vxlan-header": 3]
        )
        let json =
            #"{"drops":{"bad-vxlan-header":3},"#
            + #""peers":[{"drops":{},"ip":"192.0.2.2","rxBytes":0,"rxFrames":18446744073709551615,"txBytes":0,"txFrames":0}],"#
            + #""ports":[{"drops":{"no-fdb-entry":2},"name":"tap0","rxBytes":1000,"rxFrames":10,"txBytes":500,"txFrames":5}]}"#
        #expect(try encoded(result) == json)
        #expect(try decoded(StatsResult.self, json) == result)
    }

    @Test func statsResultCarriesEachWorkersShareAndDecodesWithoutIt() throws {
        let result = StatsResult(
            ports: [], peers: [], drops: [:],
            workers: [WorkerStats(worker: 0, rxFrames: 600, txFrames: 3), WorkerStats(worker: 1, rxFrames: 410, txFrames: 2)])
        let json =
            #"{"drops":{},"peers":[],"ports":[],"#
            + #""workers":[{"rxFrames":600,"txFrames":3,"worker":0},{"rxFrames":410,"txFrames":2,"worker":1}]}"#
        #expect(try encoded(result) == json)
        #expect(try decoded(StatsResult.self, json) == result)
        // From a switch that does not report workers.
        #expect(try decoded(StatsResult.self, #"{"drops":{},"peers":[],"ports":[]}"#).workers == nil)
    }

    @Test func statsResultCarriesOffloadCountersAndDecodesWithoutThem() throws {
        var offloads = OffloadStats()
        offloads.udpGSOSends = 15
        offloads.groDatagrams = 300
        offloads.coalesceChecksumFallbacks = 2
        let result = StatsResult(ports: [], peers: [], drops: [:], offloads: offloads)
        let json =
            #"{"drops":{},"offloads":{"checksumsCompleted":0,"coalesceChecksumFallbacks":2,"coalescedFrames":0,"#
            + #""coalescedWrites":0,"#
            + #""groDatagrams":300,"groFramesReceived":0,"segments":0,"tsoFramesPassedThrough":0,"#
            + #""tsoFramesReceived":0,"tsoFramesSegmented":0,"udpCoalescedFrames":0,"udpCoalescedWrites":0,"#
            + #""udpGSODatagrams":0,"udpGSOSends":15},"peers":[],"ports":[]}"#
        #expect(try encoded(result) == json)
        #expect(try decoded(StatsResult.self, json) == result)
        // From a switch before the UDP coalescing counters: they decode as 0.
        let older = json.replacingOccurrences(of: #""udpCoalescedFrames":0,"udpCoalescedWrites":0,"#, with: "")
        #expect(older != json)
        #expect(try decoded(StatsResult.self, older) == result)
        // From a switch before the checksum-fallback counter: it decodes as 0.
        let beforeFallbacks = json.replacingOccurrences(of: #""coalesceChecksumFallbacks":2,"#, with: "")
        #expect(beforeFallbacks != json)
        var withoutFallbacks = result
        withoutFallbacks.offloads?.coalesceChecksumFallbacks = 0
        #expect(try decoded(StatsResult.self, beforeFallbacks) == withoutFallbacks)
        // From a switch that does not report offloads.
        #expect(try decoded(StatsResult.self, #"{"drops":{},"peers":[],"ports":[]}"#).offloads == nil)
    }

    @Test func requestAndResponseEnvelopes() throws {
        let request = try ControlRequest(ControlMethods.DeletePort.self, DeletePortParams(name: name("tap0")),
                                         id: .number(3))
        #expect(try encoded(request) == #"{"id":3,"jsonrpc":"2.0","method":"del-port","params":{"name":"tap0"}}"#)

        let ok = ControlResponse(id: .string("a"), outcome: .success(.object([:])))
        #expect(try encoded(ok) == #"{"id":"a","jsonrpc":"2.0","result":{}}"#)

        let failure = ControlResponse(
            id: .number(4),
            outcome: .failure(ControlError(.systemError, "cannot create TAP tap0", cause: ControlError.RemoteCause("EPERM")))
        )
        let json = #"{"error":{"code":-32005,"data":{"cause":"EPERM"},"message":"cannot create TAP tap0"},"id":4,"jsonrpc":"2.0"}"#
        #expect(try encoded(failure) == json)
        let back = try decoded(ControlResponse.self, json)
        #expect(back.id == .number(4))
        guard case .failure(let error) = back.outcome else {
            Issue.record("expected an error")
            return
        }
        #expect(error.code == .systemError)
        #expect(error.description == "cannot create TAP tap0: EPERM")
    }

    @Test func unknownWireCodesSurviveDecoding() {
        #expect(ControlError.Code(rawValue: -32001) == .notFound)
        #expect(ControlError.Code(rawValue: -32099).rawValue == -32099)
        for code in ControlError.Code.allKnown {
            #expect(ControlError.Code(rawValue: code.rawValue) == code)
        }
    }

    @Test func theCatalogNamesEveryCommand() {
        #expect(ControlMethods.serviceNames == ["add-port", "del-port", "add-peer", "del-peer", "show", "fdb", "stats"])
    }

    @Test func socketPathResolution() {
        let variable = ControlSocketPath.environmentVariable
        #expect(ControlSocketPath.resolve(environment: [:]) == "/run/vxswitch/vxswitchd.sock")
        #expect(ControlSocketPath.resolve(environment: [variable: "/tmp/a.sock"]) == "/tmp/a.sock")
        #expect(ControlSocketPath.resolve(environment: [variable: ""]) == "/run/vxswitch/vxswitchd.sock")
        #expect(ControlSocketPath.resolve(explicit: "/x.sock", environment: [variable: "/tmp/a.sock"]) == "/x.sock")
    }
}
