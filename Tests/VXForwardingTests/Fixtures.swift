// Shared helpers for the forwarding tests.

import VXPacket

@testable import VXForwarding

/// A locally administered unicast MAC (02:00:...) numbered `n`.
func host(_ n: UInt64) -> MACAddress {
    MACAddress(raw: 0x0200_0000_0000 | n & 0xFFFF_FFFF)
}

/// Bridge domain `n` (n != 0).
func bd(_ n: UInt16) -> BridgeDomain {
    BridgeDomain(uncheckedNonZero: n)
}

/// Port `index` of generation 0.
func port(_ index: UInt16, generation: UInt8 = 0) -> Destination {
    .port(PortID(index: index, generation: generation))
}

/// Peer `index` of generation 0.
func peer(_ index: UInt16, generation: UInt8 = 0) -> Destination {
    .peer(PeerID(index: index, generation: generation))
}

/// Key of `host(n)` in domain `domain`.
func key(_ domain: UInt16, _ n: UInt64) -> MACKey {
    MACKey(domain: bd(domain), mac: host(n))
}

/// The identity invariant of the counters, which must hold whenever no thread is inside the table.
func countersAddUp(_ c: ForwardingTableCounters) -> Bool {
    Int(c.learned + c.staticInserted) - Int(c.aged + c.flushed + c.duplicatesRemoved + c.staticRemoved) == c.entries
}
