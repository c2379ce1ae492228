// Against the real kernel, as root: namespaces the tests create (`vx-<run id>-nl…`, deleted in a `defer`, so also
// when a test fails), TAPs created with VXIO's TAPDevice (not persistent: they vanish when their descriptor
// closes, wherever they are), placement into a namespace by name and by pid, verification with
// `ip -n NS -j …` (iproute2 is used only to check, never to configure), the rename collision, namespace identity.
//
// Skipped with a message when not root, or without `ip` or /dev/net/tun.
//
// Processes run through VXTestSupport's ProcessRunner (posix_spawn with a clean signal mask) rather than
// Foundation's Process, whose children inherit the test pool's blocked SIGTERM (see ProcessRunner.swift).

import Foundation
import SystemPackage
import Testing
import VXIO
import VXPacket
import VXTestSupport

@testable import VXNetlink

/// Why these tests cannot run here, or nil.
let netlinkSystemUnavailable: String? = {
    if !NetnsEnvironment.isRoot { return "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for setns); CI runs as root" }
    if NetnsEnvironment.ipPath == nil { return "needs `ip` (iproute2; tools/install-deps.sh installs it)" }
    if !FileManager.default.fileExists(atPath: "/dev/net/tun") { return "needs /dev/net/tun" }
    return nil
}()

/// A namespace made with `ip netns add vx-<run>-nl<label>`; `delete()` in a defer.
struct ScratchNamespace {
    static let runID = NetnsEnvironment.newRunID()
    let name: String

    init(_ label: String) throws {
        name = "vx-\(Self.runID)-nl\(label)"
        let result = ProcessRunner.runBlocking(["ip", "netns", "add", name], timeout: .seconds(10))
        guard result.succeeded else { throw NetnsError.commandFailed(result) }
    }

    /// Runs `ip -n NAME args…` and returns its output; throws on failure.
    @discardableResult
    func ip(_ arguments: [String]) throws -> String {
        let result = ProcessRunner.runBlocking(["ip", "-n", name] + arguments, timeout: .seconds(10))
        guard result.succeeded else { throw NetnsError.commandFailed(result) }
        return result.stdout
    }

    /// Parses `ip -n NAME -j args…`.
    func json(_ arguments: [String]) throws -> [[String: Any]] {
        let output = try ip(["-j"] + arguments)
        let value = try JSONSerialization.jsonObject(with: Data(output.utf8))
        return value as? [[String: Any]] ?? []
    }

    func delete() {
        _ = ProcessRunner.runBlocking(["ip", "netns", "del", name], timeout: .seconds(10))
    }
}

/// Where spawned processes write their output.
let logDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("vx-nl-\(ScratchNamespace.runID)").path

/// A TAP name nobody else uses: `vxn` + 8 hex digits.
func freshTAPName() -> String {
    let hex = String(UInt32.random(in: 0...UInt32.max), radix: 16)
    return "vxn" + String(repeating: "0", count: 8 - hex.count) + hex
}

@Suite(
    "Namespaces and placement on the real kernel",
    .serialized,
    .enabled(if: netlinkSystemUnavailable == nil, Comment(rawValue: netlinkSystemUnavailable ?? ""))
)
struct NamespaceSystemTests {
    @Test func configuresATAPCreatedInsideANamespace() throws {
        let namespace = try ScratchNamespace("place")
        defer { namespace.delete() }
        let tapName = freshTAPName()
        let opened = try NetworkNamespace(named: namespace.name)
        let tap = try opened.createTAP(named: tapName)
        let configuration = PlacementConfiguration(
            name: "eth1",
            mac: MACAddress(0x02, 0x42, 0x0A, 0x63, 0x00, 0x02),
            mtu: 1400,
            address: InterfaceAddress("10.99.0.2/24"),
            gateway: IPv4Address(10, 99, 0, 1)
        )

        let placed = try InterfacePlacement.configure(interface: tap.name, in: opened, configuration: configuration)
        print("VXNetlink: configuring \(namespace.name)/\(tapName) as eth1 took \(placed.elapsed): \(placed.timings)")
        #expect(placed.name == "eth1" && placed.mtu == 1400)

        // Nothing appeared in our namespace …
        let here = NetlinkSession(socket: try KernelNetlinkSocket())
        #expect(try here.links().allSatisfy { $0.name != tapName && $0.name != "eth1" })
        // … and it is configured in the target, as iproute2 sees it.
        let addr = try #require(try namespace.json(["addr", "show", "dev", "eth1"]).first)
        #expect(addr["ifindex"] as? Int == Int(placed.index))
        #expect(addr["address"] as? String == "02:42:0a:63:00:02")
        #expect(addr["mtu"] as? Int == 1400)
        #expect((addr["flags"] as? [String])?.contains("UP") == true)
        let inet = (addr["addr_info"] as? [[String: Any]] ?? []).filter { $0["family"] as? String == "inet" }
        #expect(inet.count == 1)
        #expect(inet.first?["local"] as? String == "10.99.0.2" && inet.first?["prefixlen"] as? Int == 24)
        #expect(inet.first?["broadcast"] as? String == "10.99.0.255")
        let routes = try namespace.json(["route", "show"])
        let defaultRoute = try #require(routes.first { $0["dst"] as? String == "default" })
        #expect(defaultRoute["gateway"] as? String == "10.99.0.1" && defaultRoute["dev"] as? String == "eth1")

        // Our own dumps agree.
        try opened.withSession { session throws(NetlinkError) in
            let link = try session.link(named: "eth1")
            #expect(link.index == placed.index && link.isUp && link.flags.contains(.lowerUp))
            #expect(try session.addresses(index: link.index).map(\.address) == [InterfaceAddress("10.99.0.2/24")!])
        }
        try tap.fileDescriptor.close()
    }

    /// The TAP is created inside the namespace (no move), then configured there; eight in a row, timed.
    @Test func createsATAPInsideTheNamespaceAndConfiguresItWithoutAMove() throws {
        let namespace = try ScratchNamespace("fast")
        defer { namespace.delete() }
        let opened = try NetworkNamespace(named: namespace.name)
        var durations: [Duration] = []
        for slot in 0..<8 {
            let start = ContinuousClock.now
            let tap = try opened.createTAP(named: "eth\(slot)")
            defer { try? tap.fileDescriptor.close() }
            let placed = try InterfacePlacement.configure(
                interface: tap.name,
                in: opened,
                configuration: PlacementConfiguration(
                    name: "eth\(slot)",
                    mac: MACAddress(0x02, 0x42, 0x0A, 0x65, 0x00, UInt8(slot + 2)),
                    mtu: 1450,
                    address: InterfaceAddress(address: IPv4Address(10, 101, UInt8(slot), 2), prefixLength: 24),
                    gateway: slot == 0 ? IPv4Address(10, 101, 0, 1) : nil
                )
            )
            durations.append(ContinuousClock.now - start)
            if slot == 0 { print("VXNetlink: create-inside + configure steps: \(placed.timings)") }
            let addr = try #require(try namespace.json(["addr", "show", "dev", "eth\(slot)"]).first)
            #expect(addr["address"] as? String == "02:42:0a:65:00:0\(slot + 2)")
            #expect(addr["mtu"] as? Int == 1450 && (addr["flags"] as? [String])?.contains("UP") == true)
            #expect(try namespace.ip(["-4", "addr", "show", "dev", "eth\(slot)"]).contains("10.101.\(slot).2/24"))
        }
        let sorted = durations.sorted()
        print(
            "VXNetlink: 8 TAPs created inside the namespace + configured (no move): "
                + "min \(sorted.first!), median \(sorted[sorted.count / 2]), max \(sorted.last!)"
        )
        #expect(sorted[sorted.count / 2] < .milliseconds(100))
        #expect(try namespace.json(["link", "show"]).compactMap { $0["ifname"] as? String } == ["lo"])
    }

    @Test func renameCollisionLeavesNoStrayInterface() throws {
        let namespace = try ScratchNamespace("clash")
        defer { namespace.delete() }
        let opened = try NetworkNamespace(named: namespace.name)
        // The squatter: another TAP, already called eth0.
        let squatter = try opened.createTAP(named: "eth0")
        defer { try? squatter.fileDescriptor.close() }
        let tapName = freshTAPName()
        let tap = try opened.createTAP(named: tapName)
        defer { try? tap.fileDescriptor.close() }

        do {
            _ = try InterfacePlacement.configure(
                interface: tapName,
                in: opened,
                configuration: PlacementConfiguration(name: "eth0", mtu: 1400, address: InterfaceAddress("10.98.0.2/24"))
            )
            Issue.record("configuring over an existing eth0 succeeded")
        } catch {
            print("VXNetlink: expected failure: \(error)")
            #expect(error.code == .nameTaken && error.step == .rename)
            #expect(error.cleanup == .deleted)
        }
        let names = try namespace.json(["link", "show"]).compactMap { $0["ifname"] as? String }
        #expect(names.sorted() == ["eth0", "lo"], "only the squatter eth0 and lo are in the namespace")
    }

    @Test func configuresInTheNamespaceOfAProcess() async throws {
        let namespace = try ScratchNamespace("pid")
        defer { namespace.delete() }
        let sleeper = try ProcessRunner.spawn(
            ["ip", "netns", "exec", namespace.name, "sleep", "60"],
            logDirectory: logDirectory,
            name: "sleep"
        )
        defer {
            sleeper.stop(grace: .zero)
            try? FileManager.default.removeItem(atPath: logDirectory)
        }
        // `ip netns exec` enters the namespace, then execs sleep in place: wait until the pid is in it.
        let byName = try NetworkNamespace(named: namespace.name)
        let deadline = ContinuousClock.now + .seconds(5)
        while (try? NetworkNamespace(pid: sleeper.pid).identity) != byName.identity {
            try #require(ContinuousClock.now < deadline, "sleep did not enter \(namespace.name)")
            try await Task.sleep(for: .milliseconds(5))
        }

        let byPID = try NetworkNamespace(pid: sleeper.pid)
        #expect(byPID.identity == byName.identity)
        let tap = try byPID.createTAP(named: freshTAPName())
        let placed = try InterfacePlacement.configure(
            interface: tap.name,
            in: byPID,
            configuration: PlacementConfiguration(name: "eth0", address: InterfaceAddress("10.97.0.2/30"))
        )
        print("VXNetlink: configuring by pid \(sleeper.pid) took \(placed.elapsed)")
        let addr = try #require(try namespace.json(["addr", "show", "dev", "eth0"]).first)
        let inet = (addr["addr_info"] as? [[String: Any]] ?? []).first { $0["family"] as? String == "inet" }
        #expect(inet?["local"] as? String == "10.97.0.2")

        // The watch by pid sees the process go.
        let watch = NamespaceWatch(byPID)
        #expect(watch.cookie != nil)
        #expect(watch.status() == .alive)
        sleeper.signal(SIGKILL)
        _ = await sleeper.waitForExit(timeout: .seconds(5))
        #expect(watch.status() == .gone(.notFound))
        try? tap.fileDescriptor.close()
    }

    @Test func identitySaysGoneAfterNetnsDelAndReplacedAfterReAdd() throws {
        let namespace = try ScratchNamespace("ident")
        defer { namespace.delete() }
        let watch: NamespaceWatch
        do {
            let opened = try NetworkNamespace(named: namespace.name)
            watch = NamespaceWatch(opened)
            #expect(watch.identity.inode != 0 && watch.cookie != nil)
        }  // the descriptor is closed here: watching must not keep the namespace alive
        #expect(watch.isAlive)

        namespace.delete()
        #expect(watch.status() == .gone(.notFound))

        // A new namespace under the same name is not the old one, even if it reuses the inode number.
        let again = try ScratchNamespace("ident")
        defer { again.delete() }
        #expect(watch.status() == .gone(.replaced))
        let fresh = try NetworkNamespace(named: again.name)
        print(
            "VXNetlink: old \(watch.identity) cookie \(watch.cookie ?? 0), new \(fresh.identity) cookie \(try fresh.cookie())"
        )
    }

    @Test func reportsMissingNamespaces() throws {
        let missingName = "vx-\(ScratchNamespace.runID)-nlmissing"
        do {
            _ = try NetworkNamespace(named: missingName)
            Issue.record("opened a namespace that does not exist")
        } catch {
            #expect(error.code == .namespaceNotFound && error.errno == .noSuchFileOrDirectory)
            #expect(error.description.contains("no network namespace named"))
        }
        do {
            _ = try NetworkNamespace(.path("/proc/self/status"))  // a file, but not an nsfs one
            Issue.record("opened a regular file as a namespace")
        } catch {
            #expect(error.code == .namespaceNotFound)
        }
        do {
            _ = try NetworkNamespace(.path("/proc/self/ns/uts"))  // a namespace, but not a network one
            Issue.record("opened a UTS namespace as a network namespace")
        } catch {
            #expect(error.code == .namespaceNotFound && error.errno == .invalidArgument)
        }
        let uts = try FileDescriptor.open(FilePath("/proc/self/ns/uts"), .readOnly, options: [.closeOnExec])
        defer { try? uts.close() }
        do {
            _ = try KernelNetlinkSocket.open(inNamespaceDescriptor: uts)
            Issue.record("opened a netlink socket \"inside\" a UTS namespace")
        } catch {
            #expect(error.code == .system && error.errno == .invalidArgument)
        }
    }

    /// Each operation on its own against the kernel: a TAP moved into a scratch namespace, then changed there.
    @Test func eachOperationWorksOnTheKernel() throws {
        let namespace = try ScratchNamespace("ops")
        defer { namespace.delete() }
        let tapName = freshTAPName()
        let tap = try TAPDevice(name: tapName)
        let opened = try NetworkNamespace(named: namespace.name)
        let here = NetlinkSession(socket: try KernelNetlinkSocket())
        try here.setLinkNamespace(index: try here.linkIndex(named: tapName), to: opened.linkTarget)
        try opened.withSession { session throws(NetlinkError) in
            let index = try session.linkIndex(named: tapName)
            try session.renameLink(index: index, to: "d1")
            try session.setLinkAddress(index: index, MACAddress(0x02, 0, 0, 0, 0, 0x42))
            try session.setLinkMTU(index: index, 1280)
            try session.setLinkUp(index: index, true)
            var link = try session.link(index: index)
            #expect(link.name == "d1" && link.mtu == 1280 && link.isUp)
            #expect(link.mac == MACAddress(0x02, 0, 0, 0, 0, 0x42))

            // Renaming a link that is up works on this kernel (older kernels refused with EBUSY, which is why
            // the placement sets the link down first); an unknown name is ENODEV.
            try session.renameLink(index: index, to: "d2")
            #expect(try session.link(index: index).name == "d2")
            do throws(NetlinkError) {
                _ = try session.link(named: "nosuchlink0")
                Issue.record("found nosuchlink0")
            } catch {
                #expect(error.code == .kernel && error.errno == .operationNotSupportedByDevice)
            }

            let address = InterfaceAddress("10.96.0.2/24")!
            try session.addAddress(index: index, address)
            do throws(NetlinkError) {
                try session.addAddress(index: index, address)
                Issue.record("added the same address twice")
            } catch {
                #expect(error.errno == .fileExists)
            }
            #expect(try session.addresses(index: index).map(\.address) == [address])
            try session.addDefaultRoute(via: IPv4Address(10, 96, 0, 1), index: index)
            try session.deleteDefaultRoute(via: IPv4Address(10, 96, 0, 1))
            try session.deleteAddress(index: index, address)
            #expect(try session.addresses(index: index).isEmpty)

            // A gateway no connected route reaches comes back as ENETUNREACH with the kernel's extended-ACK text.
            do throws(NetlinkError) {
                try session.addDefaultRoute(via: IPv4Address(192, 0, 2, 1), index: index)
                Issue.record("added a route via an unreachable gateway")
            } catch {
                print("VXNetlink: kernel error as reported: \(error)")
                #expect(error.errno == .networkUnreachable)
                #expect(error.detail?.isEmpty == false, "NETLINK_EXT_ACK delivers the kernel's message")
            }

            try session.setLinkUp(index: index, false)
            link = try session.link(index: index)
            #expect(!link.isUp)
            try session.deleteLink(index: index)
            #expect(try session.links().map(\.name) == ["lo"])
        }
        #expect(try namespace.json(["link", "show"]).compactMap { $0["ifname"] as? String } == ["lo"])
        tap.close()
    }

    /// IFLA_NET_NS_PID moves a link into a process's namespace.
    @Test func movesALinkByPID() async throws {
        let destination = try ScratchNamespace("dstpid")
        defer { destination.delete() }
        let sleeper = try ProcessRunner.spawn(
            ["ip", "netns", "exec", destination.name, "sleep", "60"],
            logDirectory: logDirectory,
            name: "sleep-move"
        )
        defer {
            sleeper.stop(grace: .zero)
            try? FileManager.default.removeItem(atPath: logDirectory)
        }
        let destinationIdentity = try NetworkNamespace(named: destination.name).identity
        let deadline = ContinuousClock.now + .seconds(5)
        while (try? NetworkNamespace(pid: sleeper.pid).identity) != destinationIdentity {
            try #require(ContinuousClock.now < deadline, "sleep did not enter \(destination.name)")
            try await Task.sleep(for: .milliseconds(5))
        }

        let tapName = freshTAPName()
        let tap = try TAPDevice(name: tapName)
        let here = NetlinkSession(socket: try KernelNetlinkSocket())
        try here.setLinkNamespace(index: try here.linkIndex(named: tapName), to: .processID(sleeper.pid))
        let names = try destination.json(["link", "show"]).compactMap { $0["ifname"] as? String }
        #expect(names.sorted() == ["lo", tapName])
        tap.close()
    }
}

/// Locators are checked before anything is opened; this needs no privilege.
@Suite("Namespace locators")
struct NamespaceLocatorTests {
    @Test(arguments: [NamespaceLocator.name(""), .name("a/b"), .name(".."), .pid(0), .pid(-4), .path("")])
    func malformedLocatorsAreRefusedBeforeOpening(_ locator: NamespaceLocator) {
        do {
            _ = try NetworkNamespace(locator)
            Issue.record("\(locator) accepted")
        } catch {
            #expect(error.code == .invalidArgument)
        }
    }

    @Test func locatorsNameTheirFiles() {
        #expect(NamespaceLocator.name("blue").path == "/run/netns/blue")
        #expect(NamespaceLocator.pid(42).path == "/proc/42/ns/net")
        #expect(NamespaceLocator.path("/var/run/docker/netns/x").path == "/var/run/docker/netns/x")
    }
}
