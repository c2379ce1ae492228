// TAP queues: one descriptor per dataplane worker.
//
// A TAP opened with IFF_MULTI_QUEUE takes several descriptors ("queues") on one interface. The kernel hands
// each frame the container sends to one queue, chosen by a hash of its flow (tun's automatic queue selection),
// so one flow is read by one worker, in order. vxswitchd opens one queue per worker, and each worker reads and
// writes only its own (docs/architecture.md, "Threads").
//
// A TAP created without IFF_MULTI_QUEUE (persisted by a vxswitchd from before multi-queue, or made by
// `ip tuntap add` without `multi_queue`) refuses a multi-queue open with EINVAL (the flag must match the
// interface's) and takes one descriptor only. Recreating it as multi-queue would change its ifindex and lose the
// addresses and routes of the container it lives in, so vxswitchd keeps it: it opens its one queue, and every
// worker reads and writes that descriptor. Frames are still switched, but frames of one flow can be read by two
// workers and leave out of order, so the daemon logs a warning saying how to make the port multi-queue
// (remove it and add or attach it again).

/// How the queues of one TAP were opened.
struct TAPQueueSet<Queue> {
    /// One queue per worker, or a single queue shared by all workers (`singleQueue`).
    var queues: [Queue]
    /// The TAP exists without IFF_MULTI_QUEUE, so it has this one queue only.
    var singleQueue: Bool
    /// The interface name the kernel settled on (a `%d` in the requested name is numbered by the first open).
    var name: String
}

enum TAPQueues {
    /// Opens `count` queues of TAP `name`, creating it (multi-queue) if it does not exist.
    /// - Parameters:
    ///   - name: the requested interface name.
    ///   - count: queues wanted, one per worker (at least 1).
    ///   - isFlagMismatch: whether an error from `open` is the kernel refusing a multi-queue open of a TAP that
    ///     exists without IFF_MULTI_QUEUE (EINVAL from TUNSETIFF).
    ///   - discard: closes a queue opened before a later one failed.
    ///   - open: opens one queue of interface `name` (multi-queue or not); returns it and the kernel's name.
    /// - Returns: the queues; a single one when the TAP is single-queue.
    /// - Throws: the first open's error (not the fallback's) when the TAP cannot be opened at all, or the error
    ///   of a later queue.
    static func open<Queue, Failure: Error>(
        name: String, count: Int, isFlagMismatch: (Failure) -> Bool, discard: (Queue) -> Void,
        _ open: (_ name: String, _ multiQueue: Bool) throws(Failure) -> (Queue, String)
    ) throws(Failure) -> TAPQueueSet<Queue> {
        precondition(count >= 1, "a TAP needs at least one queue")
        let first: Queue
        let settled: String
        do {
            (first, settled) = try open(name, true)
        } catch {
            guard isFlagMismatch(error), let single = try? open(name, false) else { throw error }
            return TAPQueueSet(queues: [single.0], singleQueue: true, name: single.1)
        }
        var queues = [first]
        do {
            while queues.count < count { queues.append(try open(settled, true).0) }
        } catch {
            for queue in queues { discard(queue) }
            throw error
        }
        return TAPQueueSet(queues: queues, singleQueue: false, name: settled)
    }

    /// The warning for a single-queue TAP on a switch with more than one worker.
    static func singleQueueWarning(port: String, interface: String, workers: Int) -> String {
        "TAP \(interface) (port \(port)) exists without IFF_MULTI_QUEUE (made by an older vxswitchd or by "
            + "`ip tuntap add` without multi_queue), so its one queue is shared by all \(workers) workers: frames "
            + "are switched, but one flow's frames may leave out of order. Remove the port and add or attach it "
            + "again to make it multi-queue."
    }
}
