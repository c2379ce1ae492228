// The client side: connect to the daemon's socket, send request lines, read response lines, each round trip
// bounded by a timeout. The I/O is blocking; the async entry points run it on a thread of its own, so a caller on
// the cooperative pool never blocks a pool thread the server (in-process, in tests) may need to answer.

import Dispatch
import Foundation
import Glibc
import Synchronization
import SystemPackage
import VXControl
internal import VXUnixSocket

/// One connection to vxswitchd. Requests on it are sent one at a time and answered in order.
public final class ControlConnection: Sendable {
    private struct State: Sendable {
        var fd: FileDescriptor?  // nil once closed
        var framer: LineFramer
        var nextID: Int64 = 1
    }

    /// The socket path.
    public let path: String
    /// How long one round trip may take.
    public let timeout: Duration
    private let state: Mutex<State>

    /// Connects, blocking the calling thread.
    /// - Parameters:
    ///   - path: the daemon's socket path (see `ControlSocketPath.resolve`).
    ///   - timeout: the bound on connecting and on each round trip.
    /// - Throws: `unavailable`: `cannot reach vxswitchd at PATH: No such file or directory`.
    public init(path: String, timeout: Duration = .seconds(10)) throws(ControlError) {
        self.path = path
        self.timeout = timeout
        guard let address = UnixSocketAddress(path: path) else {
            throw ControlError(
                .unavailable, "cannot reach vxswitchd at \(path)",
                cause: ControlError.RemoteCause("the path must be 1-\(UnixSocketAddress.maxPathLength) bytes")
            )
        }
        let fd: FileDescriptor
        switch Posix.unixStreamSocket() {
        case .success(let value): fd = value
        case .failure(let errno): throw ControlError(.unavailable, "cannot reach vxswitchd at \(path)", cause: errno)
        }
        // SO_SNDTIMEO bounds a blocking AF_UNIX connect() whose listener's backlog is full, and every send.
        _ = Posix.setSendTimeout(fd, timeout)
        if case .failure(let errno) = Posix.connect(fd, address) {
            try? fd.close()
            throw ControlError(.unavailable, "cannot reach vxswitchd at \(path)", cause: errno)
        }
        // Responses are bounded like requests, plus room for large fdb tables.
        self.state = Mutex(State(fd: fd, framer: LineFramer(maxLineLength: 64 << 20)))
    }

    /// Connects without blocking the caller's thread.
    /// - Parameters:
    ///   - path: the daemon's socket path.
    ///   - timeout: the bound on connecting and on each round trip.
    /// - Returns: the connection.
    public static func connect(path: String, timeout: Duration = .seconds(10)) async throws(ControlError)
        -> ControlConnection
    {
        try await offloaded { () throws(ControlError) in try ControlConnection(path: path, timeout: timeout) }
    }

    deinit {
        state.withLock { state in
            try? state.fd?.close()
        }
    }

    /// Closes the connection; later calls fail with `protocolError`.
    public func close() {
        state.withLock { state in
            try? state.fd?.close()
            state.fd = nil
        }
    }

    /// Sends one line and reads one response line, blocking the calling thread.
    /// - Parameter line: the request, without a newline (one is appended).
    /// - Returns: the response line, without its newline.
    /// - Throws: `timeout`, or `protocolError` when the daemon closes the connection.
    public func roundTripBlocking(_ line: [UInt8]) throws(ControlError) -> [UInt8] {
        try state.withLock { state throws(ControlError) in
            guard let fd = state.fd else {
                throw ControlError(.protocolError, "the connection to vxswitchd at \(path) is closed")
            }
            let deadline = ContinuousClock.now + timeout
            // Any failure from here on closes the connection: a late or partial answer left in the socket would
            // otherwise be read as the answer to the next request.
            do throws(ControlError) {
                return try exchange(fd, line, deadline: deadline, framer: &state.framer)
            } catch {
                try? fd.close()
                state.fd = nil
                throw error
            }
        }
    }

    private func exchange(
        _ fd: FileDescriptor, _ line: [UInt8], deadline: ContinuousClock.Instant, framer: inout LineFramer
    ) throws(ControlError) -> [UInt8] {
        try send(fd, line + [UInt8(ascii: "\n")])
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            switch framer.next() {
            case .line(let response)?: return response
            case .lineTooLong(let error)?:
                throw ControlError(.protocolError, "vxswitchd sent an over-long response", cause: error)
            case nil: break
            }
            switch Posix.waitReadable(fd, until: deadline) {
            case .success(true): break
            case .success(false): throw timedOut()
            case .failure(let errno):
                throw ControlError(.protocolError, "cannot wait for vxswitchd at \(path)", cause: errno)
            }
            let count: Int
            switch buffer.withUnsafeMutableBytes({ Posix.receive(fd, into: $0) }) {
            case .success(let value): count = value
            case .failure(let errno):
                throw ControlError(.protocolError, "lost the connection to vxswitchd at \(path)", cause: errno)
            }
            if count == 0 {
                throw ControlError(.protocolError, "vxswitchd at \(path) closed the connection before answering")
            }
            framer.append(buffer[0..<count])
        }
    }

    /// Sends one line and reads one response line without blocking the caller's thread.
    /// - Parameter line: the request, without a newline.
    /// - Returns: the response line.
    public func roundTrip(_ line: [UInt8]) async throws(ControlError) -> [UInt8] {
        try await offloaded { () throws(ControlError) in try self.roundTripBlocking(line) }
    }

    /// Calls a method by name with untyped params, blocking the calling thread.
    /// - Parameters:
    ///   - method: the method name.
    ///   - params: the params object.
    /// - Returns: the result as JSON.
    /// - Throws: the daemon's error, or a transport error.
    public func callRawBlocking(method: String, params: JSONValue) throws(ControlError) -> JSONValue {
        let id = RequestID.number(state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        })
        let line = try ControlJSON.encodeLine(ControlRequest(id: id, method: method, params: params))
        let responseLine = try roundTripBlocking(line)
        let response: ControlResponse
        do {
            response = try ControlJSON.decode(ControlResponse.self, from: try ControlJSON.parse(responseLine),
                                              failureCode: .protocolError)
        } catch {
            throw ControlError(.protocolError, "vxswitchd at \(path) sent something that is not a response",
                               cause: error)
        }
        // The id first: an answer to another request must not pass for this one's (a parse-error answer has a
        // null id).
        guard response.id == id || response.id == .null else {
            throw ControlError(.protocolError, "vxswitchd answered request \(response.id) instead of \(id)")
        }
        if case .failure(let error) = response.outcome { throw error }
        return try response.outcome.get()
    }

    /// Calls a method by name with untyped params.
    /// - Parameters:
    ///   - method: the method name.
    ///   - params: the params object.
    /// - Returns: the result as JSON.
    public func callRaw(method: String, params: JSONValue) async throws(ControlError) -> JSONValue {
        try await offloaded { () throws(ControlError) in try self.callRawBlocking(method: method, params: params) }
    }

    /// Calls a catalog method, blocking the calling thread.
    /// - Parameters:
    ///   - method: the method.
    ///   - params: its params.
    /// - Returns: its typed result.
    public func callBlocking<M: ControlMethod>(_ method: M.Type, _ params: M.Params) throws(ControlError) -> M.Result {
        let json = try callRawBlocking(method: M.name, params: try ControlJSON.value(of: params))
        return try ControlJSON.decode(M.Result.self, from: json, failureCode: .protocolError)
    }

    /// Calls a catalog method.
    /// - Parameters:
    ///   - method: the method.
    ///   - params: its params.
    /// - Returns: its typed result.
    public func call<M: ControlMethod>(_ method: M.Type, _ params: M.Params) async throws(ControlError) -> M.Result {
        try await offloaded { () throws(ControlError) in try self.callBlocking(method, params) }
    }

    private func send(_ fd: FileDescriptor, _ bytes: [UInt8]) throws(ControlError) {
        switch Posix.sendAll(fd, bytes) {
        case .success: return
        case .failure(.wouldBlock): throw timedOut()
        case .failure(let errno):
            throw ControlError(.protocolError, "lost the connection to vxswitchd at \(path)", cause: errno)
        }
    }

    private func timedOut() -> ControlError {
        ControlError(.timeout, "vxswitchd at \(path) did not answer within \(timeout)")
    }
}

/// One-shot calls: connect, call, close.
public struct ControlClient: Sendable {
    /// The socket path.
    public var path: String
    /// The bound on connecting and on the round trip.
    public var timeout: Duration

    /// - Parameters:
    ///   - path: the daemon's socket path (see `ControlSocketPath.resolve`).
    ///   - timeout: the bound on connecting and on the round trip.
    public init(path: String, timeout: Duration = .seconds(10)) {
        self.path = path
        self.timeout = timeout
    }

    /// Calls a catalog method on a fresh connection, blocking the calling thread (for vxctl's `main`).
    /// - Parameters:
    ///   - method: the method.
    ///   - params: its params.
    /// - Returns: its typed result.
    public func callBlocking<M: ControlMethod>(_ method: M.Type, _ params: M.Params) throws(ControlError) -> M.Result {
        let connection = try ControlConnection(path: path, timeout: timeout)
        defer { connection.close() }
        return try connection.callBlocking(method, params)
    }

    /// Calls a method by name on a fresh connection, blocking the calling thread.
    /// - Parameters:
    ///   - method: the method name.
    ///   - params: the params object.
    /// - Returns: the result as JSON.
    public func callRawBlocking(method: String, params: JSONValue) throws(ControlError) -> JSONValue {
        let connection = try ControlConnection(path: path, timeout: timeout)
        defer { connection.close() }
        return try connection.callRawBlocking(method: method, params: params)
    }

    /// Calls a catalog method on a fresh connection.
    /// - Parameters:
    ///   - method: the method.
    ///   - params: its params.
    /// - Returns: its typed result.
    public func call<M: ControlMethod>(_ method: M.Type, _ params: M.Params) async throws(ControlError) -> M.Result {
        try await offloaded { () throws(ControlError) in try self.callBlocking(method, params) }
    }
}

/// Runs blocking work on a new thread and resumes the caller when it is done.
func offloaded<T: Sendable>(_ work: @escaping @Sendable () throws(ControlError) -> T) async throws(ControlError) -> T {
    let result: Result<T, ControlError> = await withCheckedContinuation { continuation in
        let thread = Thread {
            continuation.resume(returning: Result { () throws(ControlError) in try work() })
        }
        thread.name = "vxctl control I/O"
        thread.start()
    }
    return try result.get()
}
