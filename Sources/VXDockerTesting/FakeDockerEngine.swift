// A stand-in for dockerd's API socket, for tests: it listens on a Unix socket in a fresh temporary directory and
// answers `GET /containers/{ref}/json` the way the Engine API does (resolving a full id, then a name, then a unique
// id prefix, as moby's `daemon.GetContainer` does), with the engine's headers and JSON shapes. It can also
// misbehave on purpose: a fixed status, raw bytes (garbage, truncation), or a stall, to test the client's errors
// and timeouts.
//
// Threads: one accept thread, plus one thread per connection. Configuration and the request log sit behind a
// Mutex, so tests may change `reply` between requests from any thread. `stop()` (or deinit) wakes every thread
// through a pipe, waits for them, and removes the socket and its directory.
//
// Test-only: this target has no product, and its API is `package`, so it never becomes part of VXDocker's public
// surface. VXDaemon's tests can use it for `attach --docker`.

import Dispatch
import Foundation
import Glibc
import Synchronization
import SystemPackage
import VXDocker
internal import VXUnixSocket

/// A fake Docker engine on a Unix socket.
package final class FakeDockerEngine: Sendable {
    /// A container the fake knows.
    package struct Container: Sendable, Equatable {
        /// The full id: 64 lowercase hex digits.
        package var id: String
        /// The name without the leading `/` (the fake reports it with one, as the engine does).
        package var name: String
        /// `State.Pid`: 0 when not running.
        package var pid: Int32
        /// `State.Running`.
        package var running: Bool

        /// - Parameters:
        ///   - id: the full id; derived from `name` when nil (stable across runs).
        ///   - name: the name, without `/`.
        ///   - pid: the init process id, 0 when not running.
        ///   - running: `State.Running`; true when `pid` is not 0, unless given.
        package init(id: String? = nil, name: String, pid: Int32, running: Bool? = nil) {
            self.id = id ?? Self.id(for: name)
            self.name = name
            self.pid = pid
            self.running = running ?? (pid != 0)
        }

        /// A 64-hex-digit id derived from `name` with FNV-1a, so tests can predict it.
        package static func id(for name: String) -> String {
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            var words: [String] = []
            for round in 0..<4 {
                for byte in Array(name.utf8) + [UInt8(round)] {
                    hash = (hash ^ UInt64(byte)) &* 0x0100_0000_01b3
                }
                let hex = String(hash, radix: 16)
                words.append(String(repeating: "0", count: 16 - hex.count) + hex)
            }
            return words.joined()
        }
    }

    /// How the body of an answer is framed.
    package enum Framing: Sendable, Equatable {
        /// `Content-Length: N`.
        case contentLength
        /// `Transfer-Encoding: chunked`, the body cut into chunks of at most this many bytes.
        case chunked(chunkSize: Int)
        /// No length: the body ends when the fake closes the connection.
        case close
    }

    /// What the fake does with the next requests.
    package enum Reply: Sendable, Equatable {
        /// Answer as the engine would: 200 with the inspect JSON, or 404 `{"message":"No such container: x"}`.
        case engine
        /// Answer every request with this status, reason and body (framed by `framing`).
        case status(Int, reason: String, body: String)
        /// Send these bytes, whatever the request, then close.
        case raw([UInt8])
        /// Send these bytes (possibly none), then neither send nor close until stopped.
        case stall(after: [UInt8])
    }

    /// One request as received.
    package struct Request: Sendable, Equatable {
        /// The request line, e.g. `GET /containers/web/json HTTP/1.1`.
        package var requestLine: String
        /// The header fields in order, names as sent.
        package var headers: [Field]

        /// A header field.
        package struct Field: Sendable, Equatable {
            package var name: String
            package var value: String
        }

        /// The value of the first header named `name`, without regard to case.
        package func header(_ name: String) -> String? {
            headers.first { $0.name.lowercased() == name.lowercased() }?.value
        }
    }

    /// The socket path to give `DockerEngineClient(socketPath:)`.
    package var socketPath: String { server.socketPath }
    /// The temporary directory holding the socket, removed by `stop()`.
    package var directory: String { server.directory }
    // The threads hold the server, not this object, so dropping the last reference to the fake stops it.
    private let server: Server

    /// Starts listening.
    /// - Parameters:
    ///   - containers: the containers to serve.
    ///   - framing: how to frame answers; `contentLength` unless given.
    ///   - reply: what to answer; `engine` unless given.
    /// - Throws: `Errno` when the directory or socket cannot be set up.
    package init(containers: [Container], framing: Framing = .contentLength, reply: Reply = .engine) throws {
        server = try Server(State(containers: containers, framing: framing, reply: reply))
    }

    deinit {
        server.stop()
    }

    /// What the fake does with the next requests.
    package var reply: Reply {
        get { server.state.withLock { $0.reply } }
        set { server.state.withLock { $0.reply = newValue } }
    }

    /// How the fake frames its next answers.
    package var framing: Framing {
        get { server.state.withLock { $0.framing } }
        set { server.state.withLock { $0.framing = newValue } }
    }

    /// The containers served.
    package var containers: [Container] {
        get { server.state.withLock { $0.containers } }
        set { server.state.withLock { $0.containers = newValue } }
    }

    /// The requests received so far, in order.
    package var requests: [Request] { server.state.withLock { $0.requests } }

    /// How many connections were accepted so far (a rejected reference must leave this at 0).
    package var connectionCount: Int { server.state.withLock { $0.connections } }

    /// Stops serving: wakes and waits for every thread (stalled connections are closed), then removes the socket
    /// and its directory. Idempotent; dropping the last reference does it too.
    package func stop() {
        server.stop()
    }

    private struct State: Sendable {
        var containers: [Container]
        var framing: Framing
        var reply: Reply
        var requests: [Request] = []
        var connections = 0
        var stopped = false
    }

    /// The listener and its threads.
    private final class Server: Sendable {
        let socketPath: String
        let directory: String
        let state: Mutex<State>
        private let listener: FileDescriptor
        private let wake: (read: FileDescriptor, write: FileDescriptor)  // readable once stopped: the stop signal
        private let threads = DispatchGroup()  // the accept thread and every connection thread

        init(_ initial: State) throws {
            // /tmp rather than $TMPDIR: sun_path holds only 107 bytes.
            var template = Array("/tmp/vxdocker-XXXXXX".utf8CString)
            guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
                throw Errno(rawValue: errno)
            }
            directory = String(cString: made)
            socketPath = directory + "/docker.sock"
            state = Mutex(initial)
            do {
                listener = try Posix.unixStreamSocket().get()
            } catch {
                try? FileManager.default.removeItem(atPath: directory)
                throw error
            }
            do {
                wake = try Posix.pipe().get()
            } catch {
                try? listener.close()
                try? FileManager.default.removeItem(atPath: directory)
                throw error
            }
            do {
                try Posix.bind(listener, UnixSocketAddress(path: socketPath)!).get()
                try Posix.listen(listener, backlog: 16).get()
            } catch {
                try? listener.close()
                try? wake.read.close()
                try? wake.write.close()
                try? FileManager.default.removeItem(atPath: directory)
                throw error
            }
            threads.enter()
            let thread = Thread { [self] in
                acceptLoop()
                threads.leave()
            }
            thread.name = "FakeDockerEngine accept"
            thread.start()
        }

        func stop() {
            let first = state.withLock { state in
                defer { state.stopped = true }
                return !state.stopped
            }
            guard first else { return }
            // The byte is never read, so the pipe stays readable and every poll on it returns from now on.
            _ = try? wake.write.writeAll([UInt8(1)])
            threads.wait()
            try? listener.close()
            try? wake.read.close()
            try? wake.write.close()
            _ = Posix.unlink(socketPath)
            try? FileManager.default.removeItem(atPath: directory)
        }

        // MARK: Serving

        private func acceptLoop() {
            while true {
                guard case .success(let ready) = Posix.poll([listener, wake.read], timeoutMilliseconds: -1),
                    ready[1] == 0
                else { return }
                guard ready[0] != 0, case .success(let connection) = Posix.accept(listener) else { continue }
                state.withLock { $0.connections += 1 }
                threads.enter()
                let thread = Thread { [self] in
                    serve(connection)
                    try? connection.close()
                    threads.leave()
                }
                thread.name = "FakeDockerEngine connection"
                thread.start()
            }
        }

        private func serve(_ connection: FileDescriptor) {
            guard let request = readRequest(connection) else { return }
            let (reply, framing, containers) = state.withLock { state in
                state.requests.append(request)
                return (state.reply, state.framing, state.containers)
            }
            switch reply {
            case .engine:
                let (status, reason, body) = FakeDockerEngine.answer(request, containers: containers)
                write(
                    FakeDockerEngine.response(status: status, reason: reason, body: body, framing: framing),
                    to: connection
                )
            case .status(let status, let reason, let body):
                write(
                    FakeDockerEngine.response(status: status, reason: reason, body: Array(body.utf8), framing: framing),
                    to: connection
                )
            case .raw(let bytes):
                write(bytes, to: connection)
            case .stall(let bytes):
                write(bytes, to: connection)
                _ = Posix.poll([wake.read], timeoutMilliseconds: -1)
            }
        }

        /// Reads up to the end of the request head; nil if the client closes first or the fake is stopped.
        private func readRequest(_ connection: FileDescriptor) -> Request? {
            var head: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            let terminator = Array("\r\n\r\n".utf8)
            while !head.ends(with: terminator) {
                guard head.count < 64 * 1024,
                    case .success(let ready) = Posix.poll([connection, wake.read], timeoutMilliseconds: -1),
                    ready[1] == 0,
                    case .success(let count) = buffer.withUnsafeMutableBytes({ Posix.receive(connection, into: $0) }),
                    count > 0
                else { return nil }
                head += buffer[0..<count]
                // A request with a body never comes from the client under test; reading stops at the blank line.
            }
            let lines = String(decoding: head.dropLast(4), as: UTF8.self).components(separatedBy: "\r\n")
            let fields = lines.dropFirst().map { line in
                let parts = line.split(separator: ":", maxSplits: 1)
                return Request.Field(
                    name: String(parts.first ?? ""),
                    value: parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
                )
            }
            return Request(requestLine: lines[0], headers: Array(fields))
        }

        private func write(_ bytes: [UInt8], to connection: FileDescriptor) {
            _ = Posix.sendAll(connection, bytes)  // a failure means the client went away
        }
    }

    // MARK: The Engine API's answers

    /// Routes a request as dockerd does for the one endpoint the fake serves.
    private static func answer(_ request: Request, containers: [Container]) -> (Int, String, [UInt8]) {
        let parts = request.requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0" else {
            return (400, "Bad Request", message("malformed request line"))
        }
        var segments = parts[1].split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        // An optional version prefix, `/v1.47/containers/...`.
        if let first = segments.first, first.hasPrefix("v"), Double(first.dropFirst()) != nil {
            segments = segments.dropFirst()
        }
        guard parts[0] == "GET", segments.count == 3, segments.first == "containers", segments.last == "json",
            let reference = String(segments[segments.startIndex + 1]).removingPercentEncoding, !reference.isEmpty
        else {
            return (404, "Not Found", message("page not found"))
        }
        switch resolve(reference, in: containers) {
        case .found(let container):
            return (200, "OK", inspectJSON(container))
        case .notFound:
            return (404, "Not Found", message("No such container: \(reference)"))
        case .ambiguous:
            return (400, "Bad Request", message("multiple IDs found with provided prefix: \(reference)"))
        }
    }

    private enum Resolution {
        case found(Container)
        case notFound
        case ambiguous
    }

    /// moby's order: exact id, then name (with or without `/`), then unique id prefix.
    private static func resolve(_ reference: String, in containers: [Container]) -> Resolution {
        if let byID = containers.first(where: { $0.id == reference }) { return .found(byID) }
        let name = reference.hasPrefix("/") ? String(reference.dropFirst()) : reference
        if let byName = containers.first(where: { $0.name == name }) { return .found(byName) }
        let byPrefix = containers.filter { $0.id.hasPrefix(reference) }
        switch byPrefix.count {
        case 0: return .notFound
        case 1: return .found(byPrefix[0])
        default: return .ambiguous
        }
    }

    /// An engine error body: `{"message":"..."}` and a newline, as Go's json.Encoder writes it.
    private static func message(_ text: String) -> [UInt8] {
        let data = try! JSONSerialization.data(withJSONObject: ["message": text])
        return Array(data) + [UInt8(ascii: "\n")]
    }

    /// A trimmed but faithful `ContainerInspectResponse`: the fields the client reads sit among others, nested the
    /// same way, so a decoder that trips on unknown keys or nesting fails here as it would against dockerd.
    private static func inspectJSON(_ container: Container) -> [UInt8] {
        let status = container.running ? "running" : "exited"
        let json = """
            {"Id":"\(container.id)","Created":"2025-01-07T10:00:00.123456789Z","Path":"/bin/sh",\
            "Args":["-c","sleep infinity"],"State":{"Status":"\(status)","Running":\(container.running),\
            "Paused":false,"Restarting":false,"OOMKilled":false,"Dead":false,"Pid":\(container.pid),\
            "ExitCode":\(container.running ? 0 : 137),"Error":"","StartedAt":"2025-01-07T10:00:01.5Z",\
            "FinishedAt":"0001-01-01T00:00:00Z"},"Image":"sha256:\(String(container.id.reversed()))",\
            "ResolvConfPath":"/var/lib/docker/containers/\(container.id)/resolv.conf",\
            "Name":"/\(container.name)","RestartCount":0,"Driver":"overlay2","Platform":"linux",\
            "MountLabel":"","ProcessLabel":"","AppArmorProfile":"docker-default","ExecIDs":null,\
            "HostConfig":{"NetworkMode":"bridge","PidMode":"","Privileged":false},\
            "Mounts":[],"Config":{"Hostname":"\(container.id.prefix(12))","Image":"debian:bookworm",\
            "Labels":{"com.example.role":"web"},"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin"]},\
            "NetworkSettings":{"SandboxID":"\(container.id.prefix(16))",\
            "SandboxKey":"/var/run/docker/netns/\(container.id.prefix(12))","Networks":{"bridge":\
            {"IPAddress":"172.17.0.2","Gateway":"172.17.0.1","MacAddress":"02:42:ac:11:00:02"}}}}

            """
        return Array(json.utf8)
    }

    /// A response with the engine's headers, its body framed as asked.
    package static func response(status: Int, reason: String, body: [UInt8], framing: Framing) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(reason)\r\n"
        head += "Api-Version: 1.47\r\nContent-Type: application/json\r\nDocker-Experimental: false\r\n"
        head += "Ostype: linux\r\nServer: Docker/27.3.1 (linux)\r\nDate: Tue, 07 Jan 2025 10:00:02 GMT\r\n"
        var payload: [UInt8]
        switch framing {
        case .contentLength:
            head += "Content-Length: \(body.count)\r\n"
            payload = body
        case .chunked(let size):
            head += "Transfer-Encoding: chunked\r\n"
            payload = []
            var offset = 0
            while offset < body.count {
                let count = min(max(size, 1), body.count - offset)
                payload += Array("\(String(count, radix: 16))\r\n".utf8) + body[offset..<offset + count] + [13, 10]
                offset += count
            }
            payload += Array("0\r\n\r\n".utf8)
        case .close:
            payload = body
        }
        head += "Connection: close\r\n\r\n"
        return Array(head.utf8) + payload
    }
}

extension Array where Element == UInt8 {
    fileprivate func ends(with suffix: [UInt8]) -> Bool {
        count >= suffix.count && self[(count - suffix.count)...].elementsEqual(suffix)
    }
}
