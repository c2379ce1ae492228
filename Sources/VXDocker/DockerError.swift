// The one error type of VXDocker. Like `ControlError` (and containerization's `ContainerizationError`), its code
// is a struct wrapping a private enum, so codes can be added without breaking callers that switch over the
// existing ones. Each message is a complete sentence for a person (vxctl prints it as is); the cause keeps the
// underlying error (an `Errno`, a `DecodingError`) for programs.

/// An error from talking to the Docker engine: a code, a message a person can act on, and the error that caused it.
public struct DockerError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, as a category.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case invalidReference
            case unavailable
            case timeout
            case notFound
            case notRunning
            case engineError
            case protocolError
        }

        private let value: Value

        private init(_ value: Value) {
            self.value = value
        }

        /// The container reference is not a name or id Docker could have given out; nothing was sent.
        public static let invalidReference = Code(.invalidReference)
        /// The engine's socket is missing, refuses connections, or may not be opened by this user.
        public static let unavailable = Code(.unavailable)
        /// The engine did not answer completely within the client's timeout.
        public static let timeout = Code(.timeout)
        /// The engine answered 404: no container has that name, id or id prefix.
        public static let notFound = Code(.notFound)
        /// The container exists but has no running process (`State.Running` false or `State.Pid` 0).
        public static let notRunning = Code(.notRunning)
        /// The engine answered with another error status (400, 500, ...); the message carries its text.
        public static let engineError = Code(.engineError)
        /// The answer was not a well-formed HTTP/1.1 response, or its body was not the expected JSON.
        public static let protocolError = Code(.protocolError)

        /// A short name for logs, e.g. `not found`.
        public var description: String {
            switch value {
            case .invalidReference: "invalid reference"
            case .unavailable: "unavailable"
            case .timeout: "timeout"
            case .notFound: "not found"
            case .notRunning: "not running"
            case .engineError: "engine error"
            case .protocolError: "protocol error"
            }
        }
    }

    /// The category.
    public let code: Code
    /// A sentence a person can act on, e.g. `no such container: web`.
    public let message: String
    /// The HTTP status the engine answered with, when the error comes from an answer.
    public let status: Int?
    /// The underlying error (an `Errno`, a `DecodingError`), already rendered into `message` where it helps.
    public let cause: (any Error & Sendable)?

    /// - Parameters:
    ///   - code: the category.
    ///   - message: what went wrong, naming the container or the socket concerned.
    ///   - status: the engine's HTTP status, if it answered.
    ///   - cause: the error that led to this one, if any.
    public init(_ code: Code, _ message: String, status: Int? = nil, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.status = status
        self.cause = cause
    }

    /// The message: `cannot reach the Docker engine at /var/run/docker.sock: No such file or directory (is Docker
    /// running?)`.
    public var description: String { message }
}
