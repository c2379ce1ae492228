// vxctl's human-readable output, kept here (not in the executable) so tests can check it character for character.
// Tables are aligned columns separated by two spaces, like `ovs-vsctl show` and `bridge fdb`; numbers are
// right-aligned, text left-aligned, and no line ends in spaces.

/// Aligned text columns.
public struct TextTable: Sendable {
    /// How a column's cells are padded.
    public enum Alignment: Sendable {
        /// Padded on the right (text).
        case left
        /// Padded on the left (numbers).
        case right
    }

    private let headers: [String]
    private let alignments: [Alignment]
    private var rows: [[String]] = []

    /// - Parameter columns: each column's header and alignment.
    public init(_ columns: [(header: String, alignment: Alignment)]) {
        self.headers = columns.map(\.header)
        self.alignments = columns.map(\.alignment)
    }

    /// Adds a row.
    /// - Parameter cells: one cell per column; missing cells are empty, extra cells are a programmer error.
    public mutating func append(_ cells: [String]) {
        precondition(cells.count <= headers.count, "more cells than columns")
        rows.append(cells + Array(repeating: "", count: headers.count - cells.count))
    }

    /// The table's lines: the header, then the rows in order.
    /// - Parameter indent: spaces before each line.
    /// - Returns: the lines, without newlines.
    public func lines(indent: Int = 0) -> [String] {
        let all = [headers] + rows
        let widths = headers.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        let prefix = String(repeating: " ", count: indent)
        return all.map { row in
            var line = ""
            for column in row.indices {
                let cell = row[column]
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                if column > 0 { line += "  " }
                line += alignments[column] == .right ? padding + cell : cell + padding
            }
            while line.last == " " { line.removeLast() }
            return prefix + line
        }
    }
}

/// Human-readable renderings of control results, as vxctl prints them without `--json`.
public enum ControlRendering {
    /// `show`: ports, peers and VNIs as three indented tables; each failed port gets a line under the ports. With an
    /// underlay TAP, a fourth table: the switch's ARP table on the underlay.
    /// - Parameter result: the `show` result.
    /// - Returns: the text, ending in a newline.
    public static func show(_ result: ShowResult) -> String {
        var out: [String] = []
        if result.ports.isEmpty {
            out.append("ports: none")
        } else {
            out.append("ports:")
            // WHERE only when some port's interface is elsewhere (attached, or moved into a container by hand).
            let located = result.ports.contains { $0.location != nil }
            var columns: [(String, TextTable.Alignment)] = [
                ("NAME", .left), ("VNI", .right), ("MTU", .right), ("IFINDEX", .right),
            ]
            if located { columns.append(("WHERE", .left)) }
            var table = TextTable(columns)
            for port in result.ports {
                var row = [port.name.value, "\(port.vni)", "\(port.mtu)", port.ifindex.map(String.init) ?? "-"]
                if located { row.append(port.location ?? "-") }
                table.append(row)
            }
            out += table.lines(indent: 2)
            for port in result.ports {
                guard let failure = port.failure else { continue }
                out.append("  port \(port.name) FAILED: \(failure); remove it with `vxctl del-port \(port.name)`")
            }
        }
        if result.peers.isEmpty {
            out.append("peers: none")
        } else {
            out.append("peers:")
            var table = TextTable([("IP", .left), ("ENCAP", .left), ("GRE-KEY", .left), ("VNIS", .left)])
            for peer in result.peers {
                table.append([
                    "\(peer.ip)", peer.encapsulation.name, peer.encapsulation.greKey?.rawValue ?? "-", list(peer.vnis),
                ])
            }
            out += table.lines(indent: 2)
        }
        if result.vnis.isEmpty {
            out.append("vnis: none")
        } else {
            out.append("vnis:")
            var table = TextTable([("VNI", .right), ("PORTS", .left), ("PEERS", .left)])
            for vni in result.vnis {
                table.append(["\(vni.vni)", list(vni.ports), list(vni.peers)])
            }
            out += table.lines(indent: 2)
        }
        // Only with an underlay TAP: on the socket underlay the kernel's `ip neigh` has them.
        if let neighbors = result.underlayNeighbors {
            if neighbors.isEmpty {
                out.append("underlay neighbours: none")
            } else {
                out.append("underlay neighbours:")
                var table = TextTable([("IP", .left), ("MAC", .left), ("NEXT-HOP", .left), ("AGE", .right)])
                for neighbor in neighbors {
                    table.append([
                        "\(neighbor.ip)", neighbor.mac.map { "\($0)" } ?? "unresolved",
                        neighbor.isNextHop ? "yes" : "no", neighbor.age.map(String.init) ?? "-",
                    ])
                }
                out += table.lines(indent: 2)
            }
        }
        return out.joined(separator: "\n") + "\n"
    }

    /// `fdb`: one line per entry, like `bridge fdb`.
    /// - Parameter result: the `fdb` result.
    /// - Returns: the text, ending in a newline.
    public static func fdb(_ result: FDBResult) -> String {
        guard !result.entries.isEmpty else { return "no FDB entries\n" }
        var table = TextTable([
            ("VNI", .right), ("MAC", .left), ("DESTINATION", .left), ("AGE", .right), ("TYPE", .left),
        ])
        for entry in result.entries {
            table.append([
                "\(entry.vni)", "\(entry.mac)", "\(entry.destination)",
                entry.isStatic ? "-" : "\(entry.age)", entry.isStatic ? "static" : "learned",
            ])
        }
        return table.lines().joined(separator: "\n") + "\n"
    }

    /// `stats`: a counter table for ports and one for peers, then every non-zero drop reason, then every non-zero
    /// offload counter and what each dataplane worker carried (when the switch reports them).
    /// - Parameter result: the `stats` result.
    /// - Returns: the text, ending in a newline.
    public static func stats(_ result: StatsResult) -> String {
        var out: [String] = []
        func counterTable(_ firstHeader: String, _ rows: [(String, TrafficCounters)]) -> [String] {
            var table = TextTable([
                (firstHeader, .left), ("RX-FRAMES", .right), ("RX-BYTES", .right), ("TX-FRAMES", .right),
                ("TX-BYTES", .right), ("DROPS", .right),
            ])
            for (name, counters) in rows {
                table.append([
                    name, "\(counters.rxFrames)", "\(counters.rxBytes)", "\(counters.txFrames)",
                    "\(counters.txBytes)", "\(counters.totalDrops)",
                ])
            }
            return table.lines()
        }
        out += result.ports.isEmpty
            ? ["ports: none"] : counterTable("PORT", result.ports.map { ($0.name.value, $0.counters) })
        out.append("")
        out += result.peers.isEmpty
            ? ["peers: none"] : counterTable("PEER", result.peers.map { ("\($0.ip)", $0.counters) })
        out.append("")

        var drops = TextTable([("WHERE", .left), ("REASON", .left), ("FRAMES", .right)])
        var anyDrops = false
        func addDrops(_ place: String, _ reasons: [String: UInt64]) {
            for (reason, count) in reasons.sorted(by: { $0.key < $1.key }) where count > 0 {
                drops.append([place, reason, "\(count)"])
                anyDrops = true
            }
        }
        for port in result.ports { addDrops("port \(port.name)", port.counters.drops) }
        for peer in result.peers { addDrops("peer \(peer.ip)", peer.counters.drops) }
        addDrops("switch", result.drops)
        if anyDrops {
            out.append("drops:")
            out += drops.lines(indent: 2)
        } else {
            out.append("drops: none")
        }
        if let offloads = result.offloads {
            let counted = offloads.named.filter { $0.count > 0 }
            out.append("")
            if counted.isEmpty {
                out.append("offloads: none")
            } else {
                var table = TextTable([("COUNTER", .left), ("COUNT", .right)])
                for (name, count) in counted { table.append([name, "\(count)"]) }
                out.append("offloads:")
                out += table.lines(indent: 2)
            }
        }
        if let workers = result.workers, !workers.isEmpty {
            var table = TextTable([("WORKER", .left), ("RX-FRAMES", .right), ("TX-FRAMES", .right)])
            for worker in workers { table.append(["\(worker.worker)", "\(worker.rxFrames)", "\(worker.txFrames)"]) }
            out.append("")
            out.append("workers:")
            out += table.lines(indent: 2)
        }
        return out.joined(separator: "\n") + "\n"
    }

    /// The line vxctl prints after `add-port`.
    /// - Parameter port: the port as created.
    /// - Returns: e.g. `port tap0: vni 100, mtu 1450, ifindex 7`.
    public static func port(_ port: PortInfo) -> String {
        var text = "port \(port.name): vni \(port.vni), mtu \(port.mtu)"
        if let ifindex = port.ifindex { text += ", ifindex \(ifindex)" }
        return text + "\n"
    }

    /// The line vxctl prints after `add-peer`.
    /// - Parameter peer: the peer with all its VNIs.
    /// - Returns: e.g. `peer 192.0.2.2: gre key=nvgre, vnis 100,200`.
    public static func peer(_ peer: PeerInfo) -> String {
        "peer \(peer.ip): \(peer.encapsulation), vnis \(list(peer.vnis))\n"
    }

    /// `network ls`: one row per network.
    /// - Parameter result: the `network-ls` result.
    /// - Returns: the text, ending in a newline.
    public static func networks(_ result: NetworkListResult) -> String {
        guard !result.networks.isEmpty else { return "no networks\n" }
        var table = TextTable([
            ("NAME", .left), ("VNI", .right), ("SUBNET", .left), ("RANGE", .left), ("GATEWAY", .left),
            ("DHCP", .left), ("PORTS", .left), ("LEASES", .right),
        ])
        for network in result.networks {
            table.append([
                network.name, "\(network.vni)", "\(network.subnet)", "\(network.range)",
                network.gateway.map(\.description) ?? "-", network.dhcp ? "yes" : "no", list(network.ports),
                "\(network.leases)",
            ])
        }
        return table.lines().joined(separator: "\n") + "\n"
    }

    /// The line vxctl prints after `network create`.
    /// - Parameter network: the network as created.
    /// - Returns: e.g. `network net1: vni 100, subnet 10.0.0.0/24, range 10.0.0.2-10.0.0.254, gateway 10.0.0.1,
    ///   dhcp on`.
    public static func network(_ network: NetworkInfo) -> String {
        var text = "network \(network.name): vni \(network.vni), subnet \(network.subnet), range \(network.range)"
        if let gateway = network.gateway { text += ", gateway \(gateway)" }
        return text + ", dhcp \(network.dhcp ? "on" : "off")\n"
    }

    /// The line vxctl prints after `attach`.
    /// - Parameter attachment: the attachment as made.
    /// - Returns: e.g. `attached eth0 (port vx3f9a1c2b) to net1 in /run/netns/c1: 10.0.0.5/24, mac
    ///   02:5e:3f:9a:1c:2b, mtu 1450, gateway 10.0.0.1` (`no address` when the interface has none).
    public static func attachment(_ attachment: AttachmentInfo) -> String {
        var text = "attached \(attachment.ifname) (port \(attachment.port)) to \(attachment.network) in "
            + "\(attachment.namespace): \(attachment.ip ?? "no address"), mac \(attachment.mac), mtu \(attachment.mtu)"
        if let gateway = attachment.gateway { text += ", gateway \(gateway)" }
        return text + "\n"
    }

    /// The lines vxctl prints after `detach`: one per interface removed.
    /// - Parameter result: the `detach` result.
    /// - Returns: e.g. `detached eth0 (port vx3f9a1c2b) from net1 in /run/netns/c1`, or `nothing detached`.
    public static func detached(_ result: DetachResult) -> String {
        guard !result.detached.isEmpty else { return "nothing detached\n" }
        return result.detached.map { attachment in
            "detached \(attachment.ifname) (port \(attachment.port)) from \(attachment.network) in "
                + "\(attachment.namespace)\n"
        }.joined()
    }

    /// `leases`: one row per leased address; `EXPIRES` is the end of a DHCP lease in UTC (ISO 8601), `-` for a
    /// static one.
    /// - Parameter result: the `leases` result.
    /// - Returns: the text, ending in a newline.
    public static func leases(_ result: LeasesResult) -> String {
        guard !result.leases.isEmpty else { return "no leases\n" }
        var table = TextTable([
            ("NETWORK", .left), ("IP", .left), ("OWNER", .left), ("KIND", .left), ("EXPIRES", .left),
        ])
        for lease in result.leases {
            table.append([
                lease.network, "\(lease.ip)", lease.owner, "\(lease.kind)", lease.expires.map(utcTimestamp) ?? "-",
            ])
        }
        return table.lines().joined(separator: "\n") + "\n"
    }

    /// Seconds since the Unix epoch as `2026-01-01T00:00:00Z`.
    ///
    /// Computed here rather than with a date formatter so the text depends on neither the locale nor the time
    /// zone: Howard Hinnant's `civil_from_days` (http://howardhinnant.github.io/date_algorithms.html), proleptic
    /// Gregorian calendar, any `Int` day count.
    /// - Parameter seconds: seconds since 1970-01-01T00:00:00Z (negative before it).
    /// - Returns: the UTC time.
    public static func utcTimestamp(_ seconds: Int) -> String {
        let (days, secondOfDay) = floorDivision(seconds, 86_400)
        let shifted = days + 719_468  // days since 0000-03-01, the start of a 400-year era
        let era = floorDivision(shifted, 146_097).quotient
        let dayOfEra = shifted - era * 146_097  // 0 ... 146096
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365  // 0 ... 399
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)  // 0 ... 365, from March 1
        let monthFromMarch = (5 * dayOfYear + 2) / 153  // 0 ... 11
        let day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
        let month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let time = "\(two(secondOfDay / 3600)):\(two(secondOfDay / 60 % 60)):\(two(secondOfDay % 60))"
        return "\(year)-\(two(month))-\(two(day))T\(time)Z"
    }

    private static func floorDivision(_ dividend: Int, _ divisor: Int) -> (quotient: Int, remainder: Int) {
        let (quotient, remainder) = dividend.quotientAndRemainder(dividingBy: divisor)
        return remainder < 0 ? (quotient - 1, remainder + divisor) : (quotient, remainder)
    }

    private static func list(_ items: [some CustomStringConvertible]) -> String {
        items.isEmpty ? "-" : items.map(\.description).joined(separator: ",")
    }
}
