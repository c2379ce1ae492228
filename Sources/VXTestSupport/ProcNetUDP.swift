// The kernel's own account of a UDP socket's receive-queue drops, for tests that overflow one on loopback.

import Foundation

/// The drops column of /proc/self/net/udp for the 127.0.0.1 socket bound to `port`, found by its local address
/// rather than by inode (as the daemon's KernelSocketDrops does), so tests do not check the product's parser
/// against itself.
/// - Returns: the count, or nil when no such socket is listed.
public func loopbackUDPDrops(port: UInt16) -> UInt64? {
    let hex = String(port, radix: 16, uppercase: true)
    let local = "0100007F:" + String(repeating: "0", count: 4 - hex.count) + hex
    let table = (try? String(contentsOfFile: "/proc/self/net/udp", encoding: .utf8)) ?? ""
    for line in table.split(separator: "\n").dropFirst() {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        if fields.count >= 13, fields[1] == local { return UInt64(fields[fields.count - 1]) }
    }
    return nil
}
