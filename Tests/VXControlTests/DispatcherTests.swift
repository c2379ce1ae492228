import Testing
import VXControl

/// Request line in, response line out, without sockets.
@Suite struct DispatcherTests {
    let dispatcher = ControlDispatcher(router: ControlRouter(service: RecordingService()))

    private func respond(_ line: String) async -> String? {
        await dispatcher.respond(toLine: Array(line.utf8)).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test func aValidRequestGetsItsResultWithTheSameID() async {
        let response = await respond(#"{"jsonrpc":"2.0","id":"x-1","method":"add-port","params":{"name":"tap0","vni":100}}"#)
        #expect(response == #"{"id":"x-1","jsonrpc":"2.0","result":{"mtu":1450,"name":"tap0","vni":100}}"#)
    }

    @Test func paramsMayBeLeftOutForMethodsWithoutRequiredParams() async {
        let response = await respond(#"{"jsonrpc":"2.0","id":1,"method":"show"}"#)
        #expect(response == #"{"id":1,"jsonrpc":"2.0","result":{"peers":[],"ports":[],"vnis":[]}}"#)
    }

    struct Case: Sendable, CustomTestStringConvertible {
        let line: String
        let code: Int
        let id: String  // the response's id as JSON
        var testDescription: String { line }
    }

    static let errors: [Case] = [
        Case(line: #"{"jsonrpc":"2.0","id":1,"method":"show""#, code: -32700, id: "null"),
        Case(line: "not json", code: -32700, id: "null"),
        Case(line: #""a string""#, code: -32600, id: "null"),
        Case(line: "[]", code: -32600, id: "null"),
        Case(line: #"{"id":1,"method":"show"}"#, code: -32600, id: "1"),
        Case(line: #"{"jsonrpc":"1.0","id":1,"method":"show"}"#, code: -32600, id: "1"),
        Case(line: #"{"jsonrpc":"2.0","id":2,"method":7}"#, code: -32600, id: "2"),
        Case(line: #"{"jsonrpc":"2.0","id":{"a":1},"method":"show"}"#, code: -32600, id: "null"),
        Case(line: #"{"jsonrpc":"2.0","id":3,"method":"reboot"}"#, code: -32601, id: "3"),
        Case(line: #"{"jsonrpc":"2.0","id":4,"method":"add-port","params":{"name":"tap0"}}"#, code: -32602, id: "4"),
        Case(line: #"{"jsonrpc":"2.0","id":5,"method":"add-port","params":"tap0"}"#, code: -32602, id: "5"),
    ]

    @Test(arguments: errors)
    func malformedRequestsGetTheRightErrorCode(_ testCase: Case) async throws {
        let line = try #require(await respond(testCase.line))
        let json = try ControlJSON.parse(Array(line.utf8))
        guard case .object(let response) = json, case .object(let error)? = response["error"] else {
            Issue.record("not an error response: \(line)")
            return
        }
        #expect(error["code"] == .integer(Int64(testCase.code)))
        #expect(try encoded(response["id"] ?? .string("missing")) == testCase.id)
        #expect(response["jsonrpc"] == .string("2.0"))
        guard case .string(let message)? = error["message"] else {
            Issue.record("no message in \(line)")
            return
        }
        #expect(!message.isEmpty)
    }

    @Test func aParseErrorQuotesTheStartOfTheLine() async {
        #expect(
            await respond("nope")
                == #"{"error":{"code":-32700,"message":"the line is not valid JSON: nope"},"id":null,"jsonrpc":"2.0"}"#
        )
    }

    @Test func anUnknownMethodListsTheKnownOnes() async {
        let response = await respond(#"{"jsonrpc":"2.0","id":3,"method":"reboot"}"#)
        #expect(
            response
                == #"{"error":{"code":-32601,"message":"no method named \"reboot\" (methods: add-peer, add-port, del-peer, del-port, fdb, show, stats)"},"id":3,"jsonrpc":"2.0"}"#
        )
    }

    @Test func aNotificationIsExecutedButNotAnswered() async {
        #expect(await respond(#"{"jsonrpc":"2.0","method":"del-port","params":{"name":"tap0"}}"#) == nil)
    }

    @Test func aBatchGetsAnArrayOfResponsesWithoutTheNotifications() async {
        let response = await respond(
            #"[{"jsonrpc":"2.0","id":1,"method":"show"},{"jsonrpc":"2.0","method":"stats"},"#
                + #"{"jsonrpc":"2.0","id":2,"method":"nope"}]"#
        )
        #expect(
            response
                == #"[{"id":1,"jsonrpc":"2.0","result":{"peers":[],"ports":[],"vnis":[]}},"#
                + #"{"error":{"code":-32601,"message":"no method named \"nope\" (methods: add-peer, add-port, del-peer, del-port, fdb, show, stats)"},"id":2,"jsonrpc":"2.0"}]"#
        )
    }

    @Test func aBatchOfNotificationsGetsNoResponse() async {
        #expect(await respond(#"[{"jsonrpc":"2.0","method":"show"}]"#) == nil)
    }

    @Test func extraMethodsCanBeRegistered() async throws {
        var router = ControlRouter(service: RecordingService())
        router.register(EchoMethod.self) { params throws(ControlError) in params }
        let dispatcher = ControlDispatcher(router: router)
        let line = try #require(
            await dispatcher.respond(toLine: Array(#"{"jsonrpc":"2.0","id":1,"method":"echo","params":{"vni":9}}"#.utf8))
        )
        #expect(String(decoding: line, as: UTF8.self) == #"{"id":1,"jsonrpc":"2.0","result":{"vni":9}}"#)
    }
}

enum EchoMethod: ControlMethod {
    typealias Params = FDBParams
    typealias Result = FDBParams
    static let name = "echo"
}
