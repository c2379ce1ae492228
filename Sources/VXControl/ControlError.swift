// The one error type of the control plane. It crosses the wire as a JSON-RPC 2.0 error object
// (`{"code": -32001, "message": "no port named \"tap9\"", "data": {"cause": "..."}}`), so its code is a number
// there, as wireguard-go's UAPI turns `IPCError{code}` into `errno=<n>`. In Swift the code is a struct wrapping a
// private enum, like containerization's `ContainerizationError.Code`, so new codes can be added without breaking
// clients that switch over the existing ones.

/// An error of the control plane: a code, a message a person can act on, and the error that caused it.
///
/// The daemon's handlers throw it, the dispatcher turns it into a JSON-RPC error response, and the client turns
/// that response back into a `ControlError` (with the remote cause kept as text in `ControlError.RemoteCause`).
public struct ControlError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, as a category with a stable JSON-RPC error number (`rawValue`).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case parseError
            case invalidRequest
            case methodNotFound
            case invalidParams
            case internalError
            case notFound
            case alreadyExists
            case invalidArgument
            case resourceBusy
            case systemError
            case unavailable
            case timeout
            case protocolError
            case other(Int)
        }

        private let value: Value

        private init(_ value: Value) {
            self.value = value
        }

        /// The request line is not valid JSON (JSON-RPC -32700).
        public static let parseError = Code(.parseError)
        /// The JSON is not a valid JSON-RPC 2.0 request object, or the line is too long (JSON-RPC -32600).
        public static let invalidRequest = Code(.invalidRequest)
        /// No method of that name exists (JSON-RPC -32601).
        public static let methodNotFound = Code(.methodNotFound)
        /// The params are missing, of the wrong type, or fail validation (JSON-RPC -32602).
        public static let invalidParams = Code(.invalidParams)
        /// The daemon failed in a way that is its own fault (JSON-RPC -32603).
        public static let internalError = Code(.internalError)
        /// The named object (port, peer, VNI) does not exist (-32001).
        public static let notFound = Code(.notFound)
        /// An object with that name or address already exists (-32002).
        public static let alreadyExists = Code(.alreadyExists)
        /// The params are well formed but conflict with the switch's state, e.g. a peer re-added with another
        /// encapsulation (-32003).
        public static let invalidArgument = Code(.invalidArgument)
        /// The object is in use, or another daemon already owns the control socket (-32004).
        public static let resourceBusy = Code(.resourceBusy)
        /// A system call failed; the cause holds the errno (-32005).
        public static let systemError = Code(.systemError)
        /// Client side only: the daemon's socket is missing or refuses connections (-32050).
        public static let unavailable = Code(.unavailable)
        /// Client side only: the daemon did not answer in time (-32051).
        public static let timeout = Code(.timeout)
        /// Client side only: the daemon closed the connection or sent something that is not a response (-32052).
        public static let protocolError = Code(.protocolError)

        /// The JSON-RPC error number sent on the wire.
        public var rawValue: Int {
            switch value {
            case .parseError: -32700
            case .invalidRequest: -32600
            case .methodNotFound: -32601
            case .invalidParams: -32602
            case .internalError: -32603
            case .notFound: -32001
            case .alreadyExists: -32002
            case .invalidArgument: -32003
            case .resourceBusy: -32004
            case .systemError: -32005
            case .unavailable: -32050
            case .timeout: -32051
            case .protocolError: -32052
            case .other(let number): number
            }
        }

        /// Maps a wire error number back to a code; numbers this build does not know keep their value.
        /// - Parameter rawValue: the `code` member of a JSON-RPC error object.
        public init(rawValue: Int) {
            let known: [Code] = Code.allKnown
            self = known.first { $0.rawValue == rawValue } ?? Code(.other(rawValue))
        }

        /// Every code this build defines, in the order of the documentation's table.
        public static let allKnown: [Code] = [
            .parseError, .invalidRequest, .methodNotFound, .invalidParams, .internalError,
            .notFound, .alreadyExists, .invalidArgument, .resourceBusy, .systemError,
            .unavailable, .timeout, .protocolError,
        ]

        /// A short name for logs and tables, e.g. `not found`.
        public var description: String {
            switch value {
            case .parseError: "parse error"
            case .invalidRequest: "invalid request"
            case .methodNotFound: "method not found"
            case .invalidParams: "invalid params"
            case .internalError: "internal error"
            case .notFound: "not found"
            case .alreadyExists: "already exists"
            case .invalidArgument: "invalid argument"
            case .resourceBusy: "resource busy"
            case .systemError: "system error"
            case .unavailable: "unavailable"
            case .timeout: "timeout"
            case .protocolError: "protocol error"
            case .other(let number): "error \(number)"
            }
        }
    }

    /// The cause of an error that came back over the wire: only its text survives the trip.
    public struct RemoteCause: Error, Sendable, Hashable, CustomStringConvertible {
        /// The cause's description as the daemon rendered it.
        public let description: String

        /// - Parameter description: the `data.cause` member of the JSON-RPC error object.
        public init(_ description: String) {
            self.description = description
        }
    }

    /// The category, sent on the wire as `code`.
    public let code: Code
    /// A sentence a person can act on, sent on the wire as `message`, e.g. `no port named "tap9"`.
    public let message: String
    /// The underlying error (an `Errno`, a decoding error), sent on the wire as `data.cause` text.
    public let cause: (any Error & Sendable)?

    /// - Parameters:
    ///   - code: the category.
    ///   - message: what went wrong, naming the object concerned.
    ///   - cause: the error that led to this one, if any.
    public init(_ code: Code, _ message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    /// The message, followed by the cause when there is one: `cannot reach vxswitchd at /run/x.sock: No such
    /// file or directory`.
    public var description: String {
        guard let cause else { return message }
        return "\(message): \(cause)"
    }
}

extension ControlError {
    static func invalidParams(_ message: String) -> ControlError {
        ControlError(.invalidParams, message)
    }
}
