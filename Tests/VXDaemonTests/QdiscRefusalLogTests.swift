// The daemon's side of the noqueue qdisc (SwitchHost.swift, KernelHost.createPort): when the kernel refuses it, the
// port still works and the log says which TAP kept the default and why. The system tests check the qdisc itself.

import Testing
@testable import VXDaemon

@Suite("a TAP that keeps the kernel's default queueing discipline is logged")
struct QdiscRefusalLogTests {
    /// KernelHost reports a refused noqueue (a kernel without traffic control) in the descriptor; the port works and
    /// the daemon warns once, naming the TAP and the kernel's answer. A port that got noqueue is not mentioned.
    @Test func addPortWarnsWithTheNameAndTheRefusal() async throws {
        let log = CapturedErrors(minimumLevel: .warning)
        let sw = try InProcessSwitch(
            configure: { $0.qdiscRefusals.withLock { $0["tap1"] = "RTM_NEWQDISC: EOPNOTSUPP" } }, logger: log.logger)
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        _ = try await sw.result("add-port", #"{"name":"tap2","vni":42}"#)
        let warnings = log.messages.withLock { $0 }.filter { $0.contains("queueing discipline") }
        #expect(warnings.count == 1, "\(warnings)")
        #expect(warnings.first?.hasPrefix("tap1 keeps the kernel's default queueing discipline") == true, "\(warnings)")
        #expect(warnings.first?.hasSuffix("RTM_NEWQDISC: EOPNOTSUPP") == true, "\(warnings)")
    }
}
