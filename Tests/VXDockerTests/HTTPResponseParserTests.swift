// The HTTP/1.1 response parser on bytes alone, table-driven: each well-formed case is fed whole, one byte at a
// time, and in 3-byte pieces, since the socket may cut a response anywhere.

import Testing

@testable import VXDocker

/// Feeds `input` in pieces of `pieceSize` bytes (all at once when nil), then ends the input if still needed.
private func parse(
    _ input: String,
    pieceSize: Int? = nil,
    limits: HTTPResponseParser.Limits = .init()
) throws(HTTPParseError) -> HTTPResponse {
    var parser = HTTPResponseParser(limits: limits)
    let bytes = Array(input.utf8)
    let size = max(pieceSize ?? bytes.count, 1)
    var offset = 0
    while offset < bytes.count {
        if let response = try parser.append(bytes[offset..<min(offset + size, bytes.count)]) { return response }
        offset += size
    }
    return try parser.finish()
}

struct WellFormed: CustomTestStringConvertible, Sendable {
    var name: String
    var input: String
    var status: Int
    var body: String
    var testDescription: String { name }
}

struct Malformed: CustomTestStringConvertible, Sendable {
    var name: String
    var input: String
    var error: String  // a part of the error's description
    var testDescription: String { name }
}

private let wellFormed: [WellFormed] = [
    WellFormed(
        name: "Content-Length body",
        input: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello",
        status: 200, body: "hello"
    ),
    WellFormed(
        name: "chunked body with a chunk extension and a trailer",
        input: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "5;name=value\r\nhello\r\n"  // chunk 1: 5 bytes, with an extension
            + "1\r\n!\r\n"  // chunk 2: 1 byte
            + "0\r\nX-Trailer: y\r\n\r\n",  // last chunk, one trailer field, end
        status: 200, body: "hello!"
    ),
    WellFormed(
        name: "chunk sizes in upper- and lowercase hex",
        input: "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n",
        status: 200, body: "0123456789abcdefghijk"
    ),
    WellFormed(
        name: "Transfer-Encoding wins over Content-Length",
        input: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        status: 200, body: "ok"
    ),
    WellFormed(
        name: "bare LF line endings",
        input: "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
        status: 200, body: "ok"
    ),
    WellFormed(
        name: "bare LF after chunk data",
        input: "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nok\n0\n\n",
        status: 200, body: "ok"
    ),
    WellFormed(
        name: "interim 100 Continue before the final response",
        input: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        status: 200, body: "ok"
    ),
    WellFormed(
        name: "204 has no body",
        input: "HTTP/1.1 204 No Content\r\n\r\n",
        status: 204, body: ""
    ),
    WellFormed(
        name: "no framing: the body runs to the end of input",
        input: "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
        status: 200, body: "until close"
    ),
    WellFormed(
        name: "status line without a reason phrase",
        input: "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
        status: 404, body: ""
    ),
    WellFormed(
        name: "repeated identical Content-Length values",
        input: "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok",
        status: 200, body: "ok"
    ),
    WellFormed(
        name: "bytes after the message are ignored",
        input: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 500 Oops\r\n\r\n",
        status: 200, body: "ok"
    ),
]

private let malformed: [Malformed] = [
    Malformed(name: "nothing at all", input: "", error: "closed the connection without answering"),
    Malformed(
        name: "another protocol", input: "SSH-2.0-OpenSSH_9.2p1\r\n",
        error: #"does not start with an HTTP/1.x status line: "SSH-2.0-OpenSSH_9.2p1\x0D\x0A""#
    ),
    Malformed(name: "HTTP/2", input: "HTTP/2 200\r\n\r\n", error: "does not start with an HTTP/1.x status line"),
    Malformed(name: "non-digit status", input: "HTTP/1.1 2x0 OK\r\n\r\n", error: "HTTP/1.x status line"),
    Malformed(name: "status line cut short", input: "HTTP/1.1 20", error: "in the middle of the status line"),
    Malformed(
        name: "header cut short", input: "HTTP/1.1 200 OK\r\nContent-",
        error: "in the middle of the response header"
    ),
    Malformed(name: "header without colon", input: "HTTP/1.1 200 OK\r\nbogus\r\n\r\n", error: "has no colon"),
    Malformed(
        name: "space before the colon", input: "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
        error: "invalid field name"
    ),
    Malformed(name: "bare CR in a header", input: "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", error: "bare CR"),
    Malformed(
        name: "conflicting Content-Length", input: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
        error: "conflicting Content-Length"
    ),
    Malformed(
        name: "negative Content-Length", input: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        error: #"Content-Length "-1" is not a valid length"#
    ),
    Malformed(
        name: "Content-Length beyond Int", input: "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        error: "is not a valid length"
    ),
    Malformed(
        name: "gzip transfer coding", input: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        error: "only chunked is supported"
    ),
    Malformed(
        name: "chunk size not hex", input: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        error: "not hexadecimal"
    ),
    Malformed(
        name: "chunk size with garbage", input: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 x\r\nok\r\n",
        error: "trailing garbage"
    ),
    Malformed(
        name: "chunk longer than its size",
        input: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        error: "not followed by CRLF"
    ),
    Malformed(
        name: "Content-Length body cut short", input: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        error: "ended after 3 of the 10 bytes"
    ),
    Malformed(
        name: "chunked body cut short", input: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        error: "ended after 3 bytes, before its last chunk"
    ),
    Malformed(
        name: "trailer cut short", input: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-A: b\r\n",
        error: "trailer"
    ),
    Malformed(
        name: "101 without an upgrade request", input: "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        error: "switched protocols"
    ),
]

@Suite("HTTPResponseParser")
struct HTTPResponseParserTests {
    @Test("parses well-formed responses however the input is cut", arguments: wellFormed, [nil, 1, 3])
    func parsesWellFormedResponses(_ example: WellFormed, pieceSize: Int?) throws {
        let response = try parse(example.input, pieceSize: pieceSize)
        #expect(response.status == example.status)
        #expect(String(decoding: response.body, as: UTF8.self) == example.body)
    }

    @Test("refuses malformed responses with a reason", arguments: malformed)
    func refusesMalformedResponses(_ example: Malformed) {
        let error = #expect(throws: HTTPParseError.self) { try parse(example.input) }
        #expect(error?.description.contains(example.error) == true, "\(String(describing: error))")
    }

    @Test func refusesNonHTTPAtTheFirstWrongByteWithoutWaitingForALineEnd() {
        var parser = HTTPResponseParser()
        #expect(throws: HTTPParseError.self) { _ = try parser.append(Array("HTTX".utf8)) }
        var patient = HTTPResponseParser()
        #expect(throws: Never.self) { _ = try patient.append(Array("HTTP/1".utf8)) }
    }

    @Test func keepsHeadersInOrderAndLooksThemUpWithoutRegardToCase() throws {
        let response = try parse(
            "HTTP/1.1 200 OK\r\nApi-Version: 1.47\r\nX-Folded: a\r\n  b\r\nContent-Length:0\r\n\r\n"
        )
        #expect(response.reason == "OK")
        #expect(response.headers.map(\.name) == ["Api-Version", "X-Folded", "Content-Length"])
        #expect(response.header("api-version") == "1.47")
        #expect(response.header("x-folded") == "a b")  // obsolete line folding becomes a space
        #expect(response.header("content-length") == "0")
        #expect(response.header("missing") == nil)
    }

    @Test func boundsTheHeader() {
        var limits = HTTPResponseParser.Limits()
        limits.maxHeadBytes = 64
        let long = "HTTP/1.1 200 OK\r\nX-Padding: " + String(repeating: "a", count: 100) + "\r\n\r\n"
        let error = #expect(throws: HTTPParseError.self) { try parse(long, limits: limits) }
        #expect(error?.description.contains("response header is longer than the limit") == true)
        // The bound holds while the line is still arriving, too.
        var parser = HTTPResponseParser(limits: limits)
        #expect(throws: HTTPParseError.self) {
            _ = try parser.append(Array(("HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: 100)).utf8))
        }
    }

    @Test(
        "bounds the body whatever its framing",
        arguments: [
            "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nabcdef\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\n\r\n" + String(repeating: "a", count: 11),
        ]
    )
    func boundsTheBody(_ input: String) {
        var limits = HTTPResponseParser.Limits()
        limits.maxBodyBytes = 10
        let error = #expect(throws: HTTPParseError.self) { try parse(input, limits: limits) }
        #expect(error?.description.contains("10-byte limit") == true, "\(String(describing: error))")
    }

    @Test func boundsTheChunkSizeLine() {
        var limits = HTTPResponseParser.Limits()
        limits.maxChunkLineBytes = 16
        let input = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;" + String(repeating: "x", count: 32)
        let error = #expect(throws: HTTPParseError.self) { try parse(input, limits: limits) }
        #expect(error?.description.contains("chunk-size line is longer than the limit") == true)
    }

    @Test func excerptsShowControlBytesAsHexAndCutLongInput() {
        #expect(excerpt(Array("a\"b\\\r\n\u{7F}".utf8)) == #""a\"b\\\x0D\x0A\x7F""#)
        #expect(excerpt(Array(repeating: UInt8(ascii: "x"), count: 50)) == "\"" + String(repeating: "x", count: 40)
            + "\"…")
    }
}
