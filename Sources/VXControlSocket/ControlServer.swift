// The control socket server: a Unix stream socket, one JSON-RPC message per line.
//
// Threads (this is the control path; none of it touches the dataplane):
//   - one accept thread: poll(listen fd, wake pipe) -> accept4 -> start a connection thread;
//   - one thread per connection (at most `Options.maxConnections`): poll(conn fd, wake pipe) -> recv ->
//     LineFramer -> ControlDispatcher (async, run as a detached Task while this thread waits on a semaphore, so
//     the blocking never happens on the cooperative pool) -> send the response line. Requests on one connection
//     are answered in order; connections run concurrently.
// Nothing spins: every thread sleeps in poll() or on the semaphore.
//
// Shutdown: `stop()` writes one byte into the wake pipe and never reads it, so the pipe stays readable and every
// poller wakes and leaves; a request already running is finished and answered first. `stop()` then waits for all
// threads, closes the listening socket and unlinks the socket file if it is still the one we created (same
// device and inode), so a stopping daemon never deletes a successor's socket.
//
// Bad input: a malformed line gets a parse-error response and the connection stays usable; an over-long line
// gets an invalid-request response and its bytes are skipped; a client that disconnects mid-request only ends
// its own thread (send uses MSG_NOSIGNAL, so EPIPE instead of SIGPIPE); a client that stops reading is dropped
// after `Options.sendTimeout`.

import Dispatch
import Foundation
import Glibc
import Synchronization
import SystemPackage
import VXControl
internal import VXUnixSocket

/// Serves the control protocol on a Unix stream socket.
///
/// ```swift
/// let server = try ControlServer.start(path: ControlSocketPath.resolve(environment: env), service: daemon)
/// // ... on SIGTERM (from async code; a plain thread may call the blocking `stop()`):
/// await server.stop()
/// ```
public final class ControlServer: Sendable {
    /// Tuning knobs; the defaults suit vxswitchd.
    public struct Options: Sendable {
        /// Connections served at once; more are answered with a `resourceBusy` error and closed.
        public var maxConnections: Int = 64
        /// The longest request line, in bytes.
        public var maxLineLength: Int = LineFramer.defaultMaxLineLength
        /// How long a response may wait for a client that does not read before the connection is dropped.
        public var sendTimeout: Duration = .seconds(5)
        /// The `listen` backlog.
        public var backlog: Int32 = 16
        /// Receives a line for events worth logging (an accept failure, a dropped client); nil to ignore.
        public var log: (@Sendable (String) -> Void)?

        /// The defaults.
        public init() {}
    }

    private struct State: Sendable {
        var stopped = false  // stop() has begun
        var connections = 0  // connection threads running
        var nextConnectionID = 0  // for thread names and log lines
    }

    /// The socket's path.
    public let path: String
    private let options: Options
    private let dispatcher: ControlDispatcher
    private let listener: FileDescriptor  // closed by stop() after the accept thread has left
    private let wakeRead: FileDescriptor  // readable once stop() has begun
    private let wakeWrite: FileDescriptor
    private let identity: FileIdentity  // the socket file we created, to unlink only our own
    private let state = Mutex(State())
    private let threads = DispatchGroup()  // the accept thread and every connection thread

    /// Binds the socket and starts serving `service`'s methods.
    /// - Parameters:
    ///   - path: the socket path; its parent directory is created (mode 0755) if missing.
    ///   - service: the daemon's implementation of the catalog.
    ///   - options: tuning knobs.
    /// - Returns: the running server; call `stop()` to shut it down.
    /// - Throws: `resourceBusy` when another process is listening on `path`, `invalidArgument` when `path` is
    ///   unusable (too long, not a socket), `systemError` for a failing syscall.
    public static func start(
        path: String,
        service: some ControlService,
        options: Options = Options()
    ) throws(ControlError) -> ControlServer {
        try start(path: path, router: ControlRouter(service: service), options: options)
    }

    /// Binds the socket and starts serving the methods of `router`.
    /// - Parameters:
    ///   - path: the socket path; its parent directory is created (mode 0755) if missing.
    ///   - router: the methods to serve.
    ///   - options: tuning knobs.
    /// - Returns: the running server; call `stop()` to shut it down.
    /// - Throws: as `start(path:service:options:)`.
    public static func start(
        path: String,
        router: ControlRouter,
        options: Options = Options()
    ) throws(ControlError) -> ControlServer {
        guard let address = UnixSocketAddress(path: path) else {
            throw ControlError(
                .invalidArgument,
                "control socket path \"\(path)\" must be 1-\(UnixSocketAddress.maxPathLength) bytes without NUL"
            )
        }
        try createParentDirectory(of: path)
        try removeStaleSocket(at: path, address: address)

        let listener: FileDescriptor
        switch Posix.unixStreamSocket(nonBlocking: true) {
        case .success(let fd): listener = fd
        case .failure(let errno): throw ControlError(.systemError, "cannot create the control socket", cause: errno)
        }
        var ownsListener = true
        defer { if ownsListener { try? listener.close() } }

        if case .failure(let errno) = Posix.bind(listener, address) {
            if errno == .addressInUse {
                throw ControlError(.resourceBusy, "another process bound \(path) while vxswitchd was starting")
            }
            throw ControlError(.systemError, "cannot bind the control socket to \(path)", cause: errno)
        }
        // Nobody can connect before listen(), so setting the mode between bind() and listen() leaves no window in
        // which the umask's mode would let another user in.
        if case .failure(let errno) = Posix.chmod(path, mode: 0o600) {
            _ = Posix.unlink(path)
            throw ControlError(.systemError, "cannot set mode 0600 on \(path)", cause: errno)
        }
        let identity: FileIdentity
        switch Posix.lstat(path) {
        case .success(let value): identity = value
        case .failure(let errno):
            throw ControlError(.systemError, "cannot stat the control socket \(path)", cause: errno)
        }
        if case .failure(let errno) = Posix.listen(listener, backlog: options.backlog) {
            _ = Posix.unlink(path)
            throw ControlError(.systemError, "cannot listen on \(path)", cause: errno)
        }
        let pipe: (read: FileDescriptor, write: FileDescriptor)
        switch Posix.pipe() {
        case .success(let value): pipe = value
        case .failure(let errno):
            _ = Posix.unlink(path)
            throw ControlError(.systemError, "cannot create the control server's wake pipe", cause: errno)
        }
        ownsListener = false
        let server = ControlServer(
            path: path, options: options, dispatcher: ControlDispatcher(router: router), listener: listener,
            wakeRead: pipe.read, wakeWrite: pipe.write, identity: identity
        )
        server.threads.enter()
        let thread = Thread { [server] in
            server.acceptLoop()
            server.threads.leave()
        }
        thread.name = "vxswitchd control accept"
        thread.start()
        return server
    }

    private init(
        path: String, options: Options, dispatcher: ControlDispatcher, listener: FileDescriptor,
        wakeRead: FileDescriptor, wakeWrite: FileDescriptor, identity: FileIdentity
    ) {
        self.path = path
        self.options = options
        self.dispatcher = dispatcher
        self.listener = listener
        self.wakeRead = wakeRead
        self.wakeWrite = wakeWrite
        self.identity = identity
    }

    /// Stops accepting, finishes the requests in progress, closes every connection and removes the socket file.
    /// Idempotent. Blocks the calling thread until every connection thread has left: from async code use the
    /// `async` overload. Do not call it from a method handler: it waits for the handler's own connection.
    public func stop() {
        let first = state.withLock { state in
            defer { state.stopped = true }
            return !state.stopped
        }
        guard first else { return }
        _ = try? wakeWrite.writeAll([UInt8(1)])
        threads.wait()
        try? listener.close()
        try? wakeRead.close()
        try? wakeWrite.close()
        if case .success(let current) = Posix.lstat(path), current == identity {
            _ = Posix.unlink(path)
        }
    }

    /// Stops the server as `stop()` does, waiting on a thread of its own: call this from async code, where a
    /// blocking wait would hold a cooperative-pool thread that the requests being finished may need.
    public func stop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let thread = Thread {
                self.stop()
                continuation.resume()
            }
            thread.name = "vxswitchd control stop"
            thread.start()
        }
    }

    /// The number of connections being served.
    public var connectionCount: Int { state.withLock { $0.connections } }

    // MARK: Startup

    private static func createParentDirectory(of path: String) throws(ControlError) {
        var components = path.split(separator: "/", omittingEmptySubsequences: false).dropLast()
        if components.last == "" { components = components.dropLast() }  // "/x.sock": parent is "/"
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in components where !component.isEmpty {
            prefix += "/" + component
            switch Posix.mkdir(prefix, mode: 0o755) {
            case .success, .failure(.fileExists): continue
            case .failure(let errno):
                throw ControlError(.systemError, "cannot create directory \(prefix)", cause: errno)
            }
        }
    }

    /// Removes a socket file nobody listens on; refuses when somebody does, or when the path is not a socket.
    private static func removeStaleSocket(at path: String, address: UnixSocketAddress) throws(ControlError) {
        switch Posix.lstat(path) {
        case .failure(.noSuchFileOrDirectory):
            return
        case .failure(let errno):
            throw ControlError(.systemError, "cannot inspect \(path)", cause: errno)
        case .success(let identity):
            guard identity.isSocket else {
                throw ControlError(.invalidArgument, "\(path) exists and is not a socket; not replacing it")
            }
        }
        let probe: FileDescriptor
        switch Posix.unixStreamSocket() {
        case .success(let fd): probe = fd
        case .failure(let errno): throw ControlError(.systemError, "cannot create a probe socket", cause: errno)
        }
        defer { try? probe.close() }
        switch Posix.connect(probe, address) {
        case .success:
            throw ControlError(.resourceBusy, "another vxswitchd is already listening on \(path)")
        case .failure(.connectionRefused):
            if case .failure(let errno) = Posix.unlink(path), errno != .noSuchFileOrDirectory {
                throw ControlError(.systemError, "cannot remove the stale control socket \(path)", cause: errno)
            }
        case .failure(let errno):
            throw ControlError(.systemError, "cannot probe the existing control socket \(path)", cause: errno)
        }
    }

    // MARK: Accepting

    private func acceptLoop() {
        while true {
            let ready: [Int16]
            switch Posix.poll([listener, wakeRead], timeoutMilliseconds: -1) {
            case .success(let revents): ready = revents
            case .failure(let errno):
                options.log?("control server: poll failed: \(errno); no longer accepting")
                return
            }
            if ready[1] != 0 { return }
            switch Posix.accept(listener) {
            case .success(let connection):
                startConnection(connection)
            case .failure(.wouldBlock), .failure(.connectionAbort), .failure(.protocolError):
                continue  // the client left between poll and accept
            case .failure(let errno):
                // EMFILE/ENFILE/ENOMEM leave the listener readable; back off instead of spinning.
                options.log?("control server: accept failed: \(errno); retrying in 100 ms")
                _ = Posix.poll([wakeRead], timeoutMilliseconds: 100)
            }
        }
    }

    private func startConnection(_ fd: FileDescriptor) {
        let id: Int? = state.withLock { state in
            guard state.connections < options.maxConnections, !state.stopped else { return nil }
            state.connections += 1
            state.nextConnectionID += 1
            return state.nextConnectionID
        }
        guard let id else {
            let error = ControlError(.resourceBusy, "too many control connections (at most \(options.maxConnections))")
            _ = Posix.setSendTimeout(fd, .milliseconds(100))
            if let line = try? ControlJSON.encodeLine(ControlResponse(id: .null, outcome: .failure(error))) {
                _ = Self.sendLine(fd, line)
            }
            try? fd.close()
            options.log?("control server: refused a connection: \(error.message)")
            return
        }
        threads.enter()
        let thread = Thread { [self] in
            serve(fd)
            try? fd.close()
            state.withLock { $0.connections -= 1 }
            threads.leave()
        }
        thread.name = "vxswitchd control conn \(id)"
        thread.start()
    }

    // MARK: Serving one connection

    private func serve(_ fd: FileDescriptor) {
        if case .failure(let errno) = Posix.setSendTimeout(fd, options.sendTimeout) {
            options.log?("control server: cannot set a send timeout: \(errno)")
        }
        var framer = LineFramer(maxLineLength: options.maxLineLength)
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            guard case .success(let ready) = Posix.poll([fd, wakeRead], timeoutMilliseconds: -1), ready[1] == 0
            else { return }
            let count: Int
            switch buffer.withUnsafeMutableBytes({ Posix.receive(fd, into: $0) }) {
            case .success(let value): count = value
            case .failure: return  // ECONNRESET and friends: the client is gone
            }
            if count == 0 { return }
            framer.append(buffer[0..<count])
            while let event = framer.next() {
                let response: [UInt8]?
                switch event {
                case .line(let line):
                    if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }  // blank line from a human
                    let dispatcher = self.dispatcher
                    response = Self.waitFor { await dispatcher.respond(toLine: line) }
                case .lineTooLong(let error):
                    response = try? ControlJSON.encodeLine(ControlResponse(id: .null, outcome: .failure(error)))
                }
                if let response, !Self.sendLine(fd, response) {
                    options.log?("control server: a client went away before reading its response")
                    return
                }
            }
        }
    }

    /// Sends `line` and a newline; false when the client is gone or stopped reading for `sendTimeout`.
    private static func sendLine(_ fd: FileDescriptor, _ line: [UInt8]) -> Bool {
        if case .success = Posix.sendAll(fd, line + [UInt8(ascii: "\n")]) { return true }
        return false
    }

    /// Runs `body` on the concurrency pool and blocks this (dedicated, non-pool) thread until it finishes.
    private static func waitFor<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
        let box = Box<T>()
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            box.value = await body()
            done.signal()
        }
        done.wait()
        return box.value!
    }
}

/// A slot handed from a Task to the thread waiting for it.
final class Box<T>: @unchecked Sendable {
    // @unchecked: `value` is written once before a semaphore signal and read only after the matching wait, which
    // orders the two accesses.
    var value: T?
}
