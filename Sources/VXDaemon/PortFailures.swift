// Ports whose descriptor failed under the switch.
//
// When a TAP is deleted underneath vxswitchd (`ip link del` in the container's namespace, or the namespace
// destroyed), its descriptors stay open but every read fails (EBADFD). Each worker's engine then stops reading its
// queue and reports the port once (`PacketEngine.drainNewPortFailures`); the worker hands it to `record` on its own
// thread. The maintenance thread logs new failures once a second with the port's name (`takeUnlogged`), `show`
// reports them (`failure(of:)`), and removing the port forgets it (`forget`).
//
// Locking: one Mutex of its own, never the daemon's state lock. A worker records while the control thread may hold
// the state lock and wait for that same worker (attach and detach run through the worker's mailbox), so taking the
// state lock here could deadlock. The Mutex is taken only when a port fails and when the control plane reads.

import Synchronization
import VXForwarding
import VXIO

/// The failed ports of one switch. See the file comment.
final class PortFailures: Sendable {
    /// One failed port.
    struct Failure: Sendable, Equatable {
        var error: IOError  // the first worker's error (the other queues of a TAP fail the same way)
        var worker: Int  // the worker that reported it first
        var logged: Bool  // the daemon has logged it
    }

    private let failures = Mutex<[PortID: Failure]>([:])

    /// Records that `worker`'s engine stopped reading `port`; a port already recorded keeps its first error.
    func record(_ port: PortID, worker: Int, error: IOError) {
        failures.withLock { failures in
            if failures[port] == nil { failures[port] = Failure(error: error, worker: worker, logged: false) }
        }
    }

    /// Why `port` failed, or nil while it works.
    func failure(of port: PortID) -> IOError? {
        failures.withLock { $0[port]?.error }
    }

    /// The failures not yet logged; they count as logged from now on.
    func takeUnlogged() -> [(port: PortID, failure: Failure)] {
        failures.withLock { failures in
            let new = failures.filter { !$0.value.logged }.map { (port: $0.key, failure: $0.value) }
            for (port, _) in new { failures[port]?.logged = true }
            return new
        }
    }

    /// Forgets `port` (it was removed, so its ID may be handed out again). Call after it was detached from every
    /// worker, so no worker records it again.
    func forget(_ port: PortID) {
        _ = failures.withLock { $0.removeValue(forKey: port) }
    }
}
