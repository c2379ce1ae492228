import Foundation
import Glibc
import Testing
import VXControl
import VXControlSocket

/// A fresh directory under /tmp (short enough for `sun_path`), removed by `remove()`.
struct TempDirectory {
    let path: String

    init() {
        path = "/tmp/vxctl-test-\(UUID().uuidString.prefix(8))"
    }

    /// A socket path in a subdirectory that does not exist yet, so the server must create it.
    var socketPath: String { path + "/run/vxswitchd.sock" }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// A raw client socket, for what ControlConnection will not do: half a line, or hanging up early.
struct RawSocket {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else { throw SocketError(value: errno) }
    }

    func send(_ text: String) {
        _ = Array(text.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads until a newline or end of stream, on a thread of its own: blocking a cooperative-pool thread here
    /// could starve the server's handler tasks (the pool has one thread per core, two on CI).
    func readLine() async -> String {
        let fd = self.fd
        return await onThread {
            var bytes: [UInt8] = []
            var byte: UInt8 = 0
            while read(fd, &byte, 1) == 1, byte != UInt8(ascii: "\n") { bytes.append(byte) }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    func close() { _ = Glibc.close(fd) }
}

struct SocketError: Error { let value: Int32 }

/// Runs blocking work on a new thread and resumes the caller with its result.
func onThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: work()) }.start()
    }
}

private func mode(of path: String) -> mode_t? {
    var info = stat()
    guard lstat(path, &info) == 0 else { return nil }
    return info.st_mode
}

/// Server and client over a real Unix socket, with `FakeSwitch` behind it.
@Suite struct SocketTests {
    private func withServer(
        service: FakeSwitch = FakeSwitch(),
        options: ControlServer.Options = ControlServer.Options(),
        _ body: (ControlServer, String) async throws -> Void
    ) async throws {
        let directory = TempDirectory()
        defer { directory.remove() }
        let server = try ControlServer.start(path: directory.socketPath, service: service, options: options)
        do {
            try await body(server, directory.socketPath)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    @Test func addPortThenShowListsIt() async throws {
        try await withServer { _, path in
            let client = ControlClient(path: path)
            let port = try await client.call(ControlMethods.AddPort.self,
                                             try AddPortParams(name: name("tap0"), vni: vni(100), mtu: 9000))
            #expect(port == PortInfo(name: name("tap0"), vni: vni(100), mtu: 9000, ifindex: 11))
            _ = try await client.call(ControlMethods.AddPeer.self,
                                      AddPeerParams(ip: vtep("192.0.2.2"), vni: vni(100), encapsulation: .gre(key: .none)))
            let show = try await client.call(ControlMethods.Show.self, EmptyParams())
            #expect(show.ports.map(\.name) == [name("tap0")])
            #expect(show.peers == [PeerInfo(ip: vtep("192.0.2.2"), encapsulation: .gre(key: .none), vnis: [vni(100)])])
            #expect(show.vnis == [VNIInfo(vni: vni(100), ports: [name("tap0")], peers: [vtep("192.0.2.2")])])

            _ = try await client.call(ControlMethods.DeletePort.self, DeletePortParams(name: name("tap0")))
            #expect(try await client.call(ControlMethods.Show.self, EmptyParams()).ports.isEmpty)
        }
    }

    @Test func deletingAnUnknownPortIsNotFound() async throws {
        try await withServer { _, path in
            do throws(ControlError) {
                _ = try await ControlClient(path: path).call(ControlMethods.DeletePort.self,
                                                             DeletePortParams(name: name("tap9")))
                Issue.record("del-port of an unknown port succeeded")
            } catch {
                #expect(error.code == .notFound)
                #expect(error.description == #"no port named "tap9""#)
            }
        }
    }

    @Test func daemonErrorsKeepTheirCodeAcrossTheWire() async throws {
        try await withServer { _, path in
            let client = ControlClient(path: path)
            let port = try AddPortParams(name: name("tap0"), vni: vni(1))
            _ = try await client.call(ControlMethods.AddPort.self, port)
            await #expect(throws: ControlError.self) { try await client.call(ControlMethods.AddPort.self, port) }
            do throws(ControlError) {
                _ = try await client.call(ControlMethods.AddPort.self, port)
            } catch {
                #expect(error.code == .alreadyExists)
                #expect(error.message == #"port "tap0" already exists"#)
            }
        }
    }

    @Test func aMalformedLineGetsAParseErrorAndTheConnectionStaysUsable() async throws {
        try await withServer { _, path in
            let connection = try await ControlConnection.connect(path: path)
            defer { connection.close() }
            let error = try await connection.roundTrip(Array(#"{"jsonrpc":"2.0","id":1,"method":"#.utf8))
            let text = String(decoding: error, as: UTF8.self)
            #expect(text.hasPrefix(#"{"error":{"code":-32700,"message":"the line is not valid JSON"#))
            #expect(text.hasSuffix(#""id":null,"jsonrpc":"2.0"}"#))
            let fdb = try await connection.call(ControlMethods.FDB.self, FDBParams(vni: vni(200)))
            #expect(fdb.entries.map(\.destination) == [.peer(vtep("192.0.2.2"))])
        }
    }

    @Test func anUnknownMethodIsMethodNotFound() async throws {
        try await withServer { _, path in
            let connection = try await ControlConnection.connect(path: path)
            do throws(ControlError) {
                _ = try await connection.callRaw(method: "network-inspect", params: .object([:]))
                Issue.record("an unknown method succeeded")
            } catch {
                #expect(error.code == .methodNotFound)
                #expect(error.code.rawValue == -32601)
            }
        }
    }

    @Test func theSocketIsCreatedWithMode0600AndRemovedOnStop() async throws {
        let directory = TempDirectory()
        defer { directory.remove() }
        let server = try ControlServer.start(path: directory.socketPath, service: FakeSwitch())
        let created = try #require(mode(of: directory.socketPath))
        #expect(created & S_IFMT == S_IFSOCK)
        #expect(created & 0o777 == 0o600)
        await server.stop()
        #expect(mode(of: directory.socketPath) == nil)
        await server.stop()  // idempotent
    }

    @Test func aStaleSocketFileIsReplaced() async throws {
        let directory = TempDirectory()
        defer { directory.remove() }
        // A daemon that died without cleaning up: the socket file exists, nothing listens.
        let first = try ControlServer.start(path: directory.socketPath, service: FakeSwitch())
        await first.stop()
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(directory.socketPath.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        #expect(bound == 0)
        _ = close(stale)
        #expect(mode(of: directory.socketPath).map { $0 & S_IFMT } == S_IFSOCK)

        let server = try ControlServer.start(path: directory.socketPath, service: FakeSwitch())
        let show = try await ControlClient(path: directory.socketPath).call(ControlMethods.Show.self, EmptyParams())
        #expect(show.ports.isEmpty)
        await server.stop()
    }

    @Test func aSecondServerOnALiveSocketIsRefused() async throws {
        try await withServer { _, path in
            do throws(ControlError) {
                let second = try ControlServer.start(path: path, service: FakeSwitch())
                await second.stop()
                Issue.record("a second server started on a live socket")
            } catch {
                #expect(error.code == .resourceBusy)
                #expect(error.message == "another vxswitchd is already listening on \(path)")
            }
            // The first server is untouched.
            _ = try await ControlClient(path: path).call(ControlMethods.Show.self, EmptyParams())
        }
    }

    @Test func aPathThatIsNotASocketIsLeftAlone() throws {
        let directory = TempDirectory()
        defer { directory.remove() }
        try FileManager.default.createDirectory(atPath: directory.path, withIntermediateDirectories: true)
        let path = directory.path + "/regular"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: ControlError.self) { try ControlServer.start(path: path, service: FakeSwitch()) }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "keep me")
    }

    @Test func theClientNamesThePathAndTheErrnoWhenNoServerListens() async throws {
        let directory = TempDirectory()
        do {
            _ = try await ControlClient(path: directory.socketPath).call(ControlMethods.Show.self, EmptyParams())
            Issue.record("reached a server that does not exist")
        } catch {
            #expect(error.code == .unavailable)
            #expect(error.description == "cannot reach vxswitchd at \(directory.socketPath): No such file or directory")
        }
    }

    @Test func theClientReportsConnectionRefusedForADeadSocket() throws {
        let directory = TempDirectory()
        defer { directory.remove() }
        try FileManager.default.createDirectory(atPath: directory.path, withIntermediateDirectories: true)
        let path = directory.path + "/dead.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        _ = close(fd)
        do {
            _ = try ControlClient(path: path).callBlocking(ControlMethods.Show.self, EmptyParams())
            Issue.record("reached a dead socket")
        } catch {
            #expect(error.description == "cannot reach vxswitchd at \(path): Connection refused")
        }
    }

    @Test func clientsThatHangUpMidRequestDoNotHurtTheServer() async throws {
        try await withServer { server, path in
            let half = try RawSocket(path: path)
            half.send(#"{"jsonrpc":"2.0","id":1,"met"#)
            half.close()
            let unread = try RawSocket(path: path)
            unread.send(#"{"jsonrpc":"2.0","id":1,"method":"show"}"# + "\n")
            unread.close()  // the server's response meets a closed socket: EPIPE, not SIGPIPE
            for _ in 0..<20 {
                _ = try await ControlClient(path: path).call(ControlMethods.Show.self, EmptyParams())
            }
            // Each connection thread ends when its client leaves.
            for _ in 0..<100 where server.connectionCount > 0 { try await Task.sleep(for: .milliseconds(10)) }
            #expect(server.connectionCount == 0)
        }
    }

    @Test func anOverLongLineIsRejectedAndTheConnectionGoesOn() async throws {
        var options = ControlServer.Options()
        options.maxLineLength = 256
        try await withServer(options: options) { _, path in
            let raw = try RawSocket(path: path)
            defer { raw.close() }
            raw.send(String(repeating: "x", count: 10_000) + "\n")
            #expect(await raw.readLine() == #"{"error":{"code":-32600,"message":"request line is longer than 256 bytes"},"id":null,"jsonrpc":"2.0"}"#)
            raw.send(#"{"jsonrpc":"2.0","id":7,"method":"stats"}"# + "\n")
            #expect(await raw.readLine() == #"{"id":7,"jsonrpc":"2.0","result":{"drops":{"unknown-peer":1},"peers":[],"ports":[]}}"#)
        }
    }

    @Test func severalRequestsInOneWriteAreAnsweredInOrder() async throws {
        try await withServer { _, path in
            let raw = try RawSocket(path: path)
            defer { raw.close() }
            raw.send(
                #"{"jsonrpc":"2.0","id":1,"method":"fdb","params":{"vni":100}}"# + "\n\n"
                    + #"{"jsonrpc":"2.0","method":"show"}"# + "\n" + #"{"jsonrpc":"2.0","id":2,"method":"nope"}"# + "\n"
            )
            #expect(await raw.readLine().hasPrefix(#"{"id":1,"jsonrpc":"2.0","result":{"entries":[{"age":3,"#))
            #expect(await raw.readLine().hasPrefix(#"{"error":{"code":-32601,"#))
        }
    }

    @Test func connectionsAreServedConcurrently() async throws {
        try await withServer { _, path in
            let idle = try await ControlConnection.connect(path: path)  // open, silent
            let busy = try await ControlConnection.connect(path: path)
            _ = try await busy.call(ControlMethods.Show.self, EmptyParams())
            _ = try await idle.call(ControlMethods.Show.self, EmptyParams())
            await withTaskGroup(of: Void.self) { group in
                for index in 0..<8 {
                    group.addTask {
                        _ = try? await ControlClient(path: path).call(
                            ControlMethods.AddPort.self, try AddPortParams(name: name("p\(index)"), vni: vni(index)))
                    }
                }
            }
            #expect(try await busy.call(ControlMethods.Show.self, EmptyParams()).ports.count == 8)
        }
    }

    @Test func connectionsBeyondTheLimitAreToldSo() async throws {
        var options = ControlServer.Options()
        options.maxConnections = 1
        try await withServer(options: options) { _, path in
            let first = try await ControlConnection.connect(path: path)
            _ = try await first.call(ControlMethods.Show.self, EmptyParams())
            let second = try RawSocket(path: path)
            defer { second.close() }
            #expect(await second.readLine() == #"{"error":{"code":-32004,"message":"too many control connections (at most 1)"},"id":null,"jsonrpc":"2.0"}"#)
        }
    }

    @Test func aSlowDaemonTimesOut() async throws {
        try await withServer(service: FakeSwitch(statsDelay: .milliseconds(600))) { _, path in
            do throws(ControlError) {
                _ = try await ControlClient(path: path, timeout: .milliseconds(100))
                    .call(ControlMethods.Stats.self, EmptyParams())
                Issue.record("no timeout")
            } catch {
                #expect(error.code == .timeout)
            }
        }
    }

    @Test func stopEndsIdleConnections() async throws {
        let directory = TempDirectory()
        defer { directory.remove() }
        let server = try ControlServer.start(path: directory.socketPath, service: FakeSwitch())
        let raw = try RawSocket(path: directory.socketPath)
        defer { raw.close() }
        raw.send(#"{"jsonrpc":"2.0","id":1,"method":"show"}"# + "\n")
        #expect(await raw.readLine().hasPrefix(#"{"id":1,"#))
        await server.stop()  // must not hang on the idle connection
        #expect(await raw.readLine() == "")  // end of stream
        #expect(server.connectionCount == 0)
    }
}

@Suite("ControlConnection after a failed exchange")
struct ControlConnectionFailureTests {
    /// A listening socket that never answers (the kernel completes connections from its backlog).
    func silentServer(at path: String) throws -> Int32 {
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, 4) == 0 else { throw SocketError(value: errno) }
        return fd
    }

    @Test("a timed-out request closes the connection, so its late answer can never pass for the next one's")
    func aTimeoutClosesTheConnection() async throws {
        let directory = TempDirectory()
        defer { directory.remove() }
        let listener = try silentServer(at: directory.socketPath)
        defer { close(listener) }
        let connection = try await ControlConnection.connect(path: directory.socketPath, timeout: .milliseconds(100))
        defer { connection.close() }
        do throws(ControlError) {
            _ = try await connection.roundTrip(Array(#"{"jsonrpc":"2.0","id":1,"method":"show"}"#.utf8))
            Issue.record("a silent server answered")
        } catch {
            #expect(error.code == .timeout)
        }
        do throws(ControlError) {
            _ = try await connection.roundTrip(Array(#"{"jsonrpc":"2.0","id":2,"method":"show"}"#.utf8))
            Issue.record("the connection was still used after a timeout")
        } catch {
            #expect(error.code == .protocolError && error.message.contains("closed"), "\(error)")
        }
    }
}
