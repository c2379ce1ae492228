// What this kernel's io_uring can do for `URingEngine`, probed once per process.
//
// The daemon asks `URingEngine.isSupported` before it builds io_uring workers and, when it is false, falls back
// to the epoll engine and logs `URingEngine.support.description` (which names the missing piece).

#if os(Linux)
#if canImport(Musl)
import Musl
#elseif canImport(Glibc)
import Glibc
#endif
internal import CLibURing
internal import CVXLinux

/// The result of probing the running kernel's io_uring for what `URingEngine` needs.
public struct URingSupport: Sendable, CustomStringConvertible {
    /// Why the engine cannot run here, or nil when it can.
    public let unsupportedReason: String?
    /// The kernel has IORING_OP_READ_MULTISHOT (Linux 6.7+), so TAP reads stay armed; otherwise the engine
    /// re-arms single-shot buffer-select reads after each frame.
    public let multishotRead: Bool

    /// True when `URingEngine` can be created on this kernel.
    public var isSupported: Bool { unsupportedReason == nil }

    public var description: String {
        if let unsupportedReason { return "io_uring unsupported: \(unsupportedReason)" }
        return "io_uring supported (TAP reads: \(multishotRead ? "multishot" : "single-shot, re-armed"))"
    }

    /// Sets up a small ring, registers a provided-buffer ring on it and checks the opcodes the engine uses
    /// with `io_uring_get_probe_ring`.
    static func probe() -> URingSupport {
        var ring = unsafe io_uring()
        let setup = unsafe io_uring_queue_init(4, &ring, 0)
        if setup < 0 {
            return URingSupport(unsupportedReason: "io_uring_queue_init failed: \(IOError(errno: -setup, operation: "io_uring_queue_init"))", multishotRead: false)
        }
        defer { unsafe io_uring_queue_exit(&ring) }

        var bufferRing: UnsafeMutablePointer<io_uring_buf_ring>? = nil
        let registered = unsafe cvx_uring_buf_ring_create(&ring, 2, 0, &bufferRing)
        if registered < 0 {
            return URingSupport(unsupportedReason: "no provided-buffer rings (Linux 5.19+): \(IOError(errno: -registered, operation: "io_uring_register_buf_ring"))", multishotRead: false)
        }
        unsafe cvx_uring_buf_ring_destroy(&ring, bufferRing, 2, 0)

        guard let probe = unsafe io_uring_get_probe_ring(&ring) else {
            return URingSupport(unsupportedReason: "io_uring_get_probe_ring failed (Linux 5.6+ needed)", multishotRead: false)
        }
        defer { unsafe io_uring_free_probe(probe) }
        // IORING_OP_SEND_ZC arrived in Linux 6.0 together with multishot recvmsg (IORING_RECV_MULTISHOT), which
        // has no opcode of its own to probe; its presence stands in for the flag.
        let needed: [(UInt32, String)] = [
            (IORING_OP_READ.rawValue, "IORING_OP_READ"),
            (IORING_OP_WRITEV.rawValue, "IORING_OP_WRITEV"),
            (IORING_OP_RECVMSG.rawValue, "IORING_OP_RECVMSG"),
            (IORING_OP_SENDMSG.rawValue, "IORING_OP_SENDMSG"),
            (IORING_OP_ASYNC_CANCEL.rawValue, "IORING_OP_ASYNC_CANCEL"),
            (IORING_OP_SEND_ZC.rawValue, "multishot recvmsg (Linux 6.0+, probed via IORING_OP_SEND_ZC)"),
        ]
        for (opcode, name) in needed where unsafe io_uring_opcode_supported(probe, Int32(opcode)) == 0 {
            return URingSupport(unsupportedReason: "kernel lacks \(name)", multishotRead: false)
        }
        let multishotRead = unsafe io_uring_opcode_supported(probe, Int32(CVX_IORING_OP_READ_MULTISHOT)) != 0
        return URingSupport(unsupportedReason: nil, multishotRead: multishotRead)
    }
}

/// The setup flags `URingEngine` asks for, best first. Each step drops what an older kernel rejects with EINVAL.
enum URingSetupFlags {
    /// Linux 6.1+: one issuing thread (the worker), completions' task work run only when the worker waits
    /// (no IPIs into a busy worker), created disabled so the worker thread that first uses the ring becomes
    /// its single issuer even when another thread constructed the engine.
    static let deferTaskrun = UInt32(IORING_SETUP_SINGLE_ISSUER) | UInt32(IORING_SETUP_DEFER_TASKRUN)
        | UInt32(IORING_SETUP_R_DISABLED)
    /// Linux 6.0: single issuer with cooperative task work (no forced interrupts of the worker).
    static let coopSingleIssuer = UInt32(IORING_SETUP_SINGLE_ISSUER) | UInt32(IORING_SETUP_COOP_TASKRUN)
        | UInt32(IORING_SETUP_R_DISABLED)
    /// Linux 5.19: cooperative task work only.
    static let coop = UInt32(IORING_SETUP_COOP_TASKRUN)
    /// Always added: our own CQ size, and keep submitting the rest of a batch when one SQE is bad.
    static let common = UInt32(IORING_SETUP_CQSIZE) | UInt32(IORING_SETUP_SUBMIT_ALL)

    static let attempts: [(flags: UInt32, name: String)] = [
        (deferTaskrun | common, "SINGLE_ISSUER|DEFER_TASKRUN"),
        (coopSingleIssuer | common, "SINGLE_ISSUER|COOP_TASKRUN"),
        (coop | common, "COOP_TASKRUN"),
        (UInt32(IORING_SETUP_CQSIZE), "CQSIZE only"),
    ]
}
#endif
