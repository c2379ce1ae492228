// Packet memory for one worker. A daemon's buffers are a budget for the whole switch, split over its workers
// (`workerShare`).
//
// Every frame a worker handles lives in one fixed pool allocated at start, in one page-aligned block so the
// io_uring backend can hand it to the kernel as provided-buffer rings. Two sizes share the block:
//   - `standardCount` standard buffers of `bufferSize` (2 KiB): tunnel datagrams, TAPs without offloads, and
//     the frames a worker builds itself (TSO segments);
//   - `largeCount` large buffers of `largeBufferSize` (64 KiB + 256): reads from TAPs with IFF_VNET_HDR and TSO,
//     which hand over up to 64 KiB of one TCP flow at a time, GRO reads from the VXLAN UDP socket (up to 64
//     datagrams at once), the worker's coalescing scratch and its UDP GSO sends.
// Large buffers are few (192 per worker in a 2-worker daemon: 12 MiB, against 8 MiB for 4096 standard ones), so a
// TSO read never truncates and a standard-size frame never pins 64 KiB. Pages are touched only as frames are
// written, so the resident size follows the traffic, not the block.
//
// A buffer is named by its `BufferID`, an index into one numbering: standard buffers first
// (0 ..< standardCount), then large ones (standardCount ..< count). Batches stay plain values and the pool
// stays the one owner of the memory (STYLE §7). Indices fit 16 bits, so a provided-buffer ring can use them as
// buffer IDs whatever the group.
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

/// Index of one buffer in a `PacketBufferPool` (standard buffers first, then large ones).
public struct BufferID: Hashable, Sendable {
    public let index: UInt32

    @inlinable
    public init(_ index: UInt32) {
        self.index = index
    }
}

/// A fixed pool of packet buffers with headroom, in two sizes, allocated once. See the file comment.
@safe
public final class PacketBufferPool {
    /// Bytes reserved at the front of every buffer for outer headers. 64 covers IPv4+UDP+VXLAN (36),
    /// IPv4+GRE+key (28) and a virtio-net header (12), and keeps the frame start cache-line aligned.
    public static let defaultHeadroom = 64
    /// 64 bytes of headroom + a 1500-byte underlay frame + 802.1Q tag, rounded up to 2 KiB.
    public static let defaultBufferSize = 2048
    /// The largest frame a TAP with TSO hands over: a 12-byte virtio-net header, Ethernet with one 802.1Q tag (18)
    /// and an IP packet of at most 65,535 bytes (the IPv4 total length and IPv6 payload length are 16 bits; BIG TCP
    /// is off unless an administrator raises gso_max_size) = 65,565 bytes; read at `headroom - 12` it ends at
    /// 65,617. A GRO read from a UDP tunnel socket through io_uring is larger: at `headroom - 12` the kernel
    /// writes its 16-byte io_uring_recvmsg_out, room for a sockaddr_in6 (`CVX_URING_RECVMSG_NAME_SPACE`, 32), the
    /// control data (`CVX_TUNNEL_CONTROL_SPACE`, 48) and up to 65,527 bytes of datagrams (an IPv6 UDP payload;
    /// IPv4's is at most 65,507), ending at 65,675 + the cmsg alignment. 64 KiB + 256 leaves room and is a multiple
    /// of 64; with 64 KiB + 128, a GRO read of 44 datagrams of 1,488 bytes (65,472) did not fit and was dropped.
    public static let defaultLargeBufferSize = 65_536 + 256

    /// Bytes per standard buffer, headroom included.
    public let bufferSize: Int
    /// Bytes per large buffer, headroom included.
    public let largeBufferSize: Int
    /// Bytes at the front of each buffer that receive paths leave free for encapsulation.
    public let headroom: Int
    /// Standard buffers: `BufferID`s 0 ..< standardCount.
    public let standardCount: Int
    /// Large buffers: `BufferID`s standardCount ..< count.
    public let largeCount: Int
    /// All buffers, both sizes: the size of a table indexed by `BufferID.index`.
    public var count: Int { standardCount + largeCount }
    /// Start of the block; standard buffer `i` is at `base + i * bufferSize`, large buffer `j` at
    /// `largeBase + j * largeBufferSize`.
    private let base: UnsafeMutableRawPointer
    /// Start of the large buffers (`base + standardCount * bufferSize`).
    private let largeBase: UnsafeMutableRawPointer
    /// Indices of standard buffers nobody holds. A stack, so recently freed (cache-warm) buffers are reused first.
    private var freeList: [UInt32]
    /// Indices of large buffers nobody holds, likewise.
    private var largeFreeList: [UInt32]

    /// - Parameters:
    ///   - count: standard buffers.
    ///   - bufferSize: bytes per standard buffer including headroom; a multiple of 64.
    ///   - headroom: bytes left free at the front of each buffer.
    ///   - largeCount: large buffers (0: none; TAPs with a virtio header need them).
    ///   - largeBufferSize: bytes per large buffer including headroom; a multiple of 64.
    ///   `count + largeCount` is at most 65,536 so a provided-buffer ring can name every buffer with 16 bits.
    public init(
        count: Int, bufferSize: Int = defaultBufferSize, headroom: Int = defaultHeadroom, largeCount: Int = 0,
        largeBufferSize: Int = defaultLargeBufferSize
    ) {
        precondition(count > 0 && largeCount >= 0 && count + largeCount <= 65_536, "buffer count must be 1...65536")
        precondition(bufferSize % 64 == 0 && bufferSize > headroom, "buffer size must be a multiple of 64 above headroom")
        precondition(
            largeBufferSize % 64 == 0 && largeBufferSize >= bufferSize, "large buffer size must be a multiple of 64")
        self.standardCount = count
        self.largeCount = largeCount
        self.bufferSize = bufferSize
        self.largeBufferSize = largeBufferSize
        self.headroom = headroom
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let total = count * bufferSize + largeCount * largeBufferSize
        var memory: UnsafeMutableRawPointer? = nil
        let status = unsafe posix_memalign(&memory, pageSize, total)
        precondition(status == 0, "cannot allocate \(total) bytes of packet buffers")
        unsafe self.base = memory!
        unsafe self.largeBase = memory! + count * bufferSize
        self.freeList = Array((0..<UInt32(count)).reversed())
        self.largeFreeList = Array((UInt32(count)..<UInt32(count + largeCount)).reversed())
    }

    deinit {
        unsafe free(base)
    }

    /// Standard buffers currently free.
    public var available: Int { freeList.count }

    /// Large buffers currently free.
    public var availableLarge: Int { largeFreeList.count }

    /// Takes a free standard buffer, or nil when all are in use.
    @inlinable
    public func take() -> BufferID? {
        takeFree()
    }

    @usableFromInline
    func takeFree() -> BufferID? {
        guard let index = freeList.popLast() else { return nil }
        return BufferID(index)
    }

    /// Takes a free large buffer, or nil when all are in use (or the pool has none).
    public func takeLarge() -> BufferID? {
        guard let index = largeFreeList.popLast() else { return nil }
        return BufferID(index)
    }

    /// Returns a buffer taken with `take()` or `takeLarge()` to its free list. Giving back a buffer twice is a
    /// programmer error.
    public func give(_ buffer: BufferID) {
        precondition(buffer.index < UInt32(count), "buffer \(buffer.index) is not from this pool")
        if isLarge(buffer) {
            largeFreeList.append(buffer.index)
        } else {
            freeList.append(buffer.index)
        }
    }

    /// True for a large buffer.
    @inlinable
    public func isLarge(_ buffer: BufferID) -> Bool {
        Int(buffer.index) >= standardCount
    }

    /// The size of `buffer`, headroom included: `bufferSize` or `largeBufferSize`.
    @inlinable
    public func size(of buffer: BufferID) -> Int {
        isLarge(buffer) ? largeBufferSize : bufferSize
    }

    /// The start of buffer `buffer` (its headroom included).
    /// Safe to escape for as long as the pool lives: the block is never moved or freed before `deinit`.
    @unsafe
    @inlinable
    public func unsafeAddress(of buffer: BufferID) -> UnsafeMutableRawPointer {
        let index = Int(buffer.index)
        if index < standardCount { return unsafe blockBase.advanced(by: index * bufferSize) }
        return unsafe largeBlockBase.advanced(by: (index - standardCount) * largeBufferSize)
    }

    /// The start of the whole block, for registering it with the kernel.
    @unsafe
    @usableFromInline
    var blockBase: UnsafeMutableRawPointer { unsafe base }

    /// The start of the large buffers.
    @unsafe
    @usableFromInline
    var largeBlockBase: UnsafeMutableRawPointer { unsafe largeBase }

    /// The bytes `offset ..< offset + length` of `buffer`, for reading and writing in place.
    @unsafe
    @inlinable
    public func unsafeBytes(of buffer: BufferID, offset: Int, length: Int) -> UnsafeMutableRawBufferPointer {
        precondition(offset >= 0 && length >= 0 && offset + length <= size(of: buffer), "range outside buffer")
        return unsafe UnsafeMutableRawBufferPointer(start: unsafeAddress(of: buffer) + offset, count: length)
    }

    /// The whole block (both sizes), for registering it with the kernel (io_uring fixed or provided buffers).
    @unsafe
    public var unsafeBlock: UnsafeMutableRawBufferPointer {
        unsafe UnsafeMutableRawBufferPointer(
            start: base, count: standardCount * bufferSize + largeCount * largeBufferSize)
    }
}

/// Which buffers an engine has handed to its worker and not had back: the one check that a buffer is released once
/// and only once. Every engine keeps one; a double release would otherwise put one buffer in two places (for
/// io_uring, twice into the kernel's buffer ring, where two receives could then write into it).
struct BufferLedger {
    /// By buffer index: handed out and not yet released.
    private var held: [Bool]
    /// Buffers handed out and not yet released.
    private(set) var count = 0

    init(capacity: Int) {
        held = Array(repeating: false, count: capacity)
    }

    /// Records that `buffer` went to the worker.
    @inline(__always)
    mutating func handOut(_ buffer: BufferID) {
        held[Int(buffer.index)] = true
        count += 1
    }

    /// Records that `buffer` came back. Releasing a buffer that is not out is a programmer error and traps.
    @inline(__always)
    mutating func takeBack(_ buffer: BufferID) {
        let index = Int(buffer.index)
        precondition(index < held.count && held[index], "buffer \(buffer.index) released but not held")
        held[index] = false
        count -= 1
    }
}

extension PacketBufferPool {
    /// Buffers of each size: what one pool holds, what a whole switch may hold, or the least a worker needs.
    public struct Counts: Equatable, Sendable, CustomStringConvertible {
        public var standard: Int
        public var large: Int

        public init(standard: Int, large: Int) {
            self.standard = standard
            self.large = large
        }

        public var description: String { "\(standard) standard + \(large) large" }
    }

    /// One worker's pool when `budget` is split evenly over `workers`: rounded down, so the shares never add up to
    /// more than the budget, and each size raised to `floor` when the split would leave less (only then can they add
    /// up to more).
    ///
    /// Why a budget and not a count per worker: io_uring offers every free buffer to the kernel, which fills its
    /// provided-buffer ring in ring order, so under load each worker's whole pool ends up resident and peak RSS
    /// would grow with `--workers`.
    /// - Parameters:
    ///   - budget: buffers for all workers together.
    ///   - workers: at least 1.
    ///   - floor: the least one worker runs on (`DataplaneWorker.minimumPool`).
    ///   - ceiling: the most one worker gets, however few share the budget: past a point more buffers only add
    ///     resident memory (a lone worker with the whole budget peaked 13 MB above one with half of it).
    public static func workerShare(of budget: Counts, workers: Int, floor: Counts, ceiling: Counts) -> Counts {
        precondition(workers >= 1, "a switch has at least one worker")
        return Counts(
            standard: max(min(budget.standard / workers, ceiling.standard), floor.standard),
            large: max(min(budget.large / workers, ceiling.large), floor.large))
    }
}
