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
    /// `show`: ports, peers and VNIs as three indented tables.
    /// - Parameter result: the `show` result.
    /// - Returns: the text, ending in a newline.
    public static func show(_ result: ShowResult) -> String {
        var out: [String] = []
        if result.ports.isEmpty {
            out.append("ports: none")
        } else {
            out.append("ports:")
            var table = TextTable([("NAME", .left), ("VNI", .right), ("MTU", .right), ("IFINDEX", .right)])
            for port in result.ports {
                table.append([port.name.value, "\(port.vni)", "\(port.mtu)", port.ifindex.map(String.init) ?? "-"])
            }
            out += table.lines(indent: 2)
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

    /// `stats`: a counter table for ports and one for peers, then every non-zero drop reason.
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

    private static func list(_ items: [some CustomStringConvertible]) -> String {
        items.isEmpty ? "-" : items.map(\.description).joined(separator: ",")
    }
}
