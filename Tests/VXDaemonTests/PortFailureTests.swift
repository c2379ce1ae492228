// A port whose descriptor fails under the switch (its TAP deleted underneath): the engine stops reading it, and the
// daemon must say so in `show` and in its log instead of letting the port go silently dead. MemoryWire.fail stands in
// for the kernel's EBADFD; the root system test (SwitchdPortFailureTests) deletes a real TAP.

import Foundation
import Logging
import Synchronization
import Testing
import VXIO
import VXPacket
@testable import VXDaemon

/// Keeps every message logged at the sink's `minimumLevel` (error unless asked otherwise) or above; also used by
/// QdiscRefusalLogTests.
struct ErrorLogCapture: LogHandler {
    let sink: CapturedErrors
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        guard event.level >= sink.minimumLevel else { return }
        sink.messages.withLock { $0.append("\(event.message)") }
    }
}

/// Shared between a test and its logger.
final class CapturedErrors: Sendable {
    let messages = Mutex<[String]>([])
    let minimumLevel: Logger.Level

    init(minimumLevel: Logger.Level = .error) { self.minimumLevel = minimumLevel }

    var logger: Logger { Logger(label: "test") { _ in ErrorLogCapture(sink: self) } }
}

@Suite("a port whose descriptor failed is reported, and the rest of the switch keeps working")
struct PortFailureTests {
    /// The ports `show` lists, by name.
    func shownPorts(_ sw: InProcessSwitch) async throws -> [String: [String: Any]] {
        let ports = try #require(try await sw.result("show")["ports"] as? [[String: Any]])
        return Dictionary(uniqueKeysWithValues: ports.map { ($0["name"] as? String ?? "", $0) })
    }

    /// Polls `show` (bounded, 2 s) until port `name` carries a failure.
    func failure(ofPort name: String, in sw: InProcessSwitch) async throws -> String? {
        for _ in 0..<400 {
            if let failure = try await shownPorts(sw)[name]?["failure"] as? String { return failure }
            try await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }

    @Test("show reports the failed port with its errno, the log says so once, other ports switch, del-port removes it")
    func failedPortIsShownLoggedAndRemovable() async throws {
        let errors = CapturedErrors()
        let sw = try InProcessSwitch(workers: 2, logger: errors.logger)
        for name in ["tap1", "tap2", "tap3"] { _ = try await sw.result("add-port", #"{"name":"\#(name)","vni":42}"#) }
        #expect(try await shownPorts(sw)["tap1"]?["failure"] == nil)

        // The TAP is deleted: every worker's queue of it fails.
        for worker in 0..<2 {
            #expect(sw.engine(worker).wire.fail(try sw.handle(ofPort: "tap1", worker: worker), errno: EBADFD))
        }
        #expect(try await failure(ofPort: "tap1", in: sw) == "EBADFD (File descriptor in bad state) on read")
        #expect(try await shownPorts(sw)["tap2"]?["failure"] == nil)

        // Logged once (the maintenance thread logs once a second), with the name, the fd and the errno.
        var logged: [String] = []
        for _ in 0..<300 where logged.isEmpty {
            logged = errors.messages.withLock { $0 }
            try await Task.sleep(for: .milliseconds(10))
        }
        try await Task.sleep(for: .milliseconds(1200))  // a second tick must not log it again
        logged = errors.messages.withLock { $0 }
        #expect(logged.count == 1, "\(logged)")
        let queues = try #require(sw.host.createdQueues.withLock { $0["tap1"] })
        let message = try #require(logged.first)
        #expect(message.contains("port tap1") && message.contains("EBADFD (File descriptor in bad state) on read"))
        #expect(queues.contains { message.contains("fd \($0) ") }, "\(message)")

        // tap2's broadcast still reaches tap3; the copy for tap1 is dropped, not delivered.
        let arp = arpRequest(from: containerA, IPv4Address(10, 0, 0, 1), to: IPv4Address(10, 0, 0, 2))
        #expect(sw.engine(0).inject(arp, into: try sw.handle(ofPort: "tap2", worker: 0)))
        let delivered = try await sw.eventually { sw.engine(0).drainTransmitted(from: try! sw.handle(ofPort: "tap3", worker: 0)) }
        #expect(delivered.count == 1)
        #expect(sw.engine(0).drainTransmitted(from: try sw.handle(ofPort: "tap1", worker: 0)).isEmpty)

        // del-port still removes it; a new port of the same name starts healthy.
        _ = try await sw.result("del-port", #"{"name":"tap1"}"#)
        #expect(sw.host.destroyed.withLock { $0.isSuperset(of: queues) })
        #expect(try await shownPorts(sw)["tap1"] == nil)
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        #expect(try await shownPorts(sw)["tap1"] != nil)
        #expect(try await shownPorts(sw)["tap1"]?["failure"] == nil)
    }

    @Test("a port that fails on one worker's queue only is reported too")
    func failureOnOneQueueIsReported() async throws {
        let sw = try InProcessSwitch(workers: 2)
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        #expect(sw.engine(1).wire.fail(try sw.handle(ofPort: "tap1", worker: 1), errno: EIO))
        #expect(try await failure(ofPort: "tap1", in: sw) == "EIO (Input/output error) on read")
    }
}
