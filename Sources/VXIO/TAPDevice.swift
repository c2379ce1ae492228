// TAP devices: the switch's access ports.
//
// A `TAPDevice` owns one /dev/net/tun file descriptor attached to a TAP interface (IFF_TAP | IFF_NO_PI: one
// Ethernet frame per read and per write). The engine reads and writes that descriptor; everything else here
// (persist, MTU, up/down, ifindex, MAC) is control path and runs at setup.
//
// Lifecycle (see docs/io-backends.md, "TAP lifecycle"):
//   - `TAPDevice(name:)` creates the interface, or attaches to an existing TAP of that name.
//   - Not persistent (the default): the interface disappears when the last descriptor closes, i.e. when this
//     value is deinitialized or `close()`d. A crashed daemon leaves nothing behind.
//   - Persistent (`setPersistent(true)`): the interface outlives the descriptor; `delete()` clears the flag
//     and closes, which removes it.
//   - `ip link set TAP netns NS` moves the interface, not the descriptor: frames keep flowing through this
//     descriptor. The name-based ioctls (MTU, up/down, ifindex, MAC) then fail with ENODEV in our namespace,
//     because they look the name up in the namespace of our control socket.
//
// Thread-safety: the value is ~Copyable and not Sendable; the fd it hands to an engine is used by that engine's
// worker thread only.

#if os(Linux)
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
internal import CVXLinux
import SystemPackage
import VXPacket

/// A TAP interface and the descriptor that carries its frames. Closing the descriptor (deinit) removes a
/// non-persistent interface.
public struct TAPDevice: ~Copyable, Sendable {
    /// How the TAP is opened.
    public struct Options: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        /// IFF_VNET_HDR with a 12-byte header (struct virtio_net_hdr_v1) in front of every frame read and written.
        public static let virtioHeader = Options(rawValue: CVX_TAP_VNET_HDR)
        /// IFF_MULTI_QUEUE: this descriptor is one queue of a multi-queue TAP; open the same name again for more.
        public static let multiQueue = Options(rawValue: CVX_TAP_MULTI_QUEUE)
    }

    /// What the kernel may hand over in one read of a TAP opened with `.virtioHeader` (TUNSETOFFLOAD flags).
    public struct Offloads: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        /// TUN_F_CSUM: frames may carry a partial L4 checksum (NEEDS_CSUM) for the reader to complete.
        public static let checksum = Offloads(rawValue: CVX_TUN_F_CSUM)
        /// TUN_F_TSO4: TCP over IPv4 in bursts up to 64 KiB (gso_type TCPV4) for the reader to segment.
        public static let tso4 = Offloads(rawValue: CVX_TUN_F_TSO4)
        /// TUN_F_TSO6: TCP over IPv6 in bursts up to 64 KiB (gso_type TCPV6).
        public static let tso6 = Offloads(rawValue: CVX_TUN_F_TSO6)

        /// TUN_F_USO4: runs of UDP datagrams over IPv4 (gso_type UDP_L4) for the reader to split. Only together with
        /// `.uso6` (TUNSETOFFLOAD refuses one without the other).
        public static let uso4 = Offloads(rawValue: CVX_TUN_F_USO4)
        /// TUN_F_USO6: the same over IPv6.
        public static let uso6 = Offloads(rawValue: CVX_TUN_F_USO6)

        /// TUN_F_UDP_TUNNEL_GSO (Linux 6.17+): TCP bursts encapsulated in UDP (VXLAN), one frame each way, described
        /// by the 24-byte tunnel header (`VirtioNetTunnelHeader`, needs `setVirtioHeaderSize(24)` first).
        public static let udpTunnelGSO = Offloads(rawValue: CVX_TUN_F_UDP_TUNNEL_GSO)
        /// TUN_F_UDP_TUNNEL_GSO_CSUM: such bursts may also leave their outer UDP checksum partial.
        public static let udpTunnelGSOChecksum = Offloads(rawValue: CVX_TUN_F_UDP_TUNNEL_GSO_CSUM)

        /// What switch ports use: checksum offload and TSO for both IP versions (VXOffload handles all three).
        public static let tcp: Offloads = [.checksum, .tso4, .tso6]
        /// What the underlay TAP uses: TCP bursts over the UDP tunnel, and runs of VXLAN datagrams to one peer as
        /// one UDP_L4 frame, both ways (docs/offload.md, "The TAP underlay"). The kernel only accepts the tunnel
        /// flags together with checksum offload and TSO.
        public static let underlay: Offloads = [
            .checksum, .tso4, .tso6, .uso4, .uso6, .udpTunnelGSO, .udpTunnelGSOChecksum,
        ]
    }

    /// Size of the virtio-net header in front of every frame with `.virtioHeader` (set with TUNSETVNETHDRSZ):
    /// `struct virtio_net_hdr_v1`, see VXOffload's `VirtioNetHeader`.
    public static let virtioHeaderLength = PortKind.virtioHeaderLength

    /// The interface name the kernel settled on (a `%d` in the requested name is replaced).
    public let name: String
    /// The descriptor (non-blocking, close-on-exec). Owned by this value: do not close it yourself.
    public let fileDescriptor: FileDescriptor
    /// The options it was opened with.
    public let options: Options

    /// The `PortKind` to register this TAP's descriptor with.
    public var portKind: PortKind { .tap(virtioHeader: options.contains(.virtioHeader)) }

    /// Creates TAP interface `name`, or attaches to the existing TAP of that name.
    /// - Parameters:
    ///   - name: at most 15 bytes; may contain one `%d` for the kernel to number.
    ///   - options: virtio header, multi-queue.
    /// - Throws: `IOError` with operation "TUNSETIFF <name>"; EBUSY/EINVAL when the name belongs to an interface
    ///   that is not a TAP or is a TAP opened with other flags or already attached; EPERM without CAP_NET_ADMIN.
    /// The corresponding C function is `cvx_tap_open` (open("/dev/net/tun") + ioctl(TUNSETIFF)).
    public init(name: String, options: Options = []) throws(IOError) {
        var nameOut = [CChar](repeating: 0, count: 16)
        let rc = unsafe nameOut.withUnsafeMutableBufferPointer { out in
            unsafe cvx_tap_open(name, options.rawValue, out.baseAddress)
        }
        guard rc >= 0 else {
            throw IOError(errno: -rc, operation: "TUNSETIFF \(name)", hint: Self.openHint(-rc, name: name))
        }
        if options.contains(.virtioHeader) {
            let sizeRC = cvx_tap_set_vnet_header_size(rc, Int32(Self.virtioHeaderLength))
            if sizeRC < 0 {
                closeDescriptor(rc)
                throw IOError(errno: -sizeRC, operation: "TUNSETVNETHDRSZ \(name)")
            }
        }
        self.fileDescriptor = FileDescriptor(rawValue: rc)
        self.options = options
        self.name = String(decoding: nameOut.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit {
        closeDescriptor(fileDescriptor.rawValue)
    }

    private static func openHint(_ code: Int32, name: String) -> String? {
        switch code {
        case EINVAL:
            "'\(name)' exists but is not a TAP (or is a TAP created with other flags, e.g. multi-queue), or the name is invalid"
        case EBUSY:
            "TAP '\(name)' is already attached to another descriptor (only multi-queue TAPs take several)"
        case ENOENT:
            "/dev/net/tun is missing (load the tun module)"
        default:
            nil
        }
    }

    /// Sets the virtio-net header size (TUNSETVNETHDRSZ): 12 for switch ports (done by `init`), 24 for the
    /// underlay TAP, before `setOffloads(.underlay)`.
    public func setVirtioHeaderSize(_ size: Int) throws(IOError) {
        let rc = cvx_tap_set_vnet_header_size(fileDescriptor.rawValue, Int32(size))
        if rc < 0 { throw IOError(errno: -rc, operation: "TUNSETVNETHDRSZ \(name)") }
    }

    /// Tells the kernel what it may hand over in one read: with `.tcp` a container's TCP stack sends 64 KiB bursts
    /// (TSO) with partial checksums, and the reader segments and completes them (VXOffload). Needs
    /// `.virtioHeader`, which carries the segmentation and checksum instructions. The corresponding ioctl is
    /// `TUNSETOFFLOAD`; `ethtool -k` on the interface shows the result (tx-checksumming, tcp-segmentation-offload).
    /// - Parameter offloads: the flags; `[]` turns every offload off.
    /// - Throws: `IOError` (EINVAL) when the TAP has no virtio header or the kernel does not know a flag.
    public func setOffloads(_ offloads: Offloads) throws(IOError) {
        guard options.contains(.virtioHeader) else {
            throw IOError(
                errno: EINVAL, operation: "TUNSETOFFLOAD \(name)",
                hint: "offloads need a TAP opened with a virtio header")
        }
        let rc = cvx_tap_set_offload(fileDescriptor.rawValue, offloads.rawValue)
        if rc < 0 { throw IOError(errno: -rc, operation: "TUNSETOFFLOAD \(name)") }
    }

    /// Keeps the interface after the descriptor closes (true) or lets it go with the last descriptor (false).
    /// The corresponding ioctl is `TUNSETPERSIST`.
    /// - Parameter persistent: the new setting.
    public func setPersistent(_ persistent: Bool) throws(IOError) {
        let rc = cvx_tap_set_persist(fileDescriptor.rawValue, persistent ? 1 : 0)
        if rc < 0 { throw IOError(errno: -rc, operation: "TUNSETPERSIST \(name)") }
    }

    /// Prepares a TAP descriptor opened elsewhere with IFF_VNET_HDR (e.g. inside a container's namespace) the way
    /// `init(name:options: [.virtioHeader])` plus `setOffloads(offloads)` prepare their own: the 12-byte header
    /// size (TUNSETVNETHDRSZ), then the offloads (TUNSETOFFLOAD).
    public static func enableVirtioOffloads(descriptor: Int32, _ offloads: Offloads = .tcp) throws(IOError) {
        let sizeRC = cvx_tap_set_vnet_header_size(descriptor, Int32(virtioHeaderLength))
        if sizeRC < 0 { throw IOError(errno: -sizeRC, operation: "TUNSETVNETHDRSZ fd \(descriptor)") }
        let rc = cvx_tap_set_offload(descriptor, offloads.rawValue)
        if rc < 0 { throw IOError(errno: -rc, operation: "TUNSETOFFLOAD fd \(descriptor)") }
    }

    /// `setPersistent` for a TAP descriptor opened elsewhere (e.g. inside another network namespace).
    /// The corresponding ioctl is `TUNSETPERSIST`.
    public static func setPersistent(descriptor: Int32, _ persistent: Bool) throws(IOError) {
        let rc = cvx_tap_set_persist(descriptor, persistent ? 1 : 0)
        if rc < 0 { throw IOError(errno: -rc, operation: "TUNSETPERSIST fd \(descriptor)") }
    }

    /// The current name of the interface a TAP descriptor belongs to (TUNGETIFF). A TAP moved into a container and
    /// renamed there keeps working through its descriptor, and this follows it.
    /// - Throws: `IOError` (EBADFD once the interface was deleted).
    public static func currentName(descriptor: Int32) throws(IOError) -> String {
        var name = [CChar](repeating: 0, count: 16)
        let rc = unsafe name.withUnsafeMutableBufferPointer { buffer in
            unsafe cvx_tap_get_name(descriptor, buffer.baseAddress!)
        }
        if rc < 0 { throw IOError(errno: -rc, operation: "TUNGETIFF fd \(descriptor)") }
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A new descriptor (close-on-exec; the caller closes it) of the network namespace the TAP's interface is in
    /// now (TUNGETDEVNETNS, Linux 5.2+).
    /// - Throws: `IOError` (EBADFD once the interface was deleted).
    public static func deviceNamespace(descriptor: Int32) throws(IOError) -> Int32 {
        let rc = cvx_tap_device_netns(descriptor)
        if rc < 0 { throw IOError(errno: -rc, operation: "TUNGETDEVNETNS fd \(descriptor)") }
        return rc
    }

    /// Sets the interface MTU. The corresponding ioctl is `SIOCSIFMTU`.
    /// - Parameter mtu: bytes of L3 payload per frame (68...65535 for a TAP).
    public func setMTU(_ mtu: Int) throws(IOError) {
        try InterfaceControl.run("SIOCSIFMTU \(name)") { sock in unsafe cvx_if_set_mtu(sock, name, Int32(clamping: mtu)) }
    }

    /// The interface MTU. The corresponding ioctl is `SIOCGIFMTU`.
    /// - Returns: the MTU in bytes.
    public func mtu() throws(IOError) -> Int {
        var value: Int32 = 0
        try InterfaceControl.run("SIOCGIFMTU \(name)") { sock in unsafe cvx_if_get_mtu(sock, name, &value) }
        return Int(value)
    }

    /// Brings the link up or down (IFF_UP). The corresponding ioctls are `SIOCGIFFLAGS` / `SIOCSIFFLAGS`.
    /// - Parameter up: true for up.
    public func setUp(_ up: Bool) throws(IOError) {
        var flags: UInt32 = 0
        try InterfaceControl.run("SIOCGIFFLAGS \(name)") { sock in unsafe cvx_if_get_flags(sock, name, &flags) }
        let wanted = up ? flags | CVX_IFF_UP : flags & ~CVX_IFF_UP
        guard wanted != flags else { return }
        try InterfaceControl.run("SIOCSIFFLAGS \(name)") { sock in unsafe cvx_if_set_flags(sock, name, wanted) }
    }

    /// Whether the link is administratively up (IFF_UP). The corresponding ioctl is `SIOCGIFFLAGS`.
    /// - Returns: true when up.
    public func isUp() throws(IOError) -> Bool {
        var flags: UInt32 = 0
        try InterfaceControl.run("SIOCGIFFLAGS \(name)") { sock in unsafe cvx_if_get_flags(sock, name, &flags) }
        return flags & CVX_IFF_UP != 0
    }

    /// The interface index in this network namespace. The corresponding ioctl is `SIOCGIFINDEX`.
    /// - Returns: the ifindex (> 0).
    public func interfaceIndex() throws(IOError) -> Int32 {
        var index: Int32 = 0
        try InterfaceControl.run("SIOCGIFINDEX \(name)") { sock in unsafe cvx_if_get_index(sock, name, &index) }
        return index
    }

    /// The interface's MAC address (the kernel picks a random one at creation).
    /// The corresponding ioctl is `SIOCGIFHWADDR`.
    /// - Returns: the MAC address.
    public func macAddress() throws(IOError) -> MACAddress {
        var octets: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0)
        try InterfaceControl.run("SIOCGIFHWADDR \(name)") { sock in
            unsafe withUnsafeMutableBytes(of: &octets) { raw in
                unsafe cvx_if_get_hwaddr(sock, name, raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        return MACAddress(octets.0, octets.1, octets.2, octets.3, octets.4, octets.5)
    }

    /// Removes the interface: clears TUNSETPERSIST, then closes the descriptor (the last one, unless other
    /// queues or processes hold it, in which case the interface goes when they close).
    /// - Throws: `IOError` when clearing persist fails; the descriptor is closed either way.
    public consuming func delete() throws(IOError) {
        let rc = cvx_tap_set_persist(fileDescriptor.rawValue, 0)
        let name = self.name
        // deinit closes the descriptor when `self` ends here, on both paths.
        if rc < 0 { throw IOError(errno: -rc, operation: "TUNSETPERSIST 0 \(name)") }
    }

    /// Closes the descriptor without touching persist: a persistent TAP stays, a non-persistent one goes.
    public consuming func close() {}
}

/// The AF_INET datagram socket that name-based interface ioctls need. One short-lived socket per call: these
/// are setup operations, and a cached socket would pin the network namespace it was created in.
enum InterfaceControl {
    /// Runs `body` (a cvx_if_* call returning 0 or -errno) with a fresh socket; throws its errno as `operation`.
    static func run(_ operation: String, _ body: (Int32) -> Int32) throws(IOError) {
        let sock: Int32
        do {
            sock = Int32(try Syscall.blocking {
                Int(socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
            })
        } catch {
            throw IOError(error, "socket(AF_INET) for \(operation)")
        }
        defer { closeDescriptor(sock) }
        let rc = body(sock)
        if rc < 0 { throw IOError(errno: -rc, operation: operation) }
    }
}
#endif
