// ARP on the underlay TAP: the control-plane half of `vxswitchd --underlay-tap`.
//
// The switch owns its VTEP address on the underlay segment, so it must be the one to answer ARP for it and to
// resolve its peers' next hops. Workers punt every ARP frame from the underlay TAP (PuntedFrame with no port);
// the punt service thread feeds them to the `UnderlayNeighbors` table, sends the answers back through worker 0's
// underlay queue, and republishes the worker config when a next hop's MAC changed (the workers put it in every
// outer Ethernet header). The maintenance thread asks, once a second, for what the table has due: unresolved
// next hops, and resolved ones due for a refresh. Until a peer's next hop is resolved its frames are dropped and
// counted (`underlayNextHopUnresolved`); adding a peer asks at once, so that is one round trip.

import VXDataplane

extension SwitchDaemon {
    /// Sends the ARP requests the neighbor table has due, through worker 0's underlay queue. Any thread; takes
    /// the neighbor lock (so callers holding the state lock keep the lock order).
    func sendNeighborRequests() {
        let requests = neighbors.withLock { $0?.requestsDue(now: .now) } ?? []
        for frame in requests { worker.mailbox.post(.transmitUnderlay(bytes: frame)) { _ in } }
    }

    /// Handles an ARP frame punted from the underlay TAP: answers a request for the VTEP address, learns next hops,
    /// and republishes the worker config when a peer's next hop changed. Punt service thread.
    func answerUnderlay(_ punted: PuntedFrame) {
        guard let update = neighbors.withLock({ $0?.handle(frame: punted.bytes, now: .now) }) else { return }
        if update.wantedChanged { state.withLock { publish($0) } }
        if let reply = update.reply { worker.mailbox.post(.transmitUnderlay(bytes: reply)) { _ in } }
    }
}
