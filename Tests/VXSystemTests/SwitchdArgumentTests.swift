// vxswitchd's command line: every bad argument is refused before anything is opened, with a message that names
// the option and the accepted range, and exit status 64 (EX_USAGE, swift-argument-parser's validation status).
// No root needed: validation runs before the daemon touches a socket or a TAP.

import Testing
import VXTestSupport

@Suite("vxswitchd refuses bad arguments")
struct SwitchdArgumentTests {
    struct Refusal: Sendable, CustomStringConvertible {
        var arguments: [String]
        /// A fragment the message on stderr must contain.
        var message: String

        var description: String { "vxswitchd \(arguments.joined(separator: " "))" }
    }

    /// Each row is a valid command line but for one argument. `--state none` and a control path under /tmp that
    /// is never created keep a row that was wrongly accepted from touching real state; the 5 s timeout ends it.
    static let refusals: [Refusal] = [
        "0.0.0.0", "224.0.0.1", "192.0.2.300", "255.255.255.255", "::", "ff02::1", "fe80::1", "2001:db8::1::2",
    ].map { Refusal(arguments: ["--local", $0], message: "--local must be this host's unicast IPv4 or IPv6 address") } + [
        Refusal(arguments: ["--udp-port", "0"], message: "--udp-port must be 1-65535, not 0"),
        Refusal(arguments: ["--udp-port", "65536"], message: "--udp-port must be 1-65535, not 65536"),
        Refusal(arguments: ["--log-level", "loud"], message: "--log-level must be one of trace"),
        Refusal(arguments: ["--table-size", "1000"], message: "--table-size must be 1024-16777216 entries"),
        Refusal(arguments: ["--table-size", "16777217"], message: "--table-size must be 1024-16777216 entries"),
        Refusal(arguments: ["--aging", "0"], message: "--aging must be 1-65000 seconds"),
        Refusal(arguments: ["--busy-poll=-1"], message: "--busy-poll must be 0-10000 microseconds, not -1"),
        Refusal(arguments: ["--busy-poll", "10001"], message: "--busy-poll must be 0-10000 microseconds, not 10001"),
        Refusal(arguments: ["--io", "fast"], message: "fast"),
        Refusal(arguments: ["--workers", "0"], message: "--workers must be 1-64, not 0"),
        Refusal(arguments: ["--workers", "65"], message: "--workers must be 1-64, not 65"),
        Refusal(arguments: ["--workers", "many"], message: "The value 'many' is invalid for '--workers <count>'"),
        Refusal(arguments: ["--state", ""], message: "--state needs a path, or none"),
        Refusal(arguments: ["--underlay-gateway", "192.0.2.254"], message: "--underlay-gateway and --underlay-mac need --underlay-tap"),
        Refusal(arguments: ["--underlay-tap", "a-name-far-too-long"], message: "--underlay-tap must be an interface name of 1-15 bytes"),
        Refusal(arguments: ["--underlay-tap", "vxul0", "--underlay-prefix-length", "33"], message: "--underlay-prefix-length must be 1-32, not 33"),
        Refusal(arguments: ["--underlay-tap", "vxul0", "--underlay-prefix-length", "0"], message: "--underlay-prefix-length must be 1-32, not 0"),
        Refusal(arguments: ["--underlay-tap", "vxul0", "--underlay-gateway", "224.0.0.1"], message: "--underlay-gateway must be a unicast IPv4 address"),
        Refusal(arguments: ["--underlay-tap", "vxul0", "--underlay-mac", "01:00:5e:00:00:01"], message: "--underlay-mac must be a unicast MAC address"),
        // Both passed the old checks and trapped in the neighbour table's preconditions.
        Refusal(arguments: ["--underlay-tap", "vxul0", "--underlay-gateway", "255.255.255.255"], message: "--underlay-gateway must be a unicast IPv4 address"),
        Refusal(arguments: ["--underlay-tap", "vxul0", "--underlay-gateway", "240.0.0.1"], message: "--underlay-gateway must be a unicast IPv4 address"),
        Refusal(arguments: ["--underlay-prefix-length", "16"], message: "--underlay-prefix-length needs --underlay-tap"),
        Refusal(arguments: ["--underlay-bridge", "brul"], message: "--underlay-bridge needs --underlay-tap"),
        Refusal(arguments: ["--underlay-tap", "vxul0", "--underlay-bridge", "a-name-far-too-long"], message: "--underlay-bridge must be an interface name of 1-15 bytes"),
        Refusal(arguments: ["--underlay-tap", "vx:0"], message: "must not contain ':'"),
    ]

    @Test("bad argument", arguments: refusals)
    func refused(_ refusal: Refusal) async throws {
        let daemon = try SwitchBinaries.vxswitchd()
        // Later options win in swift-argument-parser, so the row's argument overrides the valid default before it.
        let arguments = [daemon, "--local", "192.0.2.10", "--control", "/tmp/vx-args-never-created.sock",
                         "--state", "none"] + refusal.arguments
        let result = try await ProcessRunner.run(arguments, timeout: .seconds(5))
        #expect(!result.timedOut, "vxswitchd accepted \(refusal) and kept running")
        #expect(result.status == 64, "\(refusal): exit status \(result.status), stderr: \(result.stderr)")
        #expect(result.stderr.contains(refusal.message), "\(refusal): stderr was: \(result.stderr)")
    }
}
