import Foundation
import Synchronization
import VXControl
import VXPacket

/// An in-memory `ControlService` and `NetworkControlService`: ports, peers, networks, attachments and leases in
/// dictionaries, with the daemon's error rules, so the socket tests exercise real state changes over the wire.
final class FakeSwitch: ControlService, NetworkControlService {
    private struct State {
        var ports: [InterfaceName: PortInfo] = [:]
        var peers: [UnderlayAddress: PeerInfo] = [:]
        var nextIfindex = 10
        var networks: [String: NetworkCreateParams] = [:]
        var attachments: [AttachmentInfo] = []  // in the order they were made
        var dhcpLeases: [LeaseInfo] = []
        var nextPort = 0x3f9a_1c2a  // port names and MACs are derived from it, as vx3f9a1c2b
    }

    /// Docker containers the fake knows, by name, with their main process.
    static let dockerContainers: [String: Int32] = ["web": 4242]

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
            FDBEntry(vni: VNI(200)!, mac: MACAddress("02:00:00:00:00:02")!, destination: .peer(vtep("192.0.2.2")), age: 9),
        ]
        return FDBResult(entries: all.filter { params.vni == nil || $0.vni == params.vni })
    }

    func stats() async throws(ControlError) -> StatsResult {
        if statsDelay > .zero { try? await Task.sleep(for: statsDelay) }
        return StatsResult(ports: [], peers: [], drops: ["unknown-peer": 1])
    }
}

// MARK: NetworkControlService

extension FakeSwitch {
    func createNetwork(_ params: NetworkCreateParams) async throws(ControlError) -> NetworkInfo {
        try state.withLock { state throws(ControlError) in
            guard state.networks[params.name] == nil else {
                throw ControlError(.alreadyExists, "network \"\(params.name)\" already exists")
            }
            if let other = state.networks.values.first(where: { $0.vni == params.vni }) {
                throw ControlError(.alreadyExists, "VNI \(params.vni) already belongs to network \"\(other.name)\"")
            }
            state.networks[params.name] = params
            return Self.info(params, state)
        }
    }

    func listNetworks() async throws(ControlError) -> NetworkListResult {
        state.withLock { state in
            NetworkListResult(networks: state.networks.values.sorted { $0.name < $1.name }.map { Self.info($0, state) })
        }
    }

    func removeNetwork(_ params: NetworkRemoveParams) async throws(ControlError) -> EmptyResult {
        try state.withLock { state throws(ControlError) in
            guard state.networks[params.name] != nil else {
                throw ControlError(.notFound, "no network named \"\(params.name)\"")
            }
            let attached = state.attachments.filter { $0.network == params.name }.count
            guard attached == 0 else {
                throw ControlError(
                    .resourceBusy,
                    "network \"\(params.name)\" still has \(attached) attachment(s); detach them first"
                )
            }
            state.networks[params.name] = nil
            state.dhcpLeases.removeAll { $0.network == params.name }
            return EmptyResult()
        }
    }

    func attach(_ params: AttachParams) async throws(ControlError) -> AttachmentInfo {
        try state.withLock { state throws(ControlError) in
            guard let network = state.networks[params.network] else {
                throw ControlError(.notFound, "no network named \"\(params.network)\"")
            }
            let namespace = try Self.namespace(of: params.container)
            guard !state.attachments.contains(where: { $0.namespace == namespace && $0.ifname == params.ifname }) else {
                throw ControlError(.alreadyExists, "\(params.container) already has an interface \(params.ifname)")
            }
            let leased = Set(Self.staticLeases(state).map(\.ip) + state.dhcpLeases.map(\.ip))
            var cidr: IPv4CIDR?
            switch params.ip {
            case nil:
                break
            case .auto:
                let range = network.effectiveRange
                let candidates = (range.first.value...range.last.value).lazy.map(IPv4Address.init(value:))
                guard let free = candidates.first(where: { !leased.contains($0) && $0 != network.gateway }) else {
                    throw ControlError(.invalidArgument, "network \"\(network.name)\" has no free address in \(range)")
                }
                cidr = try IPv4CIDR(address: free, prefixLength: network.subnet.prefixLength)
            case .address(let given):
                guard given.subnet == network.subnet else {
                    throw ControlError(
                        .invalidArgument,
                        "\(given) is not in the subnet of network \"\(network.name)\" (\(network.subnet))"
                    )
                }
                guard given.address != network.gateway else {
                    throw ControlError(.invalidArgument, "\(given.address) is the gateway of network \"\(network.name)\"")
                }
                guard !leased.contains(given.address) else {
                    throw ControlError(.alreadyExists, "\(given.address) is already leased")
                }
                cidr = given
            }
            state.nextPort += 1
            let attachment = AttachmentInfo(
                port: try InterfaceName(validating: "vx" + Self.hex(state.nextPort)),
                network: network.name,
                vni: network.vni,
                container: params.container,
                namespace: namespace,
                ifname: params.ifname,
                ip: cidr?.description,
                mac: params.mac ?? MACAddress(raw: 0x02_5e_00_00_00_00 | UInt64(state.nextPort)),
                mtu: params.mtu ?? 1450,
                gateway: params.gateway ?? (cidr == nil ? nil : network.gateway)
            )
            state.attachments.append(attachment)
            return attachment
        }
    }

    func detach(_ params: DetachParams) async throws(ControlError) -> DetachResult {
        try state.withLock { state throws(ControlError) in
            let namespace = try Self.namespace(of: params.container)
            func matches(_ attachment: AttachmentInfo) -> Bool {
                attachment.namespace == namespace && (params.ifname == nil || attachment.ifname == params.ifname)
            }
            let detached = state.attachments.filter(matches)
            guard !detached.isEmpty else {
                let what = params.ifname.map { "interface \($0)" } ?? "interface"
                throw ControlError(.notFound, "no \(what) attached to \(params.container)")
            }
            state.attachments.removeAll(where: matches)
            return DetachResult(detached: detached)
        }
    }

    func leases(_ params: LeasesParams) async throws(ControlError) -> LeasesResult {
        try state.withLock { state throws(ControlError) in
            if let name = params.network, state.networks[name] == nil {
                throw ControlError(.notFound, "no network named \"\(name)\"")
            }
            let all = (Self.staticLeases(state) + state.dhcpLeases).filter {
                params.network == nil || $0.network == params.network
            }
            return LeasesResult(leases: all.sorted { ($0.network, $0.ip) < ($1.network, $1.ip) })
        }
    }

    /// Records a lease as the DHCP server would, for tests of `leases` and `network-ls`.
    func recordDHCPLease(_ lease: LeaseInfo) {
        state.withLock { $0.dhcpLeases.append(lease) }
    }

    private static func info(_ params: NetworkCreateParams, _ state: State) -> NetworkInfo {
        var info = NetworkInfo(created: params)
        info.ports = state.attachments.filter { $0.network == params.name }.map(\.port).sorted()
        info.leases = (staticLeases(state) + state.dhcpLeases).filter { $0.network == params.name }.count
        return info
    }

    private static func staticLeases(_ state: State) -> [LeaseInfo] {
        state.attachments.compactMap { attachment in
            guard let text = attachment.ip, let cidr = try? IPv4CIDR(parsing: text) else { return nil }
            return LeaseInfo(network: attachment.network, ip: cidr.address, owner: "\(attachment.port)", kind: .static)
        }
    }

    private static func namespace(of container: ContainerReference) throws(ControlError) -> String {
        switch container {
        case .netns(let name): return "/run/netns/\(name)"
        case .pid(let pid): return "/proc/\(pid)/ns/net"
        case .docker(let reference):
            guard let pid = dockerContainers[reference] else {
                throw ControlError(.notFound, "no Docker container \"\(reference)\"")
            }
            return "/proc/\(pid)/ns/net"
        }
    }

    private static func hex(_ value: Int) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }
}
