// DockerEngineClient against FakeDockerEngine: a real Unix socket in a temporary directory, answered the way the
// Engine API answers, or misbehaving on purpose. No Docker, no root.

import Foundation
import Testing
import VXDockerTesting
import VXUnixSocket

@testable import VXDocker

private let web = FakeDockerEngine.Container(name: "web", pid: 4242)
private let db = FakeDockerEngine.Container(name: "db", pid: 5151)
private let stopped = FakeDockerEngine.Container(name: "stopped", pid: 0)

private func engine(
    _ containers: [FakeDockerEngine.Container] = [web, db, stopped],
    framing: FakeDockerEngine.Framing = .contentLength,
    reply: FakeDockerEngine.Reply = .engine
) throws -> FakeDockerEngine {
    try FakeDockerEngine(containers: containers, framing: framing, reply: reply)
}

private func client(_ fake: FakeDockerEngine, timeout: Duration = .seconds(5)) -> DockerEngineClient {
    DockerEngineClient(socketPath: fake.socketPath, timeout: timeout)
}

@Suite("DockerEngineClient")
struct DockerEngineClientTests {
    // MARK: Finding containers

    @Test(
        "finds a container by name, /name, full id and id prefix",
        arguments: ["web", "/web", web.id, String(web.id.prefix(12)), String(web.id.prefix(1))]
    )
    func findsAContainer(_ reference: String) throws {
        // One-digit prefixes are unique only when the other ids start differently.
        try #require(db.id.first != web.id.first && stopped.id.first != web.id.first)
        let fake = try engine()
        let info = try client(fake).inspectContainer(reference)
        #expect(info == ContainerInfo(id: web.id, name: "web", pid: 4242, running: true))
        #expect(info.networkNamespacePath == "/proc/4242/ns/net")
    }

    @Test func sendsAMinimalHTTP11RequestOnAnUnversionedPath() throws {
        let fake = try engine()
        _ = try client(fake).inspectContainer("/web")
        let request = try #require(fake.requests.first)
        #expect(request.requestLine == "GET /containers/web/json HTTP/1.1")
        #expect(request.header("Host") == "docker")
        #expect(request.header("Connection") == "close")
        #expect(request.header("Accept") == "application/json")
        #expect(fake.requests.count == 1)
    }

    @Test(
        "reads every body framing the engine uses",
        arguments: [
            FakeDockerEngine.Framing.contentLength, .chunked(chunkSize: 1), .chunked(chunkSize: 7),
            .chunked(chunkSize: 4096), .close,
        ]
    )
    func readsEveryBodyFraming(_ framing: FakeDockerEngine.Framing) throws {
        let fake = try engine(framing: framing)
        let info = try client(fake).inspectContainer("db")
        #expect(info == ContainerInfo(id: db.id, name: "db", pid: 5151, running: true))
    }

    @Test func keepsWorkingOverManySequentialRequests() throws {
        let fake = try engine(framing: .chunked(chunkSize: 100))
        let docker = client(fake)
        for _ in 0..<20 {
            #expect(try docker.inspectContainer("web").pid == 4242)
            #expect(try docker.inspectContainer("db").pid == 5151)
        }
        #expect(fake.connectionCount == 40)
    }

    // MARK: Engine answers that are errors

    @Test func reportsTheEnginesMessageForAnUnknownContainer() throws {
        let fake = try engine(framing: .chunked(chunkSize: 8))
        let error = #expect(throws: DockerError.self) { try client(fake).inspectContainer("nope") }
        #expect(error?.code == .notFound)
        #expect(error?.status == 404)
        #expect(error?.description == "no such container: nope")
    }

    @Test func namesTheContainerWhenA404HasNoMessage() throws {
        let fake = try engine(reply: .status(404, reason: "Not Found", body: ""))
        let error = #expect(throws: DockerError.self) { try client(fake).inspectContainer("web") }
        #expect(error?.code == .notFound)
        #expect(error?.description == "no such container: web")
    }

    @Test func refusesAContainerThatIsNotRunning() throws {
        let fake = try engine()
        let error = #expect(throws: DockerError.self) { try client(fake).inspectContainer("stopped") }
        #expect(error?.code == .notRunning)
        #expect(error?.description == "container stopped is not running")
    }

    @Test func treatsARunningFlagWithPidZeroAsNotRunning() throws {
        let fake = try engine([FakeDockerEngine.Container(name: "restarting", pid: 0, running: true)])
        let error = #expect(throws: DockerError.self) { try client(fake).inspectContainer("restarting") }
        #expect(error?.code == .notRunning)
    }

    @Test func returnsAStoppedContainerWhenRunningIsNotRequired() throws {
        let fake = try engine()
        let info = try client(fake).inspectContainer("stopped", requireRunning: false)
        #expect(info == ContainerInfo(id: stopped.id, name: "stopped", pid: 0, running: false))
    }

    @Test func reportsAnAmbiguousIdPrefixWithTheEnginesMessage() throws {
        let fake = try engine([
            FakeDockerEngine.Container(id: "abc1" + String(repeating: "0", count: 60), name: "one", pid: 10),
            FakeDockerEngine.Container(id: "abc2" + String(repeating: "0", count: 60), name: "two", pid: 11),
        ])
        let docker = client(fake)
        let error = #expect(throws: DockerError.self) { try docker.inspectContainer("abc") }
        #expect(error?.code == .engineError)
        #expect(error?.status == 400)
        #expect(error?.description.hasSuffix("multiple IDs found with provided prefix: abc") == true)
        #expect(try docker.inspectContainer("abc2").name == "two")
    }

    @Test func reportsAServerErrorWithTheEnginesMessage() throws {
        let fake = try engine(
            reply: .status(500, reason: "Internal Server Error", body: #"{"message":"driver failed"}"#)
        )
        let error = #expect(throws: DockerError.self) { try client(fake).inspectContainer("web") }
        #expect(error?.code == .engineError)
        #expect(error?.status == 500)
        #expect(
            error?.description
                == "the Docker engine at \(fake.socketPath) answered 500 Internal Server Error for container web: "
                + "driver failed"
        )
    }

    // MARK: Answers that are not what the engine sends

    @Test func refusesAnAnswerThatIsNotHTTP() throws {
        let fake = try engine(reply: .raw(Array("SSH-2.0-OpenSSH_9.2p1 Debian\r\n".utf8)))
        let error = #expect(throws: DockerError.self) { try client(fake).inspectContainer("web") }
        #expect(error?.code == .protocolError)
        #expect(
            error?.description
                == "malformed answer from the Docker engine at \(fake.socketPath) about container web: the answer "
                + #"does not start with an HTTP/1.x status line: "SSH-2.0-OpenSSH_9.2p1 Debian\x0D\x0A""#
        )
    }

    @Test func refusesGarbageAtOnceEvenIfThePeerNeverCloses() throws {
        let fake = try engine(reply: .stall(after: Array("garbage".utf8)))
        let start = ContinuousClock.now
        let error = #expect(throws: DockerError.self) {
            try client(fake, timeout: .seconds(30)).inspectContainer("web")
        }
        #expect(error?.code == .protocolError)
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test func refusesATruncatedBody() throws {
        let fake = try engine(reply: .raw(Array("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"Id\":".utf8)))
        let error = #expect(throws: DockerError.self) { try client(fake).inspectContainer("web") }
        #expect(error?.code == .protocolError)
        #expect(error?.description.hasSuffix("the response body ended after 6 of the 100 bytes its Content-Length "
            + "announced") == true, "\(String(describing: error))")
    }

    @Test func refusesATruncatedChunkedBody() throws {
        let fake = try engine(
            reply: .raw(Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n{\"Id\":".utf8))
        )
        let error = #expect(throws: DockerError.self) { try client(fake).inspectContainer("web") }
        #expect(error?.code == .protocolError)
        #expect(error?.description.contains("before its last chunk") == true, "\(String(describing: error))")
    }

    @Test func reportsAConnectionClosedWithoutAnAnswer() throws {
        let fake = try engine(reply: .raw([]))
        let error = #expect(throws: DockerError.self) { try client(fake).inspectContainer("web") }
        #expect(error?.code == .protocolError)
        #expect(error?.description.hasSuffix("the engine closed the connection without answering") == true)
    }

    @Test(
        "names what is wrong with the JSON",
        arguments: [
            ("not json", "the body is not valid JSON"),
            (#"{"Id":"abc","Name":"/web","State":{"Running":true}}"#, "the JSON has no State.Pid"),
            (#"{"Id":"abc","Name":"/web"}"#, "the JSON has no State"),
            (#"{"Id":"abc","Name":"/web","State":{"Running":true,"Pid":"12"}}"#, "State.Pid is not an integer"),
            (#"{"Id":"abc","Name":"/web","State":{"Running":true,"Pid":null}}"#, "State.Pid is null"),
            (#"{"Id":"abc","Name":"/web","State":{"Running":true,"Pid":-5}}"#, "State.Pid -5 is not a process id"),
            (
                #"{"Id":"abc","Name":"/web","State":{"Running":true,"Pid":4294967296}}"#,
                "State.Pid 4294967296 is not a process id"
            ),
            (#"{"Id":"","Name":"/web","State":{"Running":true,"Pid":7}}"#, "Id is empty"),
            (#"["Id"]"#, "the body is not an object"),
        ]
    )
    func namesWhatIsWrongWithTheJSON(_ body: String, _ problem: String) throws {
        let fake = try engine(reply: .status(200, reason: "OK", body: body))
        let error = #expect(throws: DockerError.self) { try client(fake).inspectContainer("web") }
        #expect(error?.code == .protocolError)
        #expect(error?.description.hasSuffix("about container web: \(problem)") == true, "\(String(describing: error))")
    }

    @Test func boundsTheBody() throws {
        let fake = try engine(framing: .chunked(chunkSize: 1000))
        var docker = client(fake)
        docker.limits.maxBodyBytes = 512  // the fake's inspect JSON is about 1.4 KiB
        let error = #expect(throws: DockerError.self) { try docker.inspectContainer("web") }
        #expect(error?.code == .protocolError)
        #expect(error?.description.contains("512-byte limit") == true, "\(String(describing: error))")
    }

    // MARK: Time

    @Test(
        "times out on an engine that stops answering, within the bound",
        arguments: [[], Array("HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{".utf8)]
    )
    func timesOut(after prefix: [UInt8]) throws {
        let fake = try engine(reply: .stall(after: prefix))
        let timeout = Duration.milliseconds(300)
        let start = ContinuousClock.now
        let error = #expect(throws: DockerError.self) { try client(fake, timeout: timeout).inspectContainer("web") }
        let elapsed = ContinuousClock.now - start
        #expect(error?.code == .timeout)
        #expect(error?.description.hasPrefix("the Docker engine at \(fake.socketPath) did not answer about "
            + "container web within 0.3 seconds") == true, "\(String(describing: error))")
        #expect(elapsed >= timeout)
        #expect(elapsed < timeout + .seconds(2), "took \(elapsed)")
        if !prefix.isEmpty { #expect(error?.description.hasSuffix("(it sent \(prefix.count) bytes of it)") == true) }
    }

    // MARK: No engine

    @Test func explainsAMissingSocket() throws {
        let fake = try engine()
        let path = fake.directory + "/missing.sock"
        let error = #expect(throws: DockerError.self) {
            try DockerEngineClient(socketPath: path).inspectContainer("web")
        }
        #expect(error?.code == .unavailable)
        #expect(
            error?.description
                == "cannot reach the Docker engine at \(path): No such file or directory (is Docker running?)"
        )
    }

    @Test func explainsASocketNobodyListensOn() throws {
        let fake = try engine()
        let path = fake.directory + "/stale.sock"
        let fd = try Posix.unixStreamSocket().get()
        try Posix.bind(fd, try #require(UnixSocketAddress(path: path))).get()
        try fd.close()  // the socket file stays, as after a crashed dockerd
        let error = #expect(throws: DockerError.self) {
            try DockerEngineClient(socketPath: path).inspectContainer("web")
        }
        #expect(error?.code == .unavailable)
        #expect(
            error?.description == "cannot reach the Docker engine at \(path): Connection refused (is Docker running?)"
        )
    }

    @Test func explainsASocketPathTooLongForSunPath() {
        let path = "/tmp/" + String(repeating: "d", count: 200) + "/docker.sock"
        let error = #expect(throws: DockerError.self) {
            try DockerEngineClient(socketPath: path).inspectContainer("web")
        }
        #expect(error?.code == .unavailable)
        #expect(error?.description.contains("a socket path must be 1 to 107 bytes") == true)
    }

    @Test func defaultsToTheStandardSocketAndFiveSeconds() {
        let docker = DockerEngineClient()
        #expect(docker.socketPath == "/var/run/docker.sock")
        #expect(docker.timeout == .seconds(5))
    }

    // MARK: References

    @Test(
        "rejects a reference Docker never gives out, without connecting",
        arguments: [
            "", "/", "-web", ".hidden", "_x", "we b", "a/b", "../../info", "web?all=1", "web#x", "web%2F",
            "web\r\nHost: evil", "wéb", "web\u{0}", "//web", String(repeating: "a", count: 1025),
        ]
    )
    func rejectsInvalidReferences(_ reference: String) throws {
        let fake = try engine()
        let error = #expect(throws: DockerError.self) { try client(fake).inspectContainer(reference) }
        #expect(error?.code == .invalidReference)
        #expect(error?.description.hasPrefix("invalid container reference") == true)
        #expect(!(error?.description.contains("\n") ?? true), "a newline in a reference must not reach the message")
        #expect(fake.connectionCount == 0)
    }

    @Test(
        "accepts every name and id shape Docker gives out",
        arguments: ["web", "/web", "a", "0", "my_app.1-x", "Web-2", web.id, String(repeating: "a", count: 1024)]
    )
    func acceptsValidReferences(_ reference: String) throws {
        let checked = try ContainerReference(reference)
        #expect(checked.value == (reference.hasPrefix("/") ? String(reference.dropFirst()) : reference))
        #expect(checked.pathSegment == checked.value)  // nothing valid needs escaping
    }

    @Test func percentEncodesEverythingButUnreservedBytes() {
        #expect(ContainerReference.percentEncoded("a b/ü~._-Z9?%") == "a%20b%2F%C3%BC~._-Z9%3F%25")
    }
}
