import Foundation
import Synchronization
import VXControl
import VXPacket

/// An in-memory `ControlService`: ports and peers in a dictionary, with the daemon's error rules, so the socket
/// tests exercise real state changes over the wire.
final class FakeSwitch: ControlService {
    private struct State {
        var ports: [InterfaceName: PortInfo] = [:]
        var peers: [IPv4Address: PeerInfo] = [:]
        var nextIfindex = 10
    }

    private let state = Mutex(State())
    /// How long `stats` takes, to test client timeouts.
    let statsDelay: Duration

    init(statsDelay: Duration = .zero) {
        self.statsDelay = statsDelay
    }

    func addPort(_ params: AddPortParams) async throws(ControlError) -> PortInfo {
        try state.withLock { state throws(ControlError) in
            guard state.ports[params.name] == nil else {
                throw ControlError(.alreadyExists, "port \"\(params.name)\" already exists")
            }
            state.nextIfindex += 1
            let port = PortInfo(name: params.name, vni: params.vni, mtu: params.mtu ?? 1450, ifindex: state.nextIfindex)
            state.ports[params.name] = port
            return port
        }
    }

    func deletePort(_ params: DeletePortParams) async throws(ControlError) -> EmptyResult {
        try state.withLock { state throws(ControlError) in
            guard state.ports.removeValue(forKey: params.name) != nil else {
                throw ControlError(.notFound, "no port named \"\(params.name)\"")
            }
            return EmptyResult()
        }
    }

    func addPeer(_ params: AddPeerParams) async throws(ControlError) -> PeerInfo {
        try state.withLock { state throws(ControlError) in
            var peer = state.peers[params.ip] ?? PeerInfo(ip: params.ip, encapsulation: params.encapsulation, vnis: [])
            guard peer.encapsulation == params.encapsulation else {
                throw ControlError(
                    .invalidArgument,
                    "peer \(params.ip) already uses \(peer.encapsulation), not \(params.encapsulation)"
                )
            }
            guard !peer.vnis.contains(params.vni) else {
                throw ControlError(.alreadyExists, "peer \(params.ip) already carries VNI \(params.vni)")
            }
            peer.vnis = (peer.vnis + [params.vni]).sorted()
            state.peers[params.ip] = peer
            return peer
        }
    }

    func deletePeer(_ params: DeletePeerParams) async throws(ControlError) -> EmptyResult {
        try state.withLock { state throws(ControlError) in
            guard var peer = state.peers[params.ip] else {
                throw ControlError(.notFound, "no peer \(params.ip)")
            }
            if let vni = params.vni {
                guard let index = peer.vnis.firstIndex(of: vni) else {
                    throw ControlError(.notFound, "peer \(params.ip) does not carry VNI \(vni)")
                }
                peer.vnis.remove(at: index)
            } else {
                peer.vnis = []
            }
            state.peers[params.ip] = peer.vnis.isEmpty ? nil : peer
            return EmptyResult()
        }
    }

    func show() async throws(ControlError) -> ShowResult {
        state.withLock { state in
            let ports = state.ports.values.sorted { $0.name < $1.name }
            let peers = state.peers.values.sorted { $0.ip < $1.ip }
            let vnis = Set(ports.map(\.vni) + peers.flatMap(\.vnis)).sorted().map { vni in
                VNIInfo(
                    vni: vni,
                    ports: ports.filter { $0.vni == vni }.map(\.name),
                    peers: peers.filter { $0.vnis.contains(vni) }.map(\.ip)
                )
            }
            return ShowResult(ports: ports, peers: peers, vnis: vnis)
        }
    }

    func fdb(_ params: FDBParams) async throws(ControlError) -> FDBResult {
        let all = [
            FDBEntry(vni: VNI(100)!, mac: MACAddress("02:00:00:00:00:01")!, destination: .port(name("tap0")), age: 3),
            FDBEntry(vni: VNI(200)!, mac: MACAddress("02:00:00:00:00:02")!, destination: .peer(ip("192.0.2.2")), age: 9),
        ]
        return FDBResult(entries: all.filter { params.vni == nil || $0.vni == params.vni })
    }

    func stats() async throws(ControlError) -> StatsResult {
        if statsDelay > .zero { try? await Task.sleep(for: statsDelay) }
        return StatsResult(ports: [], peers: [], drops: ["unknown-peer": 1])
    }
}
