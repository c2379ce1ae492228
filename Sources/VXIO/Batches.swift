import VXPacket

// Batches: what an engine hands the worker (RxBatch) and what the worker hands back (TxBatch).
//
// Both are allocated once per worker at their full capacity and reused for every batch, so the hot loop
// allocates nothing: `reset()` keeps capacity (STYLE §4, NIO's DatagramVectorReadManager).
//
// Ownership: a buffer named in an RxBatch belongs to the worker until it calls `engine.release(_:)`.
// `engine.transmit(_:)` only reads the buffers a TxBatch names and has finished with them when it returns,
// so the worker may release (or reuse) them right after. A frame flooded to many ports is therefore named
// by many TxBatch entries that share one buffer; that is the point: flooding copies nothing.

/// Who sent or receives a frame: one registered TAP, tunnel socket or sender, as numbered by the engine.
///
/// Engines keep the low 16 bits (`slot`) dense — numbered from 0, reused after `unregister` — so callers can
/// index arrays by it; the high 16 bits may carry a generation, so a stale handle never equals the new handle
/// of a reused slot. Compare whole handles, index by `slot`.
public struct PortHandle: Hashable, Sendable, CustomStringConvertible {
    public let raw: UInt32

    @inlinable
    public init(raw: UInt32) {
        self.raw = raw
    }

    /// The dense index part of the handle (below 65,536).
    @inlinable public var slot: Int { Int(raw & 0xFFFF) }

    public var description: String { "handle#\(raw)" }
}

/// One frame received by an engine.
public struct ReceivedFrame: Sendable {
    /// The port it came in on.
    public var source: PortHandle
    /// The buffer holding it.
    public var buffer: BufferID
    /// Offset of the first byte of data within the buffer (normally the pool's headroom).
    public var offset: UInt32
    /// Bytes of data.
    public var length: UInt32
    /// The underlay sender for tunnel sockets; `.any` for TAP ports.
    public var remote: UnderlayAddress
    /// For a UDP tunnel socket with UDP_GRO: the size of every datagram the kernel merged into this read but the
    /// last (which may be shorter), so the data is `ceil(length / segmentSize)` datagrams back to back. 0: the
    /// data is one datagram (or not a datagram at all).
    public var segmentSize: UInt32

    @inlinable
    public init(
        source: PortHandle, buffer: BufferID, offset: UInt32, length: UInt32, remote: UnderlayAddress,
        segmentSize: UInt32 = 0
    ) {
        self.source = source
        self.buffer = buffer
        self.offset = offset
        self.length = length
        self.remote = remote
        self.segmentSize = segmentSize
    }
}

/// The frames of one receive call. Capacity is fixed at init.
public struct RxBatch {
    /// The frames, in arrival order.
    @inlinable public var frames: [ReceivedFrame] { storage }
    @usableFromInline var storage: [ReceivedFrame]
    public let capacity: Int

    public init(capacity: Int) {
        self.capacity = capacity
        self.storage = []
        storage.reserveCapacity(capacity)
    }

    @inlinable public var count: Int { storage.count }
    @inlinable public var isFull: Bool { storage.count >= capacity }
    @inlinable public var remainingCapacity: Int { capacity - frames.count }

    /// Adds a frame; engines never call this past `capacity`.
    @inlinable
    public mutating func append(_ frame: ReceivedFrame) {
        precondition(storage.count < capacity, "RxBatch overflow")
        storage.append(frame)
    }

    /// Empties the batch, keeping its storage.
    @inlinable
    public mutating func reset() {
        storage.removeAll(keepingCapacity: true)
    }
}

/// One frame to send: an optional header of up to `TxBatch.maxHeaderLength` bytes, held in the batch itself,
/// followed by `length` bytes of a pool buffer. Engines send the two pieces with one scatter-gather write.
///
/// For a `.udpSender` the two pieces are the UDP payload, and with `segmentSize` > 0 the entry is a UDP GSO send:
/// the kernel cuts header + payload into datagrams of `segmentSize` bytes (the last may be shorter), all to
/// `remote:remotePort` from the same socket, in one system call.
public struct FrameTransmit: Sendable {
    /// The most datagrams one GSO send may make (the kernel's UDP_MAX_SEGMENTS: 64 before Linux 6.9, 128 since).
    public static let maximumSegments = 64

    /// The TAP or sender to write to.
    public var target: PortHandle
    /// Underlay destination for tunnel sends (the kernel routes by it); ignored for TAP ports.
    public var remote: UnderlayAddress
    /// UDP destination port for `.udpSender` targets; ignored otherwise.
    public var remotePort: UInt16
    /// Bytes of each datagram of a UDP GSO send (UDP_SEGMENT, gso_size); 0: one datagram. `.udpSender` only.
    public var segmentSize: UInt16
    /// Bytes of header in this entry's slot of the batch's header area (0 = none).
    public var headerLength: UInt8
    /// The payload buffer.
    public var buffer: BufferID
    /// Offset of the payload within the buffer.
    public var offset: UInt32
    /// Bytes of payload.
    public var length: UInt32

    @inlinable
    public init(
        target: PortHandle, remote: UnderlayAddress, remotePort: UInt16 = 0, segmentSize: UInt16 = 0, headerLength: UInt8,
        buffer: BufferID, offset: UInt32, length: UInt32
    ) {
        self.target = target
        self.remote = remote
        self.remotePort = remotePort
        self.segmentSize = segmentSize
        self.headerLength = headerLength
        self.buffer = buffer
        self.offset = offset
        self.length = length
    }

    /// Datagrams this entry becomes on the wire: 1, or for a GSO send `ceil((header + payload) / segmentSize)`.
    @inlinable
    public var datagramCount: Int {
        guard segmentSize > 0 else { return 1 }
        let total = Int(headerLength) + Int(length)
        return max(1, (total + Int(segmentSize) - 1) / Int(segmentSize))
    }
}

/// Frames to send in one `transmit` call, with an inline header slot per entry.
@safe
public final class TxBatch {
    /// Largest outer header an entry can carry: for the underlay TAP the 24-byte tunnel virtio-net header +
    /// Ethernet (14) + IPv4 (20, no options) + UDP (8) + VXLAN (8) = 74 (otherwise at most 36), rounded up to two
    /// cache lines.
    public static let maxHeaderLength = 128

    /// The frames, in the order they were appended.
    @inlinable public var frames: [FrameTransmit] { storage }
    @usableFromInline var storage: [FrameTransmit]
    public let capacity: Int
    /// `capacity * maxHeaderLength` bytes; entry i's header is at `i * maxHeaderLength`.
    private let headerArea: UnsafeMutableRawPointer

    public init(capacity: Int) {
        self.capacity = capacity
        self.storage = []
        storage.reserveCapacity(capacity)
        unsafe self.headerArea = UnsafeMutableRawPointer.allocate(byteCount: capacity * Self.maxHeaderLength, alignment: 64)
    }

    deinit {
        unsafe headerArea.deallocate()
    }

    @inlinable public var count: Int { storage.count }
    @inlinable public var isFull: Bool { storage.count >= capacity }

    /// Adds a frame whose header `writeHeader` fills in. `writeHeader` gets the entry's header slot
    /// (`maxHeaderLength` bytes) and returns how many bytes it wrote.
    /// - Returns: false (and adds nothing) when the batch is full; the caller transmits and resets, then retries.
    @inlinable
    @discardableResult
    public func append(
        target: PortHandle,
        remote: UnderlayAddress,
        remotePort: UInt16 = 0,
        buffer: BufferID,
        offset: UInt32,
        length: UInt32,
        writeHeader: (UnsafeMutableRawBufferPointer) -> Int
    ) -> Bool {
        guard storage.count < capacity else { return false }
        let slot = unsafe headerSlot(storage.count)
        let written = unsafe writeHeader(slot)
        precondition(written >= 0 && written <= Self.maxHeaderLength, "header longer than its slot")
        storage.append(
            FrameTransmit(target: target, remote: remote, remotePort: remotePort, headerLength: UInt8(written),
                          buffer: buffer, offset: offset, length: length))
        return true
    }

    /// Adds a UDP GSO send: `length` bytes of `buffer` (no header slot), cut by the kernel into datagrams of
    /// `segmentSize` bytes to `remote:remotePort`.
    /// - Returns: false (and adds nothing) when the batch is full.
    @inlinable
    @discardableResult
    public func appendSegmented(
        target: PortHandle, remote: UnderlayAddress, remotePort: UInt16, buffer: BufferID, offset: UInt32, length: UInt32,
        segmentSize: UInt16
    ) -> Bool {
        guard storage.count < capacity else { return false }
        storage.append(
            FrameTransmit(target: target, remote: remote, remotePort: remotePort, segmentSize: segmentSize,
                          headerLength: 0, buffer: buffer, offset: offset, length: length))
        return true
    }

    /// Replaces the last entry (a worker growing a GSO send it has just added). Traps on an empty batch.
    @inlinable
    public func replaceLast(_ frame: FrameTransmit) {
        precondition(!storage.isEmpty, "replaceLast on an empty TxBatch")
        storage[storage.count - 1] = frame
    }

    /// Adds a frame with no header.
    @inlinable
    @discardableResult
    public func append(target: PortHandle, buffer: BufferID, offset: UInt32, length: UInt32) -> Bool {
        guard storage.count < capacity else { return false }
        storage.append(
            FrameTransmit(target: target, remote: .any, headerLength: 0, buffer: buffer, offset: offset, length: length))
        return true
    }

    /// Entry `index`'s header slot (`maxHeaderLength` bytes). Valid until the batch is deinitialized.
    @unsafe
    @inlinable
    public func headerSlot(_ index: Int) -> UnsafeMutableRawBufferPointer {
        precondition(index >= 0 && index < capacity, "header slot out of range")
        return unsafe UnsafeMutableRawBufferPointer(
            start: headerBase.advanced(by: index * Self.maxHeaderLength), count: Self.maxHeaderLength)
    }

    @unsafe
    @usableFromInline
    var headerBase: UnsafeMutableRawPointer { unsafe headerArea }

    /// Empties the batch, keeping its storage.
    @inlinable
    public func reset() {
        storage.removeAll(keepingCapacity: true)
    }
}
