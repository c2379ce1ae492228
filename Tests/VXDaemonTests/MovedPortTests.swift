// The daemon's side of `add-port` ports moved between namespaces by hand (Sources/VXDaemon/MovedPorts.swift), on a
// FakeHost that says where each TAP is. MovedPortSystemTests moves real TAPs and restarts a real switch.

import Foundation
import Testing
import VXNetlink
@testable import VXDaemon

@Suite("add-port ports moved by hand are followed")
struct MovedPortTests {
    static let container = NamespaceIdentity(device: 4, inode: 4_026_540_001)
    static let watch = NamespaceWatch(locator: .name("vx-test-no-such-c1"), identity: container, cookie: 77)

    /// A switch with a state file and port tap1; returns the switch, the port's descriptor and the state path.
    static func switchWithPort(log: CapturedErrors) async throws -> (InProcessSwitch, Int32, String) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("moved-\(UUID().uuidString).json").path
        let sw = try InProcessSwitch(statePath: path, logger: log.logger)
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        let fd = try #require(sw.host.created.withLock { $0["tap1"] })
        return (sw, fd, path)
    }

    static func savedMove(_ path: String) throws -> PersistedMove? {
        let state = try JSONDecoder().decode(PersistedState.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        return state.ports.first { $0.name == "tap1" }?.moved
    }

    @Test func aPortMovedIntoAContainerIsSavedWithTheWayBackAndGetsNoqueue() async throws {
        let log = CapturedErrors(minimumLevel: .info)
        let (sw, fd, path) = try await Self.switchWithPort(log: log)
        defer { try? FileManager.default.removeItem(atPath: path) }
        sw.daemon.trackMovedPorts()
        #expect(try Self.savedMove(path) == nil, "the host could not tell yet: nothing changes")

        sw.host.whereabouts.withLock { $0[fd] = .away(ifname: "eth0", namespace: Self.container) }
        sw.host.namespaces.withLock { $0[Self.container] = Self.watch }
        sw.daemon.trackMovedPorts()
        let saved = try #require(try Self.savedMove(path))
        #expect(saved.ifname == "eth0" && saved.namespaceName == "vx-test-no-such-c1" && saved.namespaceCookie == 77)
        #expect(saved.namespaceDevice == 4 && saved.namespaceInode == 4_026_540_001)
        #expect(sw.host.settled.withLock { $0 } == ["eth0 in netns vx-test-no-such-c1"])
        // Seen again where it was: no second save, no second settling.
        sw.daemon.trackMovedPorts()
        #expect(sw.host.settled.withLock { $0 }.count == 1)
        let lines = log.messages.withLock { $0 }.filter { $0.hasPrefix("port tap1 is") }
        #expect(lines == ["port tap1 is eth0 in netns vx-test-no-such-c1"], "\(lines)")
        let shown = try #require(try await sw.result("show")["ports"] as? [[String: Any]])
        #expect(shown.first?["location"] as? String == "eth0 in netns vx-test-no-such-c1", "\(shown)")

        // Back home under its own name: the record goes. Renamed at home: recorded without a namespace.
        sw.host.whereabouts.withLock { $0[fd] = .here(ifname: "tap1") }
        sw.daemon.trackMovedPorts()
        #expect(try Self.savedMove(path) == nil)
        let home = try #require(try await sw.result("show")["ports"] as? [[String: Any]])
        #expect(home.first?["location"] == nil, "\(home)")
        sw.host.whereabouts.withLock { $0[fd] = .here(ifname: "uplink7") }
        sw.daemon.trackMovedPorts()
        let renamed = try #require(try Self.savedMove(path))
        #expect(renamed.ifname == "uplink7" && renamed.namespaceInode == nil && renamed.namespaceName == nil)
        let renamedShown = try #require(try await sw.result("show")["ports"] as? [[String: Any]])
        #expect(renamedShown.first?["location"] as? String == "uplink7 in the switch's namespace")
    }

    @Test func aMovedPortGoesWithItsNamespaceAndAPortAtHomeDoesNot() async throws {
        let log = CapturedErrors(minimumLevel: .notice)
        let (sw, fd, path) = try await Self.switchWithPort(log: log)
        defer { try? FileManager.default.removeItem(atPath: path) }
        _ = try await sw.result("add-port", #"{"name":"tap2","vni":42}"#)
        let home = try #require(sw.host.created.withLock { $0["tap2"] })
        // tap2 was deleted at home: a port failure for the user to see, not something to remove silently.
        sw.host.whereabouts.withLock { $0[home] = .gone }
        sw.host.whereabouts.withLock { $0[fd] = .away(ifname: "eth0", namespace: Self.container) }
        sw.host.namespaces.withLock { $0[Self.container] = Self.watch }
        sw.daemon.trackMovedPorts()
        sw.host.whereabouts.withLock { $0[fd] = .gone }
        sw.daemon.trackMovedPorts()
        let ports = try #require(try await sw.result("show")["ports"] as? [[String: Any]])
        #expect(ports.map { $0["name"] as? String } == ["tap2"])
        #expect(sw.host.destroyed.withLock { $0.contains(fd) })
        #expect(log.messages.withLock { $0 }.contains("port tap1 (eth0 in netns vx-test-no-such-c1) is gone with its namespace: removed"))
    }

    /// A TAP reopened inside the container after a restart holds the namespace, so the kernel never deletes the
    /// interface: when nothing but the switch leads to the namespace any more, the port goes.
    @Test func aMovedPortWhoseNamespaceNothingLeadsToAnyMoreIsRemoved() async throws {
        let log = CapturedErrors(minimumLevel: .notice)
        let (sw, fd, path) = try await Self.switchWithPort(log: log)
        defer { try? FileManager.default.removeItem(atPath: path) }
        sw.host.whereabouts.withLock { $0[fd] = .away(ifname: "eth0", namespace: Self.container) }
        sw.host.namespaces.withLock { $0[Self.container] = Self.watch }
        sw.daemon.trackMovedPorts()
        // The watch's name does not exist (status: gone), but a search still finds the namespace: kept.
        sw.daemon.trackMovedPorts()
        #expect(try Self.savedMove(path) != nil)
        sw.host.namespaces.withLock { $0[Self.container] = nil }
        sw.daemon.trackMovedPorts()
        let ports = try #require(try await sw.result("show")["ports"] as? [[String: Any]])
        #expect(ports.isEmpty)
    }

    @Test func aMoveNothingLeadsToIsSavedAndWarnedAbout() async throws {
        let log = CapturedErrors(minimumLevel: .warning)
        let (sw, fd, path) = try await Self.switchWithPort(log: log)
        defer { try? FileManager.default.removeItem(atPath: path) }
        sw.host.whereabouts.withLock { $0[fd] = .away(ifname: "eth0", namespace: Self.container) }
        sw.daemon.trackMovedPorts()
        let saved = try #require(try Self.savedMove(path))
        #expect(saved.namespaceInode == 4_026_540_001 && saved.namespaceName == nil && saved.namespacePID == nil)
        let warnings = log.messages.withLock { $0 }
        #expect(warnings.count == 1 && warnings[0].contains("a restarted vxswitchd will not find it"), "\(warnings)")
        #expect(sw.host.settled.withLock { $0 }.isEmpty)
    }

    @Test func aStateFileFromBeforeMovesLoads() throws {
        let old = #"{"version":1,"ports":[{"name":"tap1","vni":42,"mtu":1450}],"peers":[],"networks":[]}"#
        let state = try JSONDecoder().decode(PersistedState.self, from: Data(old.utf8))
        #expect(state.ports.map(\.name) == ["tap1"] && state.ports[0].moved == nil)
    }
}
