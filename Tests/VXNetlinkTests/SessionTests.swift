// NetlinkSession over the mock socket: sequence numbers, matching replies to requests, ACKs, errors, multi-part
// dumps across datagrams, interrupted dumps, and replies that must be rejected.

import SystemPackage
import Testing
import VXPacket

@testable import VXNetlink

@Suite("Session request/response sequencing")
struct SessionTests {
    static let tap = LinkInfo(
        index: 5,
        name: "vxt1",
        mac: MACAddress(2, 0, 0, 0xAA, 0xBB, 0xCC),
        mtu: 1500,
        flags: [.broadcast, .multicast]
    )

    @Test func looksUpALinkAndNumbersRequestsFromOne() throws {
        let socket = MockNetlinkSocket()
        socket.responder = { request in [KernelReply.link(Self.tap, to: request)] }
        let session = NetlinkSession(socket: socket)

        #expect(try session.link(named: "vxt1") == Self.tap)
        #expect(try session.linkIndex(named: "vxt1") == 5)
        #expect(socket.requests.map(\.sequence) == [1, 2])
        #expect(socket.sent[0] == RouteRequest.getLink(name: "vxt1").encoded(sequence: 1, portID: socket.portID))
        #expect(socket.queue.isEmpty, "the ACK after the link was consumed")
    }

    @Test func skipsRepliesForOtherSequenceNumbersOrPorts() throws {
        let socket = MockNetlinkSocket()
        socket.responder = { request in
            var stale = request
            stale.sequence = request.sequence &- 1  // the late answer to an earlier request
            var foreign = request
            foreign.portID = 99  // someone else's
            return [KernelReply.error(1, to: stale), KernelReply.error(1, to: foreign), KernelReply.ack(to: request)]
        }
        let session = NetlinkSession(socket: socket)
        try session.setLinkMTU(index: 5, 1400)
        #expect(socket.queue.isEmpty)
    }

    @Test func turnsNLMSGERRORIntoErrnoAndTheKernelsMessage() {
        let socket = MockNetlinkSocket()
        socket.responder = { request in [KernelReply.error(17, to: request, extack: "Name already in use")] }
        let session = NetlinkSession(socket: socket)
        do {
            try session.renameLink(index: 5, to: "eth0")
            Issue.record("rename succeeded")
        } catch {
            #expect(error.code == .kernel)
            #expect(error.errno == .fileExists)
            #expect(error.detail == "Name already in use")
            #expect(error.operation == "RTM_NEWLINK rename ifindex 5 to eth0")
            #expect(error.description.contains("File exists"))
            #expect(error.description.contains("kernel says: Name already in use"))
        }
    }

    @Test func collectsADumpAcrossDatagramsUntilDone() throws {
        let socket = MockNetlinkSocket()
        let lo = LinkInfo(index: 1, name: "lo", mac: .zero, mtu: 65536, flags: [.up, .loopback], hardwareType: 772)
        socket.responder = { request in
            [
                KernelReply.message(
                    .newLink,
                    flags: .multi,
                    sequence: request.sequence,
                    portID: request.portID,
                    payload: KernelReply.linkPayload(lo)
                ),
                KernelReply.message(
                    .newLink,
                    flags: .multi,
                    sequence: request.sequence,
                    portID: request.portID,
                    payload: KernelReply.linkPayload(Self.tap)
                )
                    + KernelReply.done(to: request),
            ]
        }
        let links = try NetlinkSession(socket: socket).links()
        #expect(links == [lo, Self.tap])
    }

    @Test func retriesAnInterruptedDump() throws {
        let socket = MockNetlinkSocket()
        socket.responder = { request in
            let flags: NetlinkFlags = request.sequence == 1 ? [.multi, .dumpInterrupted] : .multi
            return [
                KernelReply.message(
                    .newLink,
                    flags: flags,
                    sequence: request.sequence,
                    portID: request.portID,
                    payload: KernelReply.linkPayload(Self.tap)
                )
                    + KernelReply.done(to: request)
            ]
        }
        let links = try NetlinkSession(socket: socket).links()
        #expect(links == [Self.tap])
        #expect(socket.requests.map(\.sequence) == [1, 2])
    }

    @Test func givesUpOnADumpThatIsAlwaysInterrupted() {
        let socket = MockNetlinkSocket()
        socket.responder = { request in
            [
                KernelReply.message(
                    .newLink,
                    flags: [.multi, .dumpInterrupted],
                    sequence: request.sequence,
                    portID: request.portID,
                    payload: KernelReply.linkPayload(Self.tap)
                )
                    + KernelReply.done(to: request)
            ]
        }
        #expect(throws: NetlinkError.self) { try NetlinkSession(socket: socket).links() }
        #expect(socket.sent.count == NetlinkSession.dumpAttempts)
    }

    @Test func reportsADumpThatFailsInItsDoneMessage() {
        let socket = MockNetlinkSocket()
        socket.responder = { request in [KernelReply.done(to: request, errno: 22)] }
        do {
            _ = try NetlinkSession(socket: socket).links()
            Issue.record("dump succeeded")
        } catch {
            #expect(error.code == .kernel && error.errno == .invalidArgument)
        }
    }

    @Test func rejectsAnAckThatEndsADumpAndDoneThatEndsARequest() {
        let dumpSocket = MockNetlinkSocket()
        dumpSocket.responder = { request in [KernelReply.ack(to: request)] }
        do {
            _ = try NetlinkSession(socket: dumpSocket).links()
            Issue.record("accepted")
        } catch {
            #expect(error.code == .malformedReply)
        }

        let requestSocket = MockNetlinkSocket()
        requestSocket.responder = { request in [KernelReply.done(to: request)] }
        do {
            try NetlinkSession(socket: requestSocket).setLinkUp(index: 5, true)
            Issue.record("accepted")
        } catch {
            #expect(error.code == .malformedReply)
        }
    }

    @Test func rejectsTruncatedRepliesWithoutCrashing() {
        let socket = MockNetlinkSocket()
        socket.responder = { request in
            let whole = KernelReply.link(Self.tap, to: request)
            return [Array(whole.prefix(whole.count - 30))]  // cut inside the trailing ACK
        }
        do {
            _ = try NetlinkSession(socket: socket).link(index: 5)
            Issue.record("accepted")
        } catch {
            #expect(error.code == .malformedReply)
        }
    }

    @Test func reportsALinkReplyWithoutAName() {
        let socket = MockNetlinkSocket()
        socket.responder = { request in
            var payload = KernelReply.linkPayload(Self.tap)
            payload[16 + 2] = 0x7F  // retype IFLA_IFNAME (the first attribute) as something else
            return [
                KernelReply.message(.newLink, sequence: request.sequence, portID: request.portID, payload: payload)
                    + KernelReply.ack(to: request)
            ]
        }
        do {
            _ = try NetlinkSession(socket: socket).link(index: 5)
            Issue.record("accepted")
        } catch {
            #expect(error.code == .malformedReply)
            #expect(error.detail?.contains("IFLA_IFNAME") == true)
        }
    }

    @Test func timesOutWhenNothingAnswers() {
        let socket = MockNetlinkSocket()
        do {
            try NetlinkSession(socket: socket).deleteLink(index: 5)
            Issue.record("accepted")
        } catch {
            #expect(error.code == .timedOut)
        }
    }

    @Test(arguments: ["", "a-name-of-16-byt", "a/b", "a:b", "a b", ".", ".."])
    func refusesInvalidInterfaceNamesBeforeSending(_ name: String) {
        let socket = MockNetlinkSocket()
        do {
            try NetlinkSession(socket: socket).renameLink(index: 5, to: name)
            Issue.record("accepted \(name)")
        } catch {
            #expect(error.code == .invalidArgument)
        }
        #expect(socket.sent.isEmpty)
    }
}
