// swift-tools-version: 6.2
// vxswitch: a user-space VXLAN/GRE switch dataplane for Linux.
//
// Module layering (dependencies point down only; see docs/architecture.md):
//   vxswitchd, vxctl            executables
//   VXDataplane                 worker loop (rx batch -> decap -> learn -> forward -> encap -> tx batch)
//   VXControl                   control protocol types and framing (no sockets)
//   VXNetlink                   rtnetlink client, network namespaces, interface placement (control path only)
//   VXDocker                    Docker Engine API client: a container's PID (on VXUnixSocket only)
//   VXUnixSocket                Unix stream sockets for the control path: syscall funnel, addresses, deadlines
//   VXIO                        ports: TAP, UDP, raw GRE, io_uring, epoll, pcap, in-memory
//   VXForwarding                MAC table, learning, aging, flood lists, the switching decision
//   VXOffload                   virtio-net offloads: TSO segmentation, TCP coalescing (GRO), checksum completion
//   VXDHCP                      DHCP server for --dhcp networks: codec, frames, lease table (no sockets)
//   VXPacket                    wire formats; imports nothing but the standard library
//   CVXLinux, CLibURing, CLibPcap   the C boundary
import PackageDescription

let strictSafety: [SwiftSetting] = [.strictMemorySafety()]

// The hot-path modules. Their state lives in final classes owned by one worker thread (the worker, its engine,
// its pool), and Swift checks every access to such a class's stored properties at run time for overlapping
// modification (swift_beginAccess, a thread-local access set). Per frame that cost 3-4% of the machine's samples
// under offloaded TCP and ~9% of throughput (docs/performance.md, "Exclusivity checks"). Debug builds, which every
// test runs, keep the checks, so an overlapping access still traps there; release builds of these modules trust
// what the tests showed, as they already trust the bounds the tests exercised.
let hotPath: [SwiftSetting] = strictSafety + [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))
]

let package = Package(
    name: "vxswitch",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "VXPacket", targets: ["VXPacket"]),
        .library(name: "VXForwarding", targets: ["VXForwarding"]),
        .library(name: "VXOffload", targets: ["VXOffload"]),
        .library(name: "VXDHCP", targets: ["VXDHCP"]),
        .library(name: "VXIO", targets: ["VXIO"]),
        .library(name: "VXDataplane", targets: ["VXDataplane"]),
        .library(name: "VXControl", targets: ["VXControl"]),
        .library(name: "VXControlSocket", targets: ["VXControlSocket"]),
        .library(name: "VXDaemon", targets: ["VXDaemon"]),
        .library(name: "VXTestSupport", targets: ["VXTestSupport"]),
        .library(name: "VXNetlink", targets: ["VXNetlink"]),
        .library(name: "VXDocker", targets: ["VXDocker"]),
        .executable(name: "vxswitchd", targets: ["vxswitchd"]),
        .executable(name: "vxctl", targets: ["vxctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        // MARK: C boundary
        .systemLibrary(name: "CLibURing", pkgConfig: "liburing", providers: [.apt(["liburing-dev"])]),
        .systemLibrary(name: "CLibPcap", pkgConfig: "libpcap", providers: [.apt(["libpcap-dev"])]),
        .target(name: "CVXLinux", dependencies: ["CLibURing"], cSettings: [.define("_GNU_SOURCE")]),

        // MARK: Pure Swift core (no syscalls)
        .target(name: "VXPacket", swiftSettings: hotPath),
        .target(name: "VXForwarding", dependencies: ["VXPacket"], swiftSettings: hotPath),
        .target(name: "VXOffload", dependencies: ["VXPacket"], swiftSettings: hotPath),
        .target(name: "VXControl", dependencies: ["VXPacket"]),
        // VXDHCP answers DHCP on local ports for networks created with --dhcp: it takes a client frame and
        // returns the reply frame, and owns the lease table the daemon also allocates static addresses from.
        .target(name: "VXDHCP", dependencies: ["VXPacket"], swiftSettings: strictSafety),

        // MARK: System I/O and the worker loop
        .target(
            name: "VXIO",
            dependencies: [
                "VXPacket", "CVXLinux", "CLibURing", "CLibPcap",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: hotPath
        ),
        .target(
            name: "VXDataplane",
            dependencies: [
                "VXPacket", "VXForwarding", "VXIO", "VXDHCP", "VXOffload",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: hotPath
        ),
        .target(name: "VXTestSupport", dependencies: ["VXPacket", "VXForwarding", "VXIO"]),

        // MARK: Interface placement
        // VXNetlink: rtnetlink messages and attributes in pure Swift (byte-buffer encode/decode, testable without
        // sockets), the NETLINK_ROUTE socket, network namespaces (open by name or pid, sockets opened inside one,
        // identity checks), and InterfacePlacement, which moves a TAP into a container's namespace and configures it.
        .target(
            name: "VXNetlink",
            dependencies: ["VXPacket", "CVXLinux", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strictSafety
        ),

        // MARK: Control-path sockets
        // VXUnixSocket: Unix stream sockets (socket/bind/listen/accept/connect, send/recv, poll until a deadline)
        // through one EINTR/errno funnel, shared by VXControlSocket and VXDocker so neither depends on the other.
        // `package` API and no product: an implementation detail of those two.
        .target(name: "VXUnixSocket", dependencies: [.product(name: "SystemPackage", package: "swift-system")]),

        // MARK: Control plane
        // VXControlSocket carries VXControl's messages over a Unix stream socket (server and client), so
        // VXControl itself stays free of syscalls and testable on byte buffers.
        .target(
            name: "VXControlSocket",
            dependencies: ["VXControl", "VXUnixSocket", .product(name: "SystemPackage", package: "swift-system")]
        ),
        // VXDaemon is vxswitchd minus main(): switch state, control handlers, worker threads. A library so
        // tests can run a whole switch in-process on in-memory ports.
        .target(
            name: "VXDaemon",
            dependencies: [
                "VXDataplane", "VXControl", "VXControlSocket", "VXIO", "VXForwarding", "VXPacket", "VXDHCP",
                "VXNetlink", "VXDocker", "VXOffload",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // MARK: Container runtimes
        // VXDocker asks the Docker engine for a container's PID over /var/run/docker.sock (Engine API, HTTP/1.1),
        // so `vxctl attach --docker` can reach the container's network namespace without the docker CLI.
        .target(
            name: "VXDocker",
            dependencies: ["VXUnixSocket", .product(name: "SystemPackage", package: "swift-system")]
        ),
        // A fake engine on a Unix socket, for VXDocker's tests and any other test that attaches to a container.
        // No product: test-only, with `package` access.
        .target(
            name: "VXDockerTesting",
            dependencies: ["VXDocker", "VXUnixSocket", .product(name: "SystemPackage", package: "swift-system")]
        ),

        // MARK: Programs
        .executableTarget(
            name: "vxswitchd",
            dependencies: [
                "VXDaemon", "VXDataplane", "VXIO", "VXControl", "VXPacket",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "vxctl",
            dependencies: [
                "VXControl", "VXControlSocket", "VXPacket",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: Tests
        .testTarget(
            name: "VXPacketTests",
            dependencies: [
                "VXPacket", "VXTestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "VXForwardingTests",
            dependencies: [
                "VXForwarding", "VXPacket", "VXTestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(
            name: "VXOffloadTests",
            dependencies: [
                "VXOffload", "VXPacket", "VXTestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(
            name: "VXDHCPTests",
            dependencies: [
                "VXDHCP", "VXPacket", "VXTestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(name: "VXIOTests", dependencies: ["VXIO", "VXPacket", "VXTestSupport"]),
        .testTarget(name: "VXDataplaneTests", dependencies: ["VXDataplane", "VXOffload", "VXTestSupport"]),
        .testTarget(name: "VXControlTests", dependencies: ["VXControl", "VXControlSocket"]),
        .testTarget(
            name: "VXDaemonTests",
            dependencies: ["VXDaemon", "VXControl", "VXControlSocket", "VXDocker", "VXNetlink", "VXTestSupport"]),
        .testTarget(
            name: "VXNetlinkTests",
            dependencies: ["VXNetlink", "VXPacket", "VXIO", "VXTestSupport"],
            swiftSettings: strictSafety
        ),
        .testTarget(name: "VXDockerTests", dependencies: ["VXDocker", "VXDockerTesting", "VXUnixSocket"]),
        .testTarget(
            name: "VXSystemTests",
            dependencies: ["VXTestSupport", "VXControl", "VXControlSocket", "VXPacket", "VXDockerTesting"]
        ),
    ]
)
