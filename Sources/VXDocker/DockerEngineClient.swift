// Finding a container's PID through the Docker Engine API, without the docker CLI: the equivalent of
// `docker inspect --format '{{.State.Pid}}' NAME`, which `ovs-docker add-port` and `pipework` run to reach the
// container's network namespace through /proc/PID/ns/net.
//
// Request flow, one connection per request, all on the calling thread:
//   1. check the reference (ContainerReference) - an invalid one never reaches the socket;
//   2. connect to the Unix socket (SO_SNDTIMEO bounds a connect stuck on a full backlog, and every send);
//   3. send `GET /containers/REF/json HTTP/1.1` with `Host: docker` and `Connection: close`;
//   4. poll + recv into HTTPResponseParser until the response is complete by its framing (Content-Length or
//      chunked) or the engine closes the connection; one deadline, `timeout` after the start, bounds 2-4;
//   5. map the status: 200 -> decode Id, Name, State.Pid, State.Running; 404 -> notFound; others -> engineError.
//
// The API path is unversioned on purpose. The engine then serves its own current API version, and the four fields
// read here have been in the inspect answer, unchanged, since API 1.0. A pinned version is a liability: Engine 29
// refuses every version below 1.44 ("client version 1.41 is too old"), while `/v1.44/...` would be refused by
// engines older than 25.0. Unversioned paths are what the engine documents for "the latest version".
//
// The I/O blocks; callers on the Swift concurrency pool should run it on a thread of their own, as
// VXControlSocket's client does.

import Foundation
import SystemPackage
internal import VXUnixSocket

/// A client for the parts of the Docker Engine API that vxswitch needs, over the engine's Unix socket.
///
/// Each call opens its own connection and closes it before returning, so the client holds no resources and is
/// safe to share between threads.
public struct DockerEngineClient: Sendable {
    /// Where dockerd listens unless configured otherwise.
    public static let defaultSocketPath = "/var/run/docker.sock"

    /// The engine's Unix socket.
    public var socketPath: String
    /// The bound on one whole request: connecting, sending, and receiving the complete answer.
    public var timeout: Duration
    /// The bounds on the answer's header and body sizes.
    var limits = HTTPResponseParser.Limits()

    /// - Parameters:
    ///   - socketPath: the engine's Unix socket, `/var/run/docker.sock` unless given.
    ///   - timeout: the bound on each request, from connecting to the last byte of the answer.
    public init(socketPath: String = DockerEngineClient.defaultSocketPath, timeout: Duration = .seconds(5)) {
        self.socketPath = socketPath
        self.timeout = timeout
    }

    /// Looks a container up by name, full id or unique id prefix, like `docker inspect`, blocking the calling
    /// thread for at most `timeout`. Engine API: `GET /containers/{id}/json`.
    /// - Parameters:
    ///   - reference: a container name (`web` or `/web`), full id, or unique id prefix.
    ///   - requireRunning: when true (the default), a container that is not running is an error rather than a
    ///     result, since its PID is then 0 and has no network namespace.
    /// - Returns: the container's id, name, PID and running state.
    /// - Throws: `DockerError` with code `invalidReference` (nothing was sent), `unavailable`
    ///   (`cannot reach the Docker engine at /var/run/docker.sock: No such file or directory (is Docker running?)`),
    ///   `timeout`, `notFound` (`no such container: web`), `notRunning` (`container web is not running`),
    ///   `engineError` (another error status, with the engine's message), or `protocolError` (the answer was not a
    ///   well-formed HTTP response with the expected JSON).
    public func inspectContainer(_ reference: String, requireRunning: Bool = true) throws(DockerError)
        -> ContainerInfo
    {
        let container = try ContainerReference(reference)
        let response = try get("/containers/\(container.pathSegment)/json", about: container)
        switch response.status {
        case 200:
            let info = try decodeInspect(response.body, about: container)
            if requireRunning && (!info.running || info.pid == 0) {
                throw DockerError(.notRunning, "container \(container) is not running", status: response.status)
            }
            return info
        case 404:
            let message = Self.engineMessage(in: response.body).map(Self.lowercasingFirstLetter)
            throw DockerError(.notFound, message ?? "no such container: \(container)", status: 404)
        default:
            var message = "the Docker engine at \(socketPath) answered \(response.status)"
            if !response.reason.isEmpty { message += " \(response.reason)" }
            message += " for container \(container)"
            if let detail = Self.engineMessage(in: response.body) { message += ": \(detail)" }
            throw DockerError(.engineError, message, status: response.status)
        }
    }

    // MARK: HTTP over the Unix socket

    /// Sends one GET and reads the complete response, within `timeout`.
    /// - Parameters:
    ///   - path: the request target, already percent-encoded.
    ///   - container: the container concerned, for messages.
    func get(_ path: String, about container: ContainerReference) throws(DockerError) -> HTTPResponse {
        let deadline = ContinuousClock.now + timeout
        let fd = try connect()
        defer { try? fd.close() }
        // Connection: close asks the engine to end the exchange after one response; the parser stops at the end
        // of the framed message anyway, so a keep-alive answer cannot stall us.
        let request =
            "GET \(path) HTTP/1.1\r\n" + "Host: docker\r\n" + "User-Agent: vxswitch\r\n"
            + "Accept: application/json\r\n" + "Connection: close\r\n" + "\r\n"
        try send(Array(request.utf8), on: fd, about: container)

        var parser = HTTPResponseParser(limits: limits)
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var received = 0
        while true {
            switch Posix.waitReadable(fd, until: deadline) {
            case .success(true): break
            case .success(false): throw timedOut(about: container, received: received)
            case .failure(let errno):
                throw DockerError(
                    .protocolError, "cannot wait for the Docker engine at \(socketPath): \(errno)", cause: errno
                )
            }
            let count: Int
            switch buffer.withUnsafeMutableBytes({ Posix.receive(fd, into: $0) }) {
            case .success(let value): count = value
            case .failure(let errno): throw lostConnection(errno, about: container)
            }
            received += count
            do {
                if count == 0 { return try parser.finish() }
                if let response = try parser.append(buffer[0..<count]) { return response }
            } catch {
                throw DockerError(
                    .protocolError,
                    "malformed answer from the Docker engine at \(socketPath) about container \(container): \(error)",
                    cause: error
                )
            }
        }
    }

    private func connect() throws(DockerError) -> FileDescriptor {
        guard let address = UnixSocketAddress(path: socketPath) else {
            throw DockerError(
                .unavailable,
                "cannot reach the Docker engine at \"\(socketPath)\": a socket path must be 1 to "
                    + "\(UnixSocketAddress.maxPathLength) bytes without NUL"
            )
        }
        let fd: FileDescriptor
        switch Posix.unixStreamSocket() {
        case .success(let value): fd = value
        case .failure(let errno):
            throw DockerError(.unavailable, "cannot reach the Docker engine at \(socketPath): \(errno)", cause: errno)
        }
        // SO_SNDTIMEO bounds a blocking AF_UNIX connect() whose listener's backlog is full, and every send.
        _ = Posix.setSendTimeout(fd, timeout)
        if case .failure(let errno) = Posix.connect(fd, address) {
            try? fd.close()
            switch errno {
            case .resourceTemporarilyUnavailable:
                throw DockerError(
                    .timeout, "the Docker engine at \(socketPath) did not accept a connection within \(timeout)",
                    cause: errno
                )
            case .noSuchFileOrDirectory, .connectionRefused:
                throw DockerError(
                    .unavailable,
                    "cannot reach the Docker engine at \(socketPath): \(errno) (is Docker running?)", cause: errno
                )
            case .permissionDenied, .notPermitted:
                throw DockerError(
                    .unavailable,
                    "cannot reach the Docker engine at \(socketPath): \(errno) (run as root or as a member of the "
                        + "docker group)",
                    cause: errno
                )
            default:
                throw DockerError(
                    .unavailable, "cannot reach the Docker engine at \(socketPath): \(errno)", cause: errno
                )
            }
        }
        return fd
    }

    private func send(_ bytes: [UInt8], on fd: FileDescriptor, about container: ContainerReference)
        throws(DockerError)
    {
        switch Posix.sendAll(fd, bytes) {
        case .success: return
        case .failure(.resourceTemporarilyUnavailable):
            throw DockerError(
                .timeout, "the Docker engine at \(socketPath) did not take the request within \(timeout)"
            )
        case .failure(let errno): throw lostConnection(errno, about: container)
        }
    }

    private func lostConnection(_ errno: Errno, about container: ContainerReference) -> DockerError {
        DockerError(
            .protocolError,
            "lost the connection to the Docker engine at \(socketPath) while asking about container "
                + "\(container): \(errno)",
            cause: errno
        )
    }

    private func timedOut(about container: ContainerReference, received: Int) -> DockerError {
        let progress = received == 0 ? "" : " (it sent \(received) bytes of it)"
        return DockerError(
            .timeout,
            "the Docker engine at \(socketPath) did not answer about container \(container) within "
                + "\(timeout)\(progress)"
        )
    }

    // MARK: The JSON

    /// The part of `GET /containers/{id}/json`'s answer that we read (Engine API `ContainerInspectResponse`).
    private struct InspectBody: Decodable {
        struct State: Decodable {
            var running: Bool
            var pid: Int

            enum CodingKeys: String, CodingKey {
                case running = "Running"
                case pid = "Pid"
            }
        }

        var id: String
        var name: String
        var state: State

        enum CodingKeys: String, CodingKey {
            case id = "Id"
            case name = "Name"
            case state = "State"
        }
    }

    private func decodeInspect(_ body: [UInt8], about container: ContainerReference) throws(DockerError)
        -> ContainerInfo
    {
        let malformed = "malformed answer from the Docker engine at \(socketPath) about container \(container)"
        let decoded: InspectBody
        do {
            decoded = try JSONDecoder().decode(InspectBody.self, from: Data(body))
        } catch let error as DecodingError {
            throw DockerError(.protocolError, "\(malformed): \(Self.explain(error))", status: 200, cause: error)
        } catch {
            throw DockerError(.protocolError, "\(malformed): \(error)", status: 200)
        }
        guard let pid = Int32(exactly: decoded.state.pid), pid >= 0 else {
            throw DockerError(
                .protocolError, "\(malformed): State.Pid \(decoded.state.pid) is not a process id", status: 200
            )
        }
        guard !decoded.id.isEmpty else {
            throw DockerError(.protocolError, "\(malformed): Id is empty", status: 200)
        }
        let name = decoded.name.hasPrefix("/") ? String(decoded.name.dropFirst()) : decoded.name
        return ContainerInfo(id: decoded.id, name: name, pid: pid, running: decoded.state.running)
    }

    /// A `DecodingError` as a phrase naming the JSON path concerned, e.g. `the JSON has no State.Pid`.
    private static func explain(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "the JSON has no \(path(context.codingPath + [key]))"
        case .valueNotFound(_, let context):
            return "\(path(context.codingPath)) is null"
        case .typeMismatch(let type, let context):
            let at = context.codingPath.isEmpty ? "the body" : path(context.codingPath)
            let expected =
                switch type {
                case is Int.Type: "an integer"
                case is Bool.Type: "a boolean"
                case is String.Type: "a string"
                case is [String: Any].Type: "an object"
                default: "of the expected type"
                }
            return "\(at) is not \(expected)"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty
                ? "the body is not valid JSON" : "\(path(context.codingPath)) is malformed"
        @unknown default:
            return "\(error)"
        }
    }

    /// The `message` of an engine error body (`{"message":"No such container: web"}`), or the body itself when it
    /// is short plain text, as older engines sent.
    static func engineMessage(in body: [UInt8]) -> String? {
        if let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let message = object["message"] as? String
        {
            let trimmed = message.trimmingCharacters(in: .whitespacesAndNewlines)
            return trimmed.isEmpty ? nil : String(trimmed.prefix(500))
        }
        let text = String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty, text.count <= 500, !text.hasPrefix("{"),
            text.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F })
        else { return nil }
        return text
    }

    /// `No such container: web` -> `no such container: web`, matching the style of our other messages.
    private static func lowercasingFirstLetter(_ text: String) -> String {
        guard let first = text.first else { return text }
        return first.lowercased() + text.dropFirst()
    }
}
