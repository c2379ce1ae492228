// What the dataplane needs of a coalescer to send its items, so that one generic path (specialized per coalescer by
// the optimizer) sends both TCPCoalescer's and UDPCoalescer's. Adding frames stays protocol-specific (UDPCoalescer
// refuses what is not UDP), and so does everything the coalescers do inside: CoalescerCore holds what they share.

/// A coalescer whose items can be sent: `TCPCoalescer` and `UDPCoalescer`.
public protocol FrameCoalescer: ~Copyable {
    /// Item `index` (0 ..< the coalescer's `itemCount`).
    /// - Parameter index: the item.
    /// - Returns: its first frame, member count, virtio-net header and length.
    func item(_ index: Int) -> TCPCoalescer.Item

    /// The frame after `frameIndex` in its item.
    /// - Parameter frameIndex: a frame added since the last `reset`.
    /// - Returns: the next member, or nil for the item's last frame.
    func nextMember(after frameIndex: Int) -> Int?

    /// Writes coalesced item `index` as tun expects it: the 12-byte virtio-net header, then the merged frame (the
    /// first member's headers, fixed up, then every member's payload in order). Verifies each member's transport
    /// checksum as it copies the payload (CoalescerCore's header says why) and stops at the first that fails.
    /// - Parameters:
    ///   - index: an item with `isCoalesced`.
    ///   - destination: the scratch buffer; must hold `VirtioNetHeader.size + item(index).length` bytes from
    ///     `offset`, which the coalescer's `scratchCapacity` guarantees when `destination` is that big (traps
    ///     otherwise).
    ///   - offset: where the virtio-net header goes.
    ///   - frames: calls its second argument with the bytes of the frame numbered by its first (the same bytes
    ///     given to `add`); called once per member, in order, up to and including a member whose checksum fails.
    /// - Returns: bytes written (`VirtioNetHeader.size + item(index).length`), or nil when a member's checksum does
    ///   not verify. Then nothing usable was written (the bytes from `offset` are unspecified): send the item's
    ///   members one by one, from `item(index).firstFrame` through `nextMember(after:)`, behind plain headers
    ///   without DATA_VALID, so the receiver verifies each and drops the bad one.
    func writeCoalesced(
        item index: Int,
        into destination: inout MutableRawSpan,
        at offset: Int,
        frames: (_ frameIndex: Int, _ body: (RawSpan) -> Void) -> Void
    ) -> Int?
}

extension TCPCoalescer: FrameCoalescer {}

extension UDPCoalescer: FrameCoalescer {}
