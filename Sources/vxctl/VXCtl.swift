// vxctl: one subcommand per control method (network-create, -ls and -rm as `vxctl network create|ls|rm`).
// Arguments are checked here with the same ControlValidation the daemon uses, so a bad VNI or address is reported
// before anything is sent (exit 64, ArgumentParser's usage error).
// Daemon errors go to stderr as `vxctl: <message>` with exit 1; an unreachable or silent daemon exits 69
// (EX_UNAVAILABLE) with `vxctl: cannot reach vxswitchd at PATH: <strerror>`.

import ArgumentParser
import Foundation
import VXControl
import VXControlSocket
import VXPacket

@main
struct VXCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vxctl",
        abstract: "Configure and inspect a running vxswitchd.",
        discussion: """
            The control socket is --control PATH, else $\(ControlSocketPath.environmentVariable), \
            else \(ControlSocketPath.defaultPath).
            Exit status: 0 on success, 1 when vxswitchd reports an error, 64 for a bad argument, \
            69 when vxswitchd cannot be reached or does not answer.
            """,
        subcommands: [
            AddPort.self, DeletePort.self, AddPeer.self, DeletePeer.self, Show.self, FDB.self, Stats.self,
            Network.self, Attach.self, Detach.self, Leases.self,
        ]
    )

    // Declared here too so `vxctl --control PATH show` parses: ArgumentParser decodes every command on the stack
    // from the same arguments, so the subcommand's own GlobalOptions receives the values.
    @OptionGroup var global: GlobalOptions
}

/// Options every subcommand takes; they may be written before or after the subcommand's name.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The control socket path.", valueName: "path"))
    var control: String?

    @Flag(name: .long, help: "Print the result as JSON instead of a table.")
    var json = false

    @Option(name: .long, help: ArgumentHelp("Seconds to wait for vxswitchd.", valueName: "seconds"))
    var timeout: Double = 10

    func validate() throws {
        guard timeout > 0, timeout <= 3600 else {
            throw ValidationError("--timeout must be more than 0 and at most 3600 seconds")
        }
    }

    var client: ControlClient {
        ControlClient(
            path: ControlSocketPath.resolve(explicit: control, environment: ProcessInfo.processInfo.environment),
            timeout: .milliseconds(Int(timeout * 1000))
        )
    }

    /// Calls `method`, prints the result (as JSON with `--json`, else through `render`), and maps failures to
    /// a message on stderr and an exit code.
    func run<M: ControlMethod>(_ method: M.Type, _ params: M.Params, render: (M.Result) -> String?) throws {
        do throws(ControlError) {
            let raw = try client.callRawBlocking(method: M.name, params: try ControlJSON.value(of: params))
            if json {
                print(try ControlJSON.encodePretty(raw))
            } else if let text = render(try ControlJSON.decode(M.Result.self, from: raw, failureCode: .protocolError)) {
                print(text, terminator: "")
            }
        } catch {
            FileHandle.standardError.write(Data("vxctl: \(error)\n".utf8))
            switch error.code {
            case .unavailable, .timeout: throw ExitCode(69)
            default: throw ExitCode.failure
            }
        }
    }
}

/// Runs a ControlValidation check for `validate()`, turning its error into ArgumentParser's usage error.
func checked<T>(_ body: () throws(ControlError) -> T) throws(ValidationError) -> T {
    do throws(ControlError) {
        return try body()
    } catch {
        throw ValidationError(error.message)
    }
}

struct AddPort: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add-port",
        abstract: "Create a TAP port on a VNI."
    )

    @Argument(help: "The interface name (1-15 bytes, no '/', ':' or whitespace).")
    var name: String

    @Option(name: .long, help: "The VNI (0-16777215).")
    var vni: String

    @Option(name: .long, help: "The MTU (68-65535; default chosen by vxswitchd, 1450 for VXLAN).")
    var mtu: Int?

    @OptionGroup var global: GlobalOptions

    func params() throws(ValidationError) -> AddPortParams {
        try checked { () throws(ControlError) in
            try AddPortParams(name: InterfaceName(validating: name), vni: ControlValidation.vni(vni), mtu: mtu)
        }
    }

    func validate() throws { _ = try params() }

    func run() throws {
        try global.run(ControlMethods.AddPort.self, try params(), render: ControlRendering.port)
    }
}

struct DeletePort: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "del-port",
        abstract: "Remove a port."
    )

    @Argument(help: "The interface name.")
    var name: String

    @OptionGroup var global: GlobalOptions

    func params() throws(ValidationError) -> DeletePortParams {
        try checked { () throws(ControlError) in DeletePortParams(name: try InterfaceName(validating: name)) }
    }

    func validate() throws { _ = try params() }

    func run() throws {
        try global.run(ControlMethods.DeletePort.self, try params()) { _ in nil }
    }
}

struct AddPeer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add-peer",
        abstract: "Add a tunnel peer on a VNI (or a VNI to an existing peer)."
    )

    @Argument(help: "The peer's underlay address: IPv4, or IPv6 when this switch's --local is IPv6.")
    var ip: String

    @Option(name: .long, help: "The VNI (0-16777215).")
    var vni: String

    @Option(name: .long, help: ArgumentHelp("The encapsulation: vxlan (default) or gre.", valueName: "vxlan|gre"))
    var encap: String?

    @Option(
        name: .customLong("gre-key"),
        help: ArgumentHelp("How GRE carries the VNI: vni (default), nvgre or none.", valueName: "vni|nvgre|none")
    )
    var greKey: String?

    @OptionGroup var global: GlobalOptions

    func params() throws(ValidationError) -> AddPeerParams {
        try checked { () throws(ControlError) in
            AddPeerParams(
                ip: try ControlValidation.peerAddress(ip),
                vni: try ControlValidation.vni(vni),
                encapsulation: try PeerEncapsulation(encap: encap, greKey: greKey)
            )
        }
    }

    func validate() throws { _ = try params() }

    func run() throws {
        try global.run(ControlMethods.AddPeer.self, try params(), render: ControlRendering.peer)
    }
}

struct DeletePeer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "del-peer",
        abstract: "Remove a peer, or one VNI from it."
    )

    @Argument(help: "The peer's underlay address: IPv4, or IPv6 when this switch's --local is IPv6.")
    var ip: String

    @Option(name: .long, help: "Remove only this VNI from the peer.")
    var vni: String?

    @OptionGroup var global: GlobalOptions

    func params() throws(ValidationError) -> DeletePeerParams {
        try checked { () throws(ControlError) in
            DeletePeerParams(
                ip: try ControlValidation.peerAddress(ip),
                vni: try vni.map { text throws(ControlError) in try ControlValidation.vni(text) }
            )
        }
    }

    func validate() throws { _ = try params() }

    func run() throws {
        try global.run(ControlMethods.DeletePeer.self, try params()) { _ in nil }
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show ports, peers and VNIs.")

    @OptionGroup var global: GlobalOptions

    func run() throws {
        try global.run(ControlMethods.Show.self, EmptyParams(), render: ControlRendering.show)
    }
}

struct FDB: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fdb",
        abstract: "Show the forwarding database."
    )

    @Option(name: .long, help: "Only this VNI.")
    var vni: String?

    @OptionGroup var global: GlobalOptions

    func params() throws(ValidationError) -> FDBParams {
        try checked { () throws(ControlError) in
            FDBParams(vni: try vni.map { text throws(ControlError) in try ControlValidation.vni(text) })
        }
    }

    func validate() throws { _ = try params() }

    func run() throws {
        try global.run(ControlMethods.FDB.self, try params(), render: ControlRendering.fdb)
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show traffic and drop counters.")

    @OptionGroup var global: GlobalOptions

    func run() throws {
        try global.run(ControlMethods.Stats.self, EmptyParams(), render: ControlRendering.stats)
    }
}

struct Network: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, list and remove networks (a VNI with an IPv4 subnet).",
        subcommands: [NetworkCreate.self, NetworkList.self, NetworkRemove.self]
    )

    // As on VXCtl: lets `vxctl network --json ls` parse.
    @OptionGroup var global: GlobalOptions
}

struct NetworkCreate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a network: a VNI with an IPv4 subnet, for attach and DHCP."
    )

    @Argument(help: "The network's name (1-32 characters: letters, digits, '_', '.', '-'; not starting with '-').")
    var name: String

    @Option(name: .long, help: "The VNI (0-16777215).")
    var vni: String

    @Option(name: .long, help: ArgumentHelp("The subnet's network address, e.g. 10.0.0.0/24 (/30 or shorter).",
                                            valueName: "cidr"))
    var subnet: String

    @Option(
        name: .long,
        help: ArgumentHelp("The addresses to hand out (default: the subnet's host addresses).", valueName: "first-last")
    )
    var range: String?

    @Option(name: .long, help: ArgumentHelp("The default gateway for attached containers.", valueName: "ip"))
    var gateway: String?

    @Flag(name: .long, help: "Answer DHCP on the network's ports.")
    var dhcp = false

    @OptionGroup var global: GlobalOptions

    func params() throws(ValidationError) -> NetworkCreateParams {
        try checked { () throws(ControlError) in
            try NetworkCreateParams(
                name: name,
                vni: ControlValidation.vni(vni),
                subnet: IPv4CIDR(subnet: subnet),
                range: range.map { text throws(ControlError) in try IPv4Range(parsing: text) },
                gateway: gateway.map { text throws(ControlError) in try ipv4(text) },
                dhcp: dhcp
            )
        }
    }

    func validate() throws { _ = try params() }

    func run() throws {
        try global.run(ControlMethods.NetworkCreate.self, try params(), render: ControlRendering.network)
    }
}

struct NetworkList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the networks.")

    @OptionGroup var global: GlobalOptions

    func run() throws {
        try global.run(ControlMethods.NetworkList.self, EmptyParams(), render: ControlRendering.networks)
    }
}

struct NetworkRemove: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Remove a network (detach its containers first)."
    )

    @Argument(help: "The network's name.")
    var name: String

    @OptionGroup var global: GlobalOptions

    func params() throws(ValidationError) -> NetworkRemoveParams {
        try checked { () throws(ControlError) in try NetworkRemoveParams(name: name) }
    }

    func validate() throws { _ = try params() }

    func run() throws {
        try global.run(ControlMethods.NetworkRemove.self, try params()) { _ in nil }
    }
}

/// `--netns NAME | --pid PID | --docker CONTAINER`, for attach and detach.
struct ContainerOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("A network namespace under /run/netns.", valueName: "name"))
    var netns: String?

    @Option(name: .long, help: ArgumentHelp("A process, for its network namespace.", valueName: "pid"))
    var pid: String?

    @Option(name: .long, help: ArgumentHelp("A Docker container, by name or id.", valueName: "container"))
    var docker: String?

    /// The one container given, checked.
    func reference() throws(ControlError) -> ContainerReference {
        guard [netns != nil, pid != nil, docker != nil].count(where: \.self) == 1 else {
            throw ControlError(.invalidParams, "give exactly one of --netns, --pid or --docker")
        }
        return try ContainerReference(
            netns: netns,
            pid: try pid.map { text throws(ControlError) in Int(try ControlValidation.pid(text)) },
            docker: docker
        )
    }
}

struct Attach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Put a new interface on a network into a container.",
        discussion: """
            Creates a switch port on the network's VNI and moves its interface into the container's network \
            namespace as --ifname, with the address, MAC, MTU and default route given. Without --ip the interface \
            gets no address (for a container that runs DHCP itself); without --gateway the network's gateway is used.
            """
    )

    @Argument(help: "The network's name.")
    var network: String

    @OptionGroup var container: ContainerOptions

    @Option(
        name: .long,
        help: ArgumentHelp("The interface's name in the container (default: eth0).", valueName: "name")
    )
    var ifname: String?

    @Option(
        name: .long,
        help: ArgumentHelp("The interface's address, e.g. 10.0.0.5/24, or auto for the next free one of the network.",
                           valueName: "cidr|auto")
    )
    var ip: String?

    @Option(name: .long, help: ArgumentHelp("The interface's MAC (default: chosen by vxswitchd).", valueName: "mac"))
    var mac: String?

    @Option(name: .long, help: "The MTU (68-65535; default chosen by vxswitchd, 1450 for VXLAN).")
    var mtu: Int?

    @Option(name: .long, help: ArgumentHelp("The default gateway (default: the network's).", valueName: "ip"))
    var gateway: String?

    @OptionGroup var global: GlobalOptions

    func params() throws(ValidationError) -> AttachParams {
        try checked { () throws(ControlError) in
            try AttachParams(
                network: network,
                container: container.reference(),
                ifname: ifname.map { text throws(ControlError) in try InterfaceName(validating: text) } ?? .eth0,
                ip: ip.map { text throws(ControlError) in try AttachAddress(parsing: text) },
                mac: mac.map { text throws(ControlError) in try ControlValidation.mac(text) },
                mtu: mtu,
                gateway: gateway.map { text throws(ControlError) in try ipv4(text) }
            )
        }
    }

    func validate() throws { _ = try params() }

    func run() throws {
        try global.run(ControlMethods.Attach.self, try params(), render: ControlRendering.attachment)
    }
}

struct Detach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove the interfaces attach put into a container (all of them, or --ifname)."
    )

    @OptionGroup var container: ContainerOptions

    @Option(name: .long, help: ArgumentHelp("Only this interface (default: all that vxswitchd attached).",
                                            valueName: "name"))
    var ifname: String?

    @OptionGroup var global: GlobalOptions

    func params() throws(ValidationError) -> DetachParams {
        try checked { () throws(ControlError) in
            DetachParams(
                container: try container.reference(),
                ifname: try ifname.map { text throws(ControlError) in try InterfaceName(validating: text) }
            )
        }
    }

    func validate() throws { _ = try params() }

    func run() throws {
        try global.run(ControlMethods.Detach.self, try params(), render: ControlRendering.detached)
    }
}

struct Leases: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the addresses handed out, static and DHCP.")

    @Option(name: .long, help: ArgumentHelp("Only this network.", valueName: "name"))
    var network: String?

    @OptionGroup var global: GlobalOptions

    func params() throws(ValidationError) -> LeasesParams {
        try checked { () throws(ControlError) in try LeasesParams(network: network) }
    }

    func validate() throws { _ = try params() }

    func run() throws {
        try global.run(ControlMethods.Leases.self, try params(), render: ControlRendering.leases)
    }
}

/// Parses a dotted quad, with the message the daemon gives.
func ipv4(_ text: String) throws(ControlError) -> IPv4Address {
    guard let address = IPv4Address(text) else {
        throw ControlError(.invalidParams, "\"\(text)\" is not an IPv4 address")
    }
    return address
}
