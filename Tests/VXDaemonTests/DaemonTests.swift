// A whole switch in-process: the daemon on a MemoryEngine with fake descriptors, driven through the control
// protocol exactly as vxctl drives it (JSON-RPC lines through the dispatcher), with frames injected where a TAP
// or tunnel socket would deliver them (OVS's tunnel-push-pop.at does the same with netdev-dummy).

import Foundation
import Logging
import Synchronization
import Testing
import VXControl
import VXDaemon
import VXIO
import VXNetlink
import VXPacket
import VXTestSupport
@testable import VXDaemon

/// Hands out fake descriptors; closing one is recorded so tests can check ports are released.
final class FakeHost: SwitchHost {
    private let next = Mutex<Int32>(1000)
    /// Descriptors whose interface was removed (`destroy`), and those only closed (`release`).
    let destroyed = Mutex<Set<Int32>>([])
    let released = Mutex<Set<Int32>>([])
    /// Each port's first queue, and all its queues.
    let created = Mutex<[String: Int32]>([:])
    let createdQueues = Mutex<[String: [Int32]]>([:])
    /// Names that behave like a TAP made without IFF_MULTI_QUEUE: one queue, whatever was asked for.
    let singleQueueNames = Mutex<Set<String>>([])
    /// The workers whose tunnel sockets were asked for.
    let tunnelWorkers = Mutex<[Int]>([])
    /// Names whose TAP keeps the default queueing discipline, with the kernel's refusal (as KernelHost reports it).
    let qdiscRefusals = Mutex<[String: String]>([:])
    /// What `whereabouts` answers, by a port's first descriptor; nil (cannot tell) for the rest.
    let whereabouts = Mutex<[Int32: PortWhereabouts]>([:])
    /// The namespaces `findNamespace` finds.
    let namespaces = Mutex<[NamespaceIdentity: NamespaceWatch]>([:])
    /// `settleMovedInterface` calls, as "IFNAME in LOCATOR".
    let settled = Mutex<[String]>([])

    func whereabouts(of descriptor: OwnedDescriptor) -> PortWhereabouts? {
        whereabouts.withLock { $0[descriptor.fd] }
    }

    func findNamespace(_ identity: NamespaceIdentity) -> NamespaceWatch? {
        namespaces.withLock { $0[identity] }
    }

    func settleMovedInterface(_ ifname: String, in namespace: NamespaceWatch) -> String? {
        settled.withLock { $0.append("\(ifname) in \(namespace.locator)") }
        return nil
    }

    func createPort(name: String, mtu: Int, persistent: Bool, queues: Int) throws(ControlError) -> OwnedDescriptor {
        let count = singleQueueNames.withLock { $0.contains(name) } ? 1 : queues
        let fds = next.withLock { value -> [Int32] in
            (0..<count).map { _ in
                value += 1
                return value
            }
        }
        created.withLock { $0[name] = fds[0] }
        createdQueues.withLock { $0[name] = fds }
        return OwnedDescriptor(
            fds: fds, kind: .tap(virtioHeader: false), ifindex: Int(fds[0]),
            qdiscRefusal: qdiscRefusals.withLock { $0[name] },
            release: { [self] in released.withLock { $0.formUnion(fds) } },
            destroy: { [self] in destroyed.withLock { $0.formUnion(fds) } })
    }

    /// Worker k's VXLAN socket is fd 10 + 10k and its sender 12 + 10k; worker 0 alone has GRE (fd 11).
    func openTunnels(local: UnderlayAddress, udpPort: UInt16, worker: Int) throws(ControlError) -> [OwnedDescriptor] {
        tunnelWorkers.withLock { $0.append(worker) }
        let base = Int32(10 * worker)
        var sockets = [OwnedDescriptor(fd: 10 + base, kind: .udpTunnel) {}]
        if worker == 0 { sockets.append(OwnedDescriptor(fd: 11, kind: .rawGRE) {}) }
        sockets.append(OwnedDescriptor(fd: 12 + base, kind: .rawSender) {})
        return sockets
    }
}

final class InProcessSwitch {
    static let local = UnderlayAddress(192, 0, 2, 11)
    let host = FakeHost()
    let daemon: SwitchDaemon<MemoryEngine>
    let dispatcher: ControlDispatcher

    /// - Parameters:
    ///   - statePath: the state file, or nil for none.
    ///   - local: the VTEP address (`--local`).
    ///   - workers: dataplane workers, each on its own MemoryEngine.
    ///   - standardBuffers: 2 KiB pool buffers per worker.
    ///   - largeBuffers: 64 KiB pool buffers per worker, which TAPs with a virtio header (attach) need.
    ///   - configure: runs before the switch starts (e.g. to mark TAP names single-queue).
    ///   - logger: the daemon's logger.
    init(
        statePath: String? = nil, local: UnderlayAddress = InProcessSwitch.local, workers: Int = 1,
        standardBuffers: Int = 512, largeBuffers: Int = 0,
        configure: (FakeHost) -> Void = { _ in }, logger: Logger = Logger(label: "test")
    ) throws {
        var options = DaemonOptions(local: local)
        options.statePath = statePath
        configure(host)
        daemon = SwitchDaemon(
            options: options, engines: (0..<workers).map { _ in
                MemoryEngine(pool: PacketBufferPool(count: standardBuffers, largeCount: largeBuffers))
            },
            host: host, logger: logger)
        try daemon.start()
        dispatcher = ControlDispatcher(router: ControlRouter(service: daemon))
    }

    deinit {
        daemon.shutdown()
    }

    /// Sends one request line and returns the decoded response object.
    func call(_ method: String, _ params: String = "{}", id: Int = 1) async throws -> [String: Any] {
        let line = #"{"jsonrpc":"2.0","id":\#(id),"method":"\#(method)","params":\#(params)}"#
        let reply = try #require(await dispatcher.respond(toLine: Array(line.utf8)))
        return try #require(try JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any])
    }

    func result(_ method: String, _ params: String = "{}") async throws -> [String: Any] {
        let response = try await call(method, params)
        #expect(response["error"] == nil, "\(method) failed: \(response)")
        return response["result"] as? [String: Any] ?? [:]
    }

    /// The result as JSON text with sorted keys, for comparing states.
    func canonical(_ method: String) async throws -> String {
        let object = try await result(method)
        return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    func errorMessage(_ method: String, _ params: String) async throws -> String {
        let response = try await call(method, params)
        let error = try #require(response["error"] as? [String: Any], "\(method) should have failed")
        return error["message"] as? String ?? ""
    }

    func handle(ofPort name: String) throws -> PortHandle {
        let fd = try #require(host.created.withLock { $0[name] })
        return try #require(daemon.engine.wire.handle(forDescriptor: fd))
    }

    var tunnelHandle: PortHandle { daemon.engine.wire.handle(forDescriptor: 10)! }
    var senderHandle: PortHandle { daemon.engine.wire.handle(forDescriptor: 12)! }

    /// Worker `worker`'s engine.
    func engine(_ worker: Int) -> MemoryEngine { daemon.engines[worker] }

    /// Worker `worker`'s handle for port `name`: its own queue (or the shared one of a single-queue TAP).
    func handle(ofPort name: String, worker: Int) throws -> PortHandle {
        let queues = try #require(host.createdQueues.withLock { $0[name] })
        return try #require(engine(worker).wire.handle(forDescriptor: queues[worker % queues.count]))
    }

    /// Worker `worker`'s VXLAN socket and raw sender.
    func tunnelHandle(worker: Int) -> PortHandle? { engine(worker).wire.handle(forDescriptor: Int32(10 + 10 * worker)) }
    func senderHandle(worker: Int) -> PortHandle? { engine(worker).wire.handle(forDescriptor: Int32(12 + 10 * worker)) }

    /// Waits (bounded) until `body` returns a non-empty array.
    func eventually<T>(_ body: () -> [T]) async throws -> [T] {
        for _ in 0..<200 {
            let value = body()
            if !value.isEmpty { return value }
            try await Task.sleep(for: .milliseconds(5))
        }
        return []
    }
}

let containerA = MACAddress(0x02, 0, 0, 0, 0xA, 1)
let containerB = MACAddress(0x02, 0, 0, 0, 0xB, 1)

func arpRequest(from mac: MACAddress, _ ip: IPv4Address, to target: IPv4Address) -> [UInt8] {
    PacketBuilder.arpRequest(senderMAC: mac, senderIP: ip, targetIP: target)
}

@Suite("vxswitchd in-process, driven through the control protocol")
struct DaemonTests {
    @Test("add-port and add-peer show up in show, and a port's broadcast reaches the peer as VXLAN")
    func portAndPeerCarryTraffic() async throws {
        let sw = try InProcessSwitch()
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        _ = try await sw.result("add-peer", #"{"ip":"192.0.2.12","vni":42}"#)
        let show = try await sw.result("show")
        let ports = try #require(show["ports"] as? [[String: Any]])
        #expect(ports.count == 1 && ports[0]["name"] as? String == "tap1" && ports[0]["mtu"] as? Int == 1450)

        let arp = arpRequest(from: containerA, IPv4Address(10, 0, 0, 1), to: IPv4Address(10, 0, 0, 2))
        #expect(sw.daemon.engine.inject(arp, into: try sw.handle(ofPort: "tap1")))
        let sent = try await sw.eventually { sw.daemon.engine.drainTransmitted(from: sw.senderHandle) }
        #expect(sent.count == 1)
        let packet = sent[0].bytes
        let decap = try TunnelDecap.vxlanIPv4(packet.span.bytes).get()
        #expect(decap.vni == VNI(42)! && decap.ipv4.source == InProcessSwitch.local.ipv4)
        #expect(sent[0].remote == UnderlayAddress(192, 0, 2, 12))
    }

    @Test("fdb lists a MAC learnt from the tunnel behind the peer and one learnt on a port behind the port")
    func fdbShowsLearntEntries() async throws {
        let sw = try InProcessSwitch()
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        _ = try await sw.result("add-peer", #"{"ip":"192.0.2.12","vni":42}"#)
        let fromPeer = PacketBuilder.vxlanDatagram(
            vni: VNI(42)!, inner: arpRequest(from: containerB, IPv4Address(10, 0, 0, 2), to: IPv4Address(10, 0, 0, 1)))
        #expect(sw.daemon.engine.inject(fromPeer, into: sw.tunnelHandle, remote: UnderlayAddress(192, 0, 2, 12)))
        let delivered = try await sw.eventually { sw.daemon.engine.drainTransmitted(from: try! sw.handle(ofPort: "tap1")) }
        #expect(delivered.count == 1)
        let reply = PacketBuilder.arpReply(
            senderMAC: containerA, senderIP: IPv4Address(10, 0, 0, 1), targetMAC: containerB,
            targetIP: IPv4Address(10, 0, 0, 2))
        #expect(sw.daemon.engine.inject(reply, into: try sw.handle(ofPort: "tap1")))
        _ = try await sw.eventually { sw.daemon.engine.drainTransmitted(from: sw.senderHandle) }

        let fdb = try await sw.result("fdb", #"{"vni":42}"#)
        let entries = try #require(fdb["entries"] as? [[String: Any]])
        let byMAC = Dictionary(uniqueKeysWithValues: entries.map { ($0["mac"] as? String ?? "", $0["destination"] as? String ?? "") })
        #expect(byMAC[containerB.description] == "peer 192.0.2.12")
        #expect(byMAC[containerA.description] == "port tap1")

        let stats = try await sw.result("stats")
        let portStats = try #require((stats["ports"] as? [[String: Any]])?.first)
        #expect(portStats["name"] as? String == "tap1")
        // tap1 received the ARP reply and was sent the peer's ARP request; the peer the other way round.
        #expect(portStats["rxFrames"] as? Int == 1 && portStats["txFrames"] as? Int == 1, "\(portStats)")
        let peerStats = try #require((stats["peers"] as? [[String: Any]])?.first)
        #expect(peerStats["rxFrames"] as? Int == 1 && peerStats["txFrames"] as? Int == 1, "\(peerStats)")
    }

    @Test("del-port releases the descriptor, flushes its MAC entries and removes it from show")
    func deletePortCleansUp() async throws {
        let sw = try InProcessSwitch()
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        _ = try await sw.result("add-port", #"{"name":"tap2","vni":42}"#)
        let tap1 = try sw.handle(ofPort: "tap1")
        #expect(sw.daemon.engine.inject(arpRequest(from: containerA, IPv4Address(10, 0, 0, 1), to: IPv4Address(10, 0, 0, 2)), into: tap1))
        _ = try await sw.eventually { sw.daemon.engine.drainTransmitted(from: try! sw.handle(ofPort: "tap2")) }
        #expect(sw.daemon.table.count == 1)

        let fd = try #require(sw.host.created.withLock { $0["tap1"] })
        _ = try await sw.result("del-port", #"{"name":"tap1"}"#)
        #expect(sw.host.destroyed.withLock { $0.contains(fd) })
        #expect(sw.daemon.table.count == 0, "entries learnt on a deleted port must be flushed")
        let ports = try #require(try await sw.result("show")["ports"] as? [[String: Any]])
        #expect(ports.map { $0["name"] as? String } == ["tap2"])
    }

    @Test("bad requests get clear errors and change nothing")
    func badRequestsChangeNothing() async throws {
        let sw = try InProcessSwitch()
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        _ = try await sw.result("add-peer", #"{"ip":"192.0.2.12","vni":42}"#)
        let before = try await sw.canonical("show")

        #expect(try await sw.errorMessage("del-port", #"{"name":"nope"}"#).contains("no port named \"nope\""))
        #expect(try await sw.errorMessage("add-port", #"{"name":"tap1","vni":7}"#).contains("already exists"))
        #expect(try await sw.errorMessage("add-peer", #"{"ip":"192.0.2.11","vni":42}"#).contains("own VTEP address"))
        #expect(try await sw.errorMessage("add-peer", #"{"ip":"192.0.2.12","vni":42,"encap":"gre"}"#)
            .contains("one encapsulation"))
        #expect(try await sw.errorMessage("add-peer", #"{"ip":"192.0.2.12","vni":42}"#).contains("already in VNI 42"))
        #expect(try await sw.errorMessage("del-peer", #"{"ip":"192.0.2.99"}"#).contains("no peer 192.0.2.99"))
        #expect(try await sw.errorMessage("add-port", #"{"name":"tap9","vni":16777216}"#).contains("16777216"))
        #expect(try await sw.errorMessage("add-peer", #"{"ip":"300.1.2.3","vni":1}"#).contains("300.1.2.3"))
        #expect(try await sw.errorMessage("add-peer", #"{"ip":"127.0.0.2","vni":42}"#).contains("cannot be a peer"))
        #expect(try await sw.errorMessage("add-peer", #"{"ip":"224.0.0.5","vni":42}"#).contains("cannot be a peer"))

        #expect(try await sw.canonical("show") == before)
    }

    @Test("a GRE peer without a key carries exactly one VNI")
    func unkeyedGREPeerHasOneVNI() async throws {
        let sw = try InProcessSwitch()
        _ = try await sw.result("add-peer", #"{"ip":"192.0.2.12","vni":42,"encap":"gre","greKey":"none"}"#)
        #expect(try await sw.errorMessage("add-peer", #"{"ip":"192.0.2.12","vni":43,"encap":"gre","greKey":"none"}"#)
            .contains("exactly one VNI"))
    }

    @Test("del-peer for one VNI keeps the peer in its other VNIs")
    func deletePeerFromOneVNI() async throws {
        let sw = try InProcessSwitch()
        _ = try await sw.result("add-peer", #"{"ip":"192.0.2.12","vni":42}"#)
        _ = try await sw.result("add-peer", #"{"ip":"192.0.2.12","vni":43}"#)
        _ = try await sw.result("del-peer", #"{"ip":"192.0.2.12","vni":42}"#)
        let peers = try #require(try await sw.result("show")["peers"] as? [[String: Any]])
        #expect(peers.count == 1)
        #expect(peers.first?["vnis"] as? [Int] == [43])
    }

    @Test("malformed control lines get JSON-RPC errors and the switch keeps working")
    func malformedLinesAreRejected() async throws {
        let sw = try InProcessSwitch()
        for line in ["{", "[]", #"{"jsonrpc":"2.0","id":1,"method":"no-such-method"}"#, String(repeating: "x", count: 100)] {
            let reply = try #require(await sw.dispatcher.respond(toLine: Array(line.utf8)))
            let object = try #require(try JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any])
            #expect(object["error"] != nil, "no error for \(line.prefix(20))")
        }
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
    }
}

@Suite("vxswitchd state file")
struct DaemonStateTests {
    func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "vx-state-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test("ports and peers survive a restart; the TAPs are kept, not removed, when the switch stops")
    func configurationSurvivesRestart() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/state.json"
        let before: String
        do {
            let first = try InProcessSwitch(statePath: path)
            _ = try await first.result("add-port", #"{"name":"tap1","vni":42,"mtu":1400}"#)
            _ = try await first.result("add-peer", #"{"ip":"192.0.2.12","vni":42}"#)
            _ = try await first.result("add-peer", #"{"ip":"192.0.2.13","vni":42,"encap":"gre","greKey":"nvgre"}"#)
            before = try await first.canonical("show")
            let fd = try #require(first.host.created.withLock { $0["tap1"] })
            first.daemon.shutdown()
            #expect(first.host.released.withLock { $0.contains(fd) })
            #expect(!first.host.destroyed.withLock { $0.contains(fd) }, "a persistent TAP must outlive the daemon")
        }
        let second = try InProcessSwitch(statePath: path)
        #expect(try await second.canonical("show").replacingOccurrences(of: "\"ifindex\":1002", with: "\"ifindex\":1001") == before)
    }

    @Test("an IPv6 VTEP: ports default to MTU 1430 (1442 behind a keyless GRE peer), and its IPv6 peers survive a restart")
    func ipv6ConfigurationSurvivesRestart() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/state.json"
        let local = try #require(UnderlayAddress("2001:db8::11"))
        let before: String
        do {
            let first = try InProcessSwitch(statePath: path, local: local)
            let port = try await first.result("add-port", #"{"name":"tap1","vni":42}"#)
            #expect(port["mtu"] as? Int == 1430, "VXLAN over IPv6 costs 70 bytes: \(port)")
            let peer = try await first.result("add-peer", #"{"ip":"2001:DB8:0::12","vni":42}"#)
            #expect(peer["ip"] as? String == "2001:db8::12", "printed in RFC 5952 form: \(peer)")
            // GRE over IPv6: 40 + 4 + 14 bytes without a key, so a port of a VNI behind only that peer gets 1442.
            let gre = try await first.result("add-peer", #"{"ip":"2001:db8::13","vni":43,"encap":"gre","greKey":"none"}"#)
            #expect(gre["encap"] as? String == "gre" && gre["greKey"] as? String == "none", "\(gre)")
            let grePort = try await first.result("add-port", #"{"name":"tap2","vni":43}"#)
            #expect(grePort["mtu"] as? Int == 1442, "\(grePort)")
            before = try await first.canonical("show")
            first.daemon.shutdown()
        }
        let saved = try String(contentsOfFile: path, encoding: .utf8)
        #expect(saved.contains("2001:db8::12") && saved.contains("2001:db8::13"), "the state file keeps the peers: \(saved)")
        let second = try InProcessSwitch(statePath: path, local: local)
        let after = try await second.canonical("show")
            .replacingOccurrences(of: "\"ifindex\":1003", with: "\"ifindex\":1001")
            .replacingOccurrences(of: "\"ifindex\":1004", with: "\"ifindex\":1002")
        #expect(after == before)
    }

    @Test("without a state file the switch removes its TAPs when it stops")
    func ephemeralSwitchRemovesTAPs() async throws {
        let sw = try InProcessSwitch()
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        let fd = try #require(sw.host.created.withLock { $0["tap1"] })
        sw.daemon.shutdown()
        #expect(sw.host.destroyed.withLock { $0.contains(fd) })
    }

    @Test("a change that cannot be saved is refused and undone")
    func unsavableChangeIsRefused() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/state.json"
        let sw = try InProcessSwitch(statePath: path)
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        let before = try await sw.canonical("show")
        // Make the state file unreplaceable: its directory becomes read-only... root ignores modes, so replace
        // the directory itself with a file instead.
        try FileManager.default.removeItem(atPath: directory)
        try Data("not a directory".utf8).write(to: URL(fileURLWithPath: directory))
        let message = try await sw.errorMessage("add-port", #"{"name":"tap2","vni":42}"#)
        #expect(message.contains("state"), "unexpected message: \(message)")
        #expect(try await sw.errorMessage("del-port", #"{"name":"tap1"}"#).contains("state"))
        #expect(try await sw.errorMessage("add-peer", #"{"ip":"192.0.2.12","vni":42}"#).contains("state"))
        #expect(try await sw.canonical("show") == before)
        let fd2 = try #require(sw.host.created.withLock { $0["tap2"] })
        #expect(sw.host.destroyed.withLock { $0.contains(fd2) }, "the refused port's TAP must be removed again")
    }

    @Test("a second switch on the same state file is refused, with the holder's pid; it may start once the first stopped")
    func stateFileIsNotShared() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/state.json"
        let first = try InProcessSwitch(statePath: path)
        _ = try await first.result("add-port", #"{"name":"tap1","vni":42}"#)
        #expect {
            _ = try InProcessSwitch(statePath: path)
        } throws: { error in
            let message = "\(error)"
            return message.contains(path) && message.contains("in use by another vxswitchd (pid \(getpid()))")
        }
        // The refused switch wrote nothing: the first one's port is still the whole saved state.
        #expect(try StateStore(path: path).load().ports.map(\.name) == ["tap1"])
        first.daemon.shutdown()
        let second = try InProcessSwitch(statePath: path)
        #expect(try await second.result("show")["ports"] as? [Any] != nil)
    }

    @Test("a corrupt state file stops the switch from starting, with the path in the message")
    func corruptStateFileIsReported() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/state.json"
        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: path))
        #expect {
            _ = try InProcessSwitch(statePath: path)
        } throws: { error in
            "\(error)".contains(path)
        }
    }
}

@Suite("vxswitchd life cycle")
struct DaemonLifeCycleTests {
    @Test("shutdown twice returns (the second call must not wait for a worker that has already stopped)")
    func shutdownIsIdempotent() async throws {
        let sw = try InProcessSwitch()
        sw.daemon.shutdown()
        sw.daemon.shutdown()
        #expect(try await sw.errorMessage("add-port", #"{"name":"tap1","vni":42}"#).contains("not running"))
    }
}

@Suite("kernel socket drop counts")
struct KernelSocketDropsTests {
    // Two lines of a real /proc/net/udp (kernel 6.18); the second socket has inode 41234 and 17 drops.
    let table = """
           sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
          12: 0B0200C0:12B5 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 40001 2 0000000000000000 0
          13: 0B0200C0:12B6 00000000:0000 07 00000000:00040000 00:00000000 00000000     0        0 41234 2 0000000000000000 17
        """

    @Test("the drops column is read for the socket's inode")
    func readsDropsByInode() {
        #expect(KernelSocketDrops.count(inode: 41234, in: table) == 17)
        #expect(KernelSocketDrops.count(inode: 40001, in: table) == 0)
        #expect(KernelSocketDrops.count(inode: 99, in: table) == nil)
        #expect(KernelSocketDrops.count(inode: 1, in: "garbage\nnot a table") == nil)
    }

    @Test("a real UDP socket of this process is found in /proc/self/net/udp")
    func findsOwnSocket() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0)
        #expect(KernelSocketDrops.count(fd: fd, table: "udp") == 0)
    }
}

@Suite("default port MTU")
struct DefaultMTUTests {
    func mtu(ofNewPortWithPeers peers: [String]) async throws -> Int? {
        let sw = try InProcessSwitch()
        for (index, peer) in peers.enumerated() {
            _ = try await sw.result("add-peer", #"{"ip":"192.0.2.\#(20 + index)","vni":42\#(peer)}"#)
        }
        let port = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        return port["mtu"] as? Int
    }

    @Test("1450 with no peers or a VXLAN peer, 1458 for GRE with a key, 1462 for keyless GRE, the least when mixed")
    func defaultMTUFollowsThePeers() async throws {
        #expect(try await mtu(ofNewPortWithPeers: []) == 1450)
        #expect(try await mtu(ofNewPortWithPeers: [""]) == 1450)
        #expect(try await mtu(ofNewPortWithPeers: [#","encap":"gre""#]) == 1458)
        #expect(try await mtu(ofNewPortWithPeers: [#","encap":"gre","greKey":"none""#]) == 1462)
        #expect(try await mtu(ofNewPortWithPeers: [#","encap":"gre""#, ""]) == 1450)
        #expect(try await mtu(ofNewPortWithPeers: [#","encap":"gre""#, #","encap":"gre","greKey":"none""#]) == 1458)
    }

    @Test("only the peers of the port's own VNI count")
    func defaultMTUIgnoresOtherVNIs() async throws {
        let sw = try InProcessSwitch()
        _ = try await sw.result("add-peer", #"{"ip":"192.0.2.20","vni":42,"encap":"gre","greKey":"none"}"#)
        _ = try await sw.result("add-peer", #"{"ip":"192.0.2.21","vni":43}"#)
        let port = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        #expect(port["mtu"] as? Int == 1462)
    }
}

@Suite("ARP answers for the DHCP server address")
struct ARPReplyTests {
    let server = IPv4Address(10, 0, 0, 254)
    let serverMAC = MACAddress(0x02, 0, 0, 0, 0xFE, 0xFE)

    @Test("a request for the address gets a reply from the server MAC, addressed back to the asker")
    func repliesToRequestsForTheAddress() throws {
        let request = PacketBuilder.arpRequest(senderMAC: containerA, senderIP: IPv4Address(10, 0, 0, 1), targetIP: server)
        let reply = try #require(SwitchDaemon<MemoryEngine>.arpReply(to: request, for: server, mac: serverMAC))
        let expected = PacketBuilder.arpReply(
            senderMAC: serverMAC, senderIP: server, targetMAC: containerA, targetIP: IPv4Address(10, 0, 0, 1))
        #expect(reply == expected)
    }

    @Test("no reply for another address, for a reply, or for garbage")
    func ignoresEverythingElse() {
        let other = PacketBuilder.arpRequest(
            senderMAC: containerA, senderIP: IPv4Address(10, 0, 0, 1), targetIP: IPv4Address(10, 0, 0, 2))
        let answer = PacketBuilder.arpReply(
            senderMAC: containerA, senderIP: IPv4Address(10, 0, 0, 1), targetMAC: serverMAC, targetIP: server)
        #expect(SwitchDaemon<MemoryEngine>.arpReply(to: other, for: server, mac: serverMAC) == nil)
        #expect(SwitchDaemon<MemoryEngine>.arpReply(to: answer, for: server, mac: serverMAC) == nil)
        #expect(SwitchDaemon<MemoryEngine>.arpReply(to: [1, 2, 3], for: server, mac: serverMAC) == nil)
    }
}
