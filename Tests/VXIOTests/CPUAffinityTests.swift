// CPUAffinity counts the CPUs in the thread's affinity mask: checked against the kernel's own list of them in
// /proc (Cpus_allowed_list, e.g. "0-3,8"). Narrowing the mask is the system test's job (vxswitchd under taskset).

import Foundation
import Testing
import VXIO

@Suite("CPUAffinity")
struct CPUAffinityTests {
    @Test func countsTheCPUsTheKernelListsForThisThread() throws {
        let status = try String(contentsOfFile: "/proc/thread-self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") })
        let list = line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces)
        var listed = 0
        for range in list.split(separator: ",") {
            let bounds = range.split(separator: "-").compactMap { Int($0) }
            listed += bounds.count == 2 ? bounds[1] - bounds[0] + 1 : 1
        }
        #expect(listed >= 1)
        #expect(CPUAffinity.usableCPUCount() == listed, "Cpus_allowed_list: \(list)")
    }
}
