// Can this machine run the namespace-based system tests? One place answers, so every suite skips with the same
// message, in the style of containerization's `.enabled(if: hasRegistryCredentials)`.

import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Facts about the machine that decide whether netns tests can run, and the tools they use.
public enum NetnsEnvironment {
    /// `ip` from iproute2, or nil.
    public static let ipPath: String? = ProcessRunner.findExecutable(
        "ip",
        candidates: ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
    )
    /// `bridge` from iproute2 (kernel VXLAN peers with more than one remote need it), or nil.
    public static let bridgePath: String? = ProcessRunner.findExecutable(
        "bridge",
        candidates: ["/usr/sbin/bridge", "/sbin/bridge", "/usr/bin/bridge", "/bin/bridge"]
    )
    /// `ping` from iputils, or nil.
    public static let pingPath: String? = ProcessRunner.findExecutable(
        "ping",
        candidates: ["/usr/bin/ping", "/bin/ping"]
    )
    /// The system python3 (preferred over a pyenv shim, which is slower to start), or nil.
    public static let python3Path: String? = ProcessRunner.findExecutable(
        "python3",
        candidates: ["/usr/bin/python3"]
    )

    /// True when running as root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN).
    public static var isRoot: Bool { geteuid() == 0 }

    /// Why `NetnsTopology` cannot run here, or nil when it can. Covers the namespaces themselves, ping and the
    /// TCP transfer check, so a suite needs just this one gate.
    public static let unavailableReason: String? = {
        #if os(Linux)
        if !isRoot { return "netns system tests need root (CI runs them as root); skipped" }
        if ipPath == nil { return "netns system tests need `ip` (iproute2; tools/install-deps.sh installs it)" }
        if pingPath == nil { return "netns system tests need `ping` (iputils-ping; tools/install-deps.sh)" }
        if python3Path == nil { return "netns system tests need python3 (tools/install-deps.sh installs it)" }
        return nil
        #else
        return "netns system tests need Linux network namespaces"
        #endif
    }()

    /// True when `NetnsTopology` can run here. Use as `@Suite(.enabled(if: NetnsEnvironment.isAvailable, ...))`.
    public static var isAvailable: Bool { unavailableReason == nil }

    /// A fresh run id: 6 random lowercase hex digits, so parallel runs (other engineers, CI retries) never pick
    /// the same namespace names. Namespace names are `vx-<run id>-...`.
    public static func newRunID() -> String {
        let value = UInt32.random(in: 0...0xFF_FFFF)
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 6 - hex.count) + hex
    }

    /// The `tools/` directory of this checkout, located from this source file (tests always run from a checkout).
    public static let toolsDirectory: String = {
        var url = URL(fileURLWithPath: #filePath)  // <repo>/Sources/VXTestSupport/NetnsEnvironment.swift
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("tools").path
    }()
}
