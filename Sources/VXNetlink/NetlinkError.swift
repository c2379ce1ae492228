// One error type for everything below InterfacePlacement: the kernel refusing a request (NLMSG_ERROR), a syscall
// failing, a reply that does not parse, a namespace that is not there. It keeps the errno as a typed `Errno`
// (swift-system) and a human message, in the shape of ContainerizationError (STYLE §8): a `Code` struct over a
// private enum, so codes can be added without breaking clients.

import SystemPackage

/// A failed netlink or namespace operation.
public struct NetlinkError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case kernel, system, malformedReply, timedOut, dumpInterrupted, invalidArgument, namespaceNotFound
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The kernel answered NLMSG_ERROR with a negative errno; `errno` holds it.
        public static let kernel = Code(.kernel)
        /// A syscall (socket, bind, send, recv, open, setns, ...) failed; `errno` holds it.
        public static let system = Code(.system)
        /// A reply did not parse (lengths that do not add up, a truncated datagram, a missing attribute).
        public static let malformedReply = Code(.malformedReply)
        /// No reply within the socket's receive timeout.
        public static let timedOut = Code(.timedOut)
        /// A dump came back marked NLM_F_DUMP_INTR (changed while it ran) every time it was tried.
        public static let dumpInterrupted = Code(.dumpInterrupted)
        /// The caller passed something that cannot be sent (a bad interface or namespace name, ...).
        public static let invalidArgument = Code(.invalidArgument)
        /// The network namespace (by name, pid or path) does not exist, or the path is not a network namespace.
        public static let namespaceNotFound = Code(.namespaceNotFound)

        public var description: String {
            switch value {
            case .kernel: return "kernel"
            case .system: return "system"
            case .malformedReply: return "malformed reply"
            case .timedOut: return "timed out"
            case .dumpInterrupted: return "dump interrupted"
            case .invalidArgument: return "invalid argument"
            case .namespaceNotFound: return "namespace not found"
            }
        }
    }

    /// What kind of failure.
    public var code: Code
    /// The errno, for `.kernel` and `.system` (and `.namespaceNotFound` when opening failed with one).
    public var errno: Errno?
    /// What was being done: "RTM_NEWLINK rename ifindex 7 to eth0", "open /run/netns/blue".
    public var operation: String
    /// More detail: the kernel's extended-ACK message, or our own explanation.
    public var detail: String?
    /// The byte offset of the offending attribute in the request (NLMSGERR_ATTR_OFFS), when the kernel gave one.
    public var attributeOffset: UInt32?

    /// - Parameters:
    ///   - code: the kind of failure.
    ///   - errno: the errno, if any.
    ///   - operation: what was being done.
    ///   - detail: an extended-ACK message or explanation.
    ///   - attributeOffset: NLMSGERR_ATTR_OFFS.
    public init(
        _ code: Code,
        errno: Errno? = nil,
        operation: String,
        detail: String? = nil,
        attributeOffset: UInt32? = nil
    ) {
        self.code = code
        self.errno = errno
        self.operation = operation
        self.detail = detail
        self.attributeOffset = attributeOffset
    }

    /// The error for an NLMSG_ERROR reply to `request`.
    init(kernel: KernelError, request: NetlinkRequest) {
        self.init(
            .kernel,
            errno: Errno(rawValue: kernel.errno),
            operation: request.description,
            detail: kernel.message,
            attributeOffset: kernel.attributeOffset
        )
    }

    /// True when the errno is `value` (for example `.fileExists` for EEXIST).
    public func hasErrno(_ value: Errno) -> Bool { errno == value }

    /// "RTM_NEWLINK rename ifindex 7 to eth0: File exists (EEXIST; kernel: ...)".
    public var description: String {
        var text = "\(operation): "
        if let errno {
            text += "\(errno) (errno \(errno.rawValue))"
        } else {
            text += code.description
        }
        if let detail, !detail.isEmpty { text += code == .kernel ? "; kernel says: \(detail)" : "; \(detail)" }
        if let attributeOffset { text += " [attribute at offset \(attributeOffset)]" }
        return text
    }
}
