// Datagrams the kernel dropped before vxswitch could read them: a tunnel socket's receive queue was full.
//
// Such losses happen in the socket and appear in no counter of the datapath itself (OVS userspace loses packets
// this way without a trace). The kernel counts them per socket — the same count SO_RXQ_OVFL reports — in the last
// column ("drops") of /proc/net/udp and /proc/net/raw (udp6 and raw6 for IPv6 sockets). Reading it there, by the
// socket's inode, works the same whichever engine reads the socket, and costs nothing on the data path: it is read
// only for `vxctl stats`.

import Foundation

enum KernelSocketDrops {
    /// The kernel's drop count for socket `fd`, or nil when it cannot be found.
    /// - Parameters:
    ///   - fd: a UDP or raw socket of this process, IPv4 or IPv6.
    ///   - table: `udp` or `raw`: the file under /proc/self/net for IPv4 sockets; IPv6 ones are in the same name
    ///     with a 6 (`udp6`, `raw6`), which is searched as well.
    static func count(fd: Int32, table: String) -> UInt64? {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        for file in [table, table + "6"] {
            let text = (try? String(contentsOfFile: "/proc/self/net/\(file)", encoding: .utf8)) ?? ""
            if let drops = count(inode: UInt64(info.st_ino), in: text) { return drops }
        }
        return nil
    }

    /// The drop count of the socket with `inode` in the text of a /proc/net/{udp,raw} table.
    static func count(inode: UInt64, in table: String) -> UInt64? {
        // Columns: sl local rem st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer drops
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 13, UInt64(fields[9]) == inode else { continue }
            return UInt64(fields[fields.count - 1])
        }
        return nil
    }
}
