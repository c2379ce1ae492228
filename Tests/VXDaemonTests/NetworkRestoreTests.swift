// Networks, attachments and leases coming back from the state file when a new daemon starts on it, in-process: the
// daemon runs on a MemoryEngine with the fake host, while `attach` works on a real network namespace this test
// creates (`vx-<run id>-rst`, deleted in a defer), because attach creates the container's TAP there itself. Root
// only, like the other namespace tests.

import Foundation
import Testing
import VXControl

@testable import VXDaemon

/// A network namespace this test owns, via `ip netns`.
private struct ScratchNetns: ~Copyable {
    let name = "vx-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))-rst"

    init() throws {
        try #require(Self.ip(["netns", "add", name]) == 0, "ip netns add failed")
    }

    deinit { _ = try? Self.ip(["netns", "del", name]) }

    @discardableResult
    static func ip(_ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["ip"] + arguments
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }  // our own child, by PID
        process.waitUntilExit()
        return process.terminationStatus
    }
}

@Suite("networks restored from the state file", .serialized, .enabled(if: getuid() == 0, "needs root for namespaces"))
struct NetworkRestoreTests {
    func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "vx-state-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test("a network with a DHCP range, its static and automatic attachments and their leases come back exactly")
    func networksAttachmentsAndLeasesSurviveARestart() async throws {
        let netns = try ScratchNetns()
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/state.json"

        let methods = ["network-ls", "leases", "show"]
        var before: [String: String] = [:]
        do {
            let first = try InProcessSwitch(statePath: path, largeBuffers: 8)
            _ = try await first.result(
                "network-create",
                #"{"name":"net1","vni":4100,"subnet":"10.77.0.0/24","range":"10.77.0.100-10.77.0.199","gateway":"10.77.0.1","dhcp":true}"#)
            _ = try await first.result("network-create", #"{"name":"net2","vni":4200,"subnet":"10.78.0.0/24"}"#)
            let fixed = try await first.result(
                "attach", #"{"network":"net1","netns":"\#(netns.name)","ifname":"eth0","ip":"10.77.0.5/24","mac":"02:00:00:77:00:05"}"#)
            #expect(fixed["ip"] as? String == "10.77.0.5/24")
            let automatic = try await first.result(
                "attach", #"{"network":"net2","netns":"\#(netns.name)","ifname":"eth1","ip":"auto"}"#)
            #expect(automatic["ip"] as? String == "10.78.0.1/24")
            for method in methods { before[method] = try await first.canonical(method) }
            let leases = try #require(try await first.result("leases")["leases"] as? [[String: Any]])
            #expect(leases.compactMap { $0["ip"] as? String }.sorted() == ["10.77.0.5", "10.78.0.1"])
            first.daemon.shutdown()
        }

        let second = try InProcessSwitch(statePath: path, largeBuffers: 8)
        for method in methods {
            #expect(try await second.canonical(method) == before[method], "\(method) after the restart")
        }
        // Restored for real: the lease still holds its address, and detach finds the attachment.
        #expect(try await second.errorMessage(
            "attach", #"{"network":"net1","netns":"\#(netns.name)","ifname":"eth2","ip":"10.77.0.5/24"}"#
        ).contains("10.77.0.5"))
        let detached = try await second.result("detach", #"{"netns":"\#(netns.name)","ifname":"eth0"}"#)
        #expect((detached["detached"] as? [[String: Any]])?.count == 1)
        second.daemon.shutdown()
    }

    @Test("a network record that cannot be restored stops the start with the path and the network named")
    func unrestorableNetworkIsReportedNotDropped() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/state.json"
        do {
            let sw = try InProcessSwitch(statePath: path, largeBuffers: 8)
            _ = try sw.daemon.createNetwork(
                named: "net1", vni: try #require(.init(4100)), subnet: try #require(.init("10.77.0.0/24")), range: nil,
                gateway: nil, dhcp: false)
            sw.daemon.shutdown()
        }
        // Give the network a VNI out of range (24 bits) in an otherwise well-formed file.
        let saved = try String(contentsOfFile: path, encoding: .utf8)
        let broken = saved.replacingOccurrences(
            of: #""vni"\s*:\s*4100\b"#, with: #""vni":99999999"#, options: .regularExpression)
        try #require(broken != saved)
        try broken.write(toFile: path, atomically: true, encoding: .utf8)

        #expect {
            _ = try InProcessSwitch(statePath: path, largeBuffers: 8)
        } throws: { error in
            let text = "\(error)"
            return text.contains(path) && text.contains("net1")
        }
        // Nothing was lost: the file is as it was, for the operator to repair.
        #expect(try String(contentsOfFile: path, encoding: .utf8) == broken)
    }
}
