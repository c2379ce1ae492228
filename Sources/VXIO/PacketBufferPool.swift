// Packet memory for one worker.
//
// Every frame a worker handles lives in one fixed pool allocated at start: `count` buffers of `bufferSize`
// bytes each, in one page-aligned block so the io_uring backend can hand it to the kernel as a provided-buffer
// ring or as registered buffers. A buffer is named by its `BufferID` (an index), never by a pointer, so batches
// stay plain values and the pool stays the one owner of the memory (STYLE §7).
//
// Each buffer starts with `headroom` bytes that receive paths leave empty: encapsulation writes the outer
// header there, in place, instead of copying the frame (wireguard-go reads the TUN at an offset for the same
// reason; OVS calls it DP_NETDEV_HEADROOM).
//
// Thread-safety: none. A pool belongs to the engine of one worker thread, like the ring itself.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Index of one buffer in a `PacketBufferPool`.
public struct BufferID: Hashable, Sendable {
    public let index: UInt32

    @inlinable
    public init(_ index: UInt32) {
        self.index = index
    }
}

/// A fixed pool of equally sized packet buffers with headroom, allocated once.
@safe
public final class PacketBufferPool {
    /// Bytes reserved at the front of every buffer for outer headers. 64 covers IPv4+UDP+VXLAN (36),
    /// IPv4+GRE+key (28) and a virtio-net header (12), and keeps the frame start cache-line aligned.
    public static let defaultHeadroom = 64
    /// 64 bytes of headroom + a 1500-byte underlay frame + 802.1Q tag, rounded up to 2 KiB.
    public static let defaultBufferSize = 2048

    /// Total bytes per buffer, headroom included.
    public let bufferSize: Int
    /// Bytes at the front of each buffer that receive paths leave free for encapsulation.
    public let headroom: Int
    /// Number of buffers.
    public let count: Int
    /// Start of the block; buffer `i` is at `base + i * bufferSize`.
    private let base: UnsafeMutableRawPointer
    /// Indices of buffers nobody holds. A stack, so recently freed (cache-warm) buffers are reused first.
    private var freeList: [UInt32]

    /// - Parameters:
    ///   - count: number of buffers (at most 65,536 so a provided-buffer ring can name them with 16 bits).
    ///   - bufferSize: bytes per buffer including headroom; a multiple of 64.
    ///   - headroom: bytes left free at the front of each buffer.
    public init(count: Int, bufferSize: Int = defaultBufferSize, headroom: Int = defaultHeadroom) {
        precondition(count > 0 && count <= 65_536, "buffer count must be 1...65536")
        precondition(bufferSize % 64 == 0 && bufferSize > headroom, "buffer size must be a multiple of 64 above headroom")
        self.count = count
        self.bufferSize = bufferSize
        self.headroom = headroom
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        var memory: UnsafeMutableRawPointer? = nil
        let status = unsafe posix_memalign(&memory, pageSize, count * bufferSize)
        precondition(status == 0, "cannot allocate \(count * bufferSize) bytes of packet buffers")
        unsafe self.base = memory!
        self.freeList = Array((0..<UInt32(count)).reversed())
    }

    deinit {
        unsafe free(base)
    }

    /// Buffers currently free.
    public var available: Int { freeList.count }

    /// Takes a free buffer, or nil when all are in use.
    @inlinable
    public func take() -> BufferID? {
        takeFree()
    }

    @usableFromInline
    func takeFree() -> BufferID? {
        guard let index = freeList.popLast() else { return nil }
        return BufferID(index)
    }

    /// Returns a buffer taken with `take()`. Giving back a buffer twice is a programmer error.
    public func give(_ buffer: BufferID) {
        precondition(buffer.index < UInt32(count), "buffer \(buffer.index) is not from this pool")
        freeList.append(buffer.index)
    }

    /// The start of buffer `buffer` (its headroom included).
    /// Safe to escape for as long as the pool lives: the block is never moved or freed before `deinit`.
    @unsafe
    @inlinable
    public func unsafeAddress(of buffer: BufferID) -> UnsafeMutableRawPointer {
        unsafe blockBase.advanced(by: Int(buffer.index) * bufferSize)
    }

    /// The start of the whole block, for registering it with the kernel.
    @unsafe
    @usableFromInline
    var blockBase: UnsafeMutableRawPointer { unsafe base }

    /// The bytes `offset ..< offset + length` of `buffer`, for reading and writing in place.
    @unsafe
    @inlinable
    public func unsafeBytes(of buffer: BufferID, offset: Int, length: Int) -> UnsafeMutableRawBufferPointer {
        precondition(offset >= 0 && length >= 0 && offset + length <= bufferSize, "range outside buffer")
        return unsafe UnsafeMutableRawBufferPointer(start: unsafeAddress(of: buffer) + offset, count: length)
    }

    /// The whole block, for registering it with the kernel (io_uring fixed or provided buffers).
    @unsafe
    public var unsafeBlock: UnsafeMutableRawBufferPointer {
        unsafe UnsafeMutableRawBufferPointer(start: base, count: count * bufferSize)
    }
}
