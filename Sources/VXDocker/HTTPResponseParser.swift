// An incremental HTTP/1.1 response parser (RFC 9112), just enough for one GET over a Unix socket, and strict
// about everything it accepts. Bytes flow in through `append` as they arrive; it returns the response as soon as
// the message is complete by its own framing, so the client never depends on the engine closing the connection.
// At end of input `finish` either completes a close-delimited body or says what was cut short.
//
// Framing follows RFC 9112 §6.3 in order: 1xx/204/304 have no body; otherwise Transfer-Encoding (only `chunked`,
// since we never send TE or Accept-Encoding) wins over Content-Length; otherwise Content-Length (all copies must
// agree); otherwise the body runs to end of input. Interim 1xx responses are skipped. Lines may end in CRLF or, as
// §2.2 lets a recipient accept, a bare LF; a CR anywhere else is an error. Obsolete line folding in a header is
// replaced by a space (§5.2). Every size is bounded by `Limits`: a hostile or broken peer gets an error, not our
// memory.
//
// Not thread-safe: one parser belongs to one request.

/// One HTTP/1.1 response, as far as the Docker client needs it.
struct HTTPResponse: Sendable, Equatable {
    /// One header field, in the order received; names keep their case.
    struct Field: Sendable, Equatable {
        var name: String  // as sent, e.g. "Content-Type"
        var value: String  // without leading and trailing whitespace
    }

    var status: Int  // 100...999
    var reason: String  // may be empty
    var headers: [Field]  // the final response's fields, trailers excluded
    var body: [UInt8]  // decoded from chunked framing when it was chunked

    /// The value of the first field named `name`, compared without regard to case.
    func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name.lowercased() == wanted }?.value
    }
}

/// Why a response could not be parsed: a phrase that completes "malformed answer from the Docker engine: …".
struct HTTPParseError: Error, Sendable, Equatable, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

struct HTTPResponseParser {
    /// The bounds on what one response may make us hold.
    struct Limits: Sendable {
        /// The status line and all header lines together, and separately all trailer lines together.
        var maxHeadBytes = 64 * 1024
        /// The decoded body. A container's inspect JSON is typically 10-30 KiB; thousands of labels or
        /// environment variables would still fit.
        var maxBodyBytes = 4 * 1024 * 1024
        /// One chunk-size line, extensions included.
        var maxChunkLineBytes = 4096
    }

    private enum Phase {
        case head  // reading the status line and header fields
        case fixedBody(remaining: Int)  // Content-Length framing
        case chunkSize  // expecting a chunk-size line
        case chunkData(remaining: Int)  // inside a chunk
        case chunkDataEnd  // expecting the CRLF after a chunk's data
        case trailers  // after the last chunk, until an empty line
        case untilClose  // no framing: the body ends with the input
        case done  // the response is complete; later input is ignored
    }

    let limits: Limits
    private var phase = Phase.head
    private var buffer: [UInt8] = []  // received but not consumed, from `start` on
    private var start = 0  // index in `buffer` of the first unconsumed byte
    private var receivedAny = false  // whether any byte arrived at all
    private var headBytes = 0  // bytes of head (or trailer) lines consumed so far, against maxHeadBytes
    private var statusLine: (status: Int, reason: String)?  // nil until the status line is parsed
    private var headers: [HTTPResponse.Field] = []
    private var body: [UInt8] = []

    init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Feeds bytes as they arrive.
    /// - Parameter bytes: the next bytes of the connection.
    /// - Returns: the response once it is complete (then, and on every later call), or nil while more is needed.
    /// - Throws: `HTTPParseError` as soon as the input cannot be a valid response.
    mutating func append(_ bytes: some Collection<UInt8>) throws(HTTPParseError) -> HTTPResponse? {
        if case .done = phase { return response }
        if !bytes.isEmpty { receivedAny = true }
        buffer.append(contentsOf: bytes)
        try advance()
        compact()
        if case .done = phase { return response }
        return nil
    }

    /// Ends the input: the peer closed the connection.
    /// - Returns: the response, if the input held a complete one.
    /// - Throws: `HTTPParseError` naming what was cut short.
    mutating func finish() throws(HTTPParseError) -> HTTPResponse {
        switch phase {
        case .done:
            return response
        case .untilClose:
            phase = .done
            return response
        case .head:
            if !receivedAny { throw HTTPParseError("the engine closed the connection without answering") }
            if statusLine == nil {
                throw HTTPParseError(
                    "the engine closed the connection in the middle of the status line \(excerpt(pending))"
                )
            }
            throw HTTPParseError("the engine closed the connection in the middle of the response header")
        case .fixedBody(let remaining):
            throw HTTPParseError(
                "the response body ended after \(body.count) of the \(body.count + remaining) bytes its "
                    + "Content-Length announced"
            )
        case .chunkSize, .chunkData, .chunkDataEnd:
            throw HTTPParseError(
                "the chunked response body ended after \(body.count) bytes, before its last chunk"
            )
        case .trailers:
            throw HTTPParseError("the engine closed the connection in the middle of the chunked body's trailer")
        }
    }

    private var response: HTTPResponse {
        HTTPResponse(status: statusLine?.status ?? 0, reason: statusLine?.reason ?? "", headers: headers, body: body)
    }

    private var pending: ArraySlice<UInt8> { buffer[start...] }

    // MARK: The state machine

    private mutating func advance() throws(HTTPParseError) {
        while true {
            switch phase {
            case .done:
                return
            case .head:
                if statusLine == nil {
                    // Refuse an answer that is not HTTP as soon as its first bytes show it, rather than waiting
                    // for a line end that a stray protocol may never send.
                    let seen = min(pending.count, httpPrefix.count)
                    guard pending.prefix(seen).elementsEqual(httpPrefix.prefix(seen)) else {
                        throw HTTPParseError("the answer does not start with an HTTP/1.x status line: "
                            + excerpt(pending))
                    }
                }
                guard let line = try nextLine(limit: limits.maxHeadBytes - headBytes, what: "response header") else {
                    return
                }
                headBytes += line.consumed
                try headLine(line.bytes)
            case .fixedBody(let remaining):
                let count = min(remaining, pending.count)
                guard count > 0 else { return }
                body += pending.prefix(count)
                start += count
                phase = remaining == count ? .done : .fixedBody(remaining: remaining - count)
            case .untilClose:
                guard !pending.isEmpty else { return }
                guard body.count + pending.count <= limits.maxBodyBytes else { throw bodyTooLarge() }
                body += pending
                start = buffer.count
                return
            case .chunkSize:
                guard let line = try nextLine(limit: limits.maxChunkLineBytes, what: "chunk-size line") else {
                    return
                }
                let size = try chunkSize(line.bytes)
                phase = size == 0 ? .trailers : .chunkData(remaining: size)
                headBytes = 0
            case .chunkData(let remaining):
                let count = min(remaining, pending.count)
                guard count > 0 else { return }
                body += pending.prefix(count)
                start += count
                phase = remaining == count ? .chunkDataEnd : .chunkData(remaining: remaining - count)
            case .chunkDataEnd:
                // The data must be followed by CRLF (or a bare LF); anything else means the size was wrong.
                guard let first = pending.first else { return }
                if first == lf {
                    start += 1
                    phase = .chunkSize
                } else if first == cr {
                    guard pending.count >= 2 else { return }
                    guard pending[start + 1] == lf else { throw chunkNotTerminated() }
                    start += 2
                    phase = .chunkSize
                } else {
                    throw chunkNotTerminated()
                }
            case .trailers:
                guard let line = try nextLine(limit: limits.maxHeadBytes - headBytes, what: "chunked body's trailer")
                else { return }
                headBytes += line.consumed
                if line.bytes.isEmpty { phase = .done }  // trailer fields are read and ignored
            }
        }
    }

    /// Takes the next line off the input, without its CRLF or LF.
    /// - Parameters:
    ///   - limit: how many bytes, terminator included, the line may take.
    ///   - what: the part of the message, for the error.
    /// - Returns: the line and the bytes it consumed, or nil when it has not fully arrived.
    private mutating func nextLine(limit: Int, what: String) throws(HTTPParseError)
        -> (bytes: ArraySlice<UInt8>, consumed: Int)?
    {
        guard let end = pending.firstIndex(of: lf) else {
            if pending.count > limit { throw HTTPParseError("the \(what) is longer than the limit") }
            return nil
        }
        let consumed = end + 1 - start
        guard consumed <= limit else { throw HTTPParseError("the \(what) is longer than the limit") }
        var line = buffer[start..<end]
        if line.last == cr { line = line.dropLast() }
        if line.contains(cr) { throw HTTPParseError("a line of the \(what) holds a bare CR: \(excerpt(line))") }
        start = end + 1
        return (line, consumed)
    }

    private mutating func headLine(_ line: ArraySlice<UInt8>) throws(HTTPParseError) {
        guard statusLine != nil else {
            statusLine = try Self.parseStatusLine(line)
            return
        }
        if !line.isEmpty {
            try headerLine(line)
            return
        }
        // The empty line: the head is complete.
        let status = statusLine!.status
        if (100..<200).contains(status) {
            // 101 would switch protocols, which a GET without Upgrade never asks for; the others are interim
            // (RFC 9110 §15.2) and the final response follows.
            guard status != 101 else { throw HTTPParseError("the engine switched protocols (101) unasked") }
            statusLine = nil
            headers = []
            headBytes = 0
            return
        }
        try chooseFraming(status: status)
    }

    private mutating func headerLine(_ line: ArraySlice<UInt8>) throws(HTTPParseError) {
        if line.first == space || line.first == tab {
            // Obsolete line folding (RFC 9112 §5.2): a user agent replaces it with a space.
            guard !headers.isEmpty else {
                throw HTTPParseError("the first header line is a continuation line: \(excerpt(line))")
            }
            let more = String(decoding: Self.trimmed(line), as: UTF8.self)
            headers[headers.count - 1].value += headers[headers.count - 1].value.isEmpty ? more : " " + more
            return
        }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
            throw HTTPParseError("a header line has no colon: \(excerpt(line))")
        }
        let name = line[line.startIndex..<colon]
        guard !name.isEmpty, name.allSatisfy(Self.isTokenByte) else {
            throw HTTPParseError("a header line has an invalid field name: \(excerpt(line))")
        }
        let value = Self.trimmed(line[(colon + 1)...])
        guard !value.contains(0) else {
            throw HTTPParseError("the \(String(decoding: name, as: UTF8.self)) header holds a NUL byte")
        }
        headers.append(
            .init(name: String(decoding: name, as: UTF8.self), value: String(decoding: value, as: UTF8.self))
        )
    }

    private mutating func chooseFraming(status: Int) throws(HTTPParseError) {
        // RFC 9112 §6.3 rule 1 (we only ever send GET, so HEAD and CONNECT do not arise).
        if status == 204 || status == 304 {
            phase = .done
            return
        }
        let transferEncodings = fieldList("transfer-encoding")
        if !transferEncodings.isEmpty {
            guard transferEncodings.map({ $0.lowercased() }) == ["chunked"] else {
                throw HTTPParseError(
                    "the response uses Transfer-Encoding \"\(transferEncodings.joined(separator: ", "))\"; only "
                        + "chunked is supported (and nothing else was asked for)"
                )
            }
            // Content-Length, if also present, is ignored (§6.3 rule 3); we close the connection after anyway.
            phase = .chunkSize
            return
        }
        let lengths = fieldList("content-length")
        if let first = lengths.first {
            guard lengths.allSatisfy({ $0 == first }) else {
                throw HTTPParseError("the response has conflicting Content-Length values \(lengths)")
            }
            guard !first.isEmpty, first.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                let length = Int(first)
            else {
                throw HTTPParseError("the response's Content-Length \"\(first)\" is not a valid length")
            }
            guard length <= limits.maxBodyBytes else {
                throw HTTPParseError(
                    "the response announces a \(length)-byte body, more than the \(limits.maxBodyBytes)-byte limit"
                )
            }
            body.reserveCapacity(length)
            phase = length == 0 ? .done : .fixedBody(remaining: length)
            return
        }
        phase = .untilClose
    }

    /// The comma-separated elements of every field named `name` (RFC 9110 §5.3), trimmed, empty ones dropped.
    private func fieldList(_ name: String) -> [String] {
        headers.filter { $0.name.lowercased() == name }.flatMap { field in
            field.value.split(separator: ",").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
        }
    }

    /// Parses `chunk-size [ chunk-ext ]` (RFC 9112 §7.1): hex digits, then optionally whitespace and `;…`.
    private func chunkSize(_ line: ArraySlice<UInt8>) throws(HTTPParseError) -> Int {
        var size = 0
        var digits = 0
        var index = line.startIndex
        while index < line.endIndex, let digit = Self.hexValue(line[index]) {
            size = size * 16 + digit
            digits += 1
            guard size <= limits.maxBodyBytes - body.count else {
                throw HTTPParseError(
                    "a chunk would take the body past the \(limits.maxBodyBytes)-byte limit"
                )
            }
            index += 1
        }
        guard digits > 0 else { throw HTTPParseError("a chunk-size line is not hexadecimal: \(excerpt(line))") }
        let rest = Self.trimmed(line[index...])
        guard rest.isEmpty || rest.first == UInt8(ascii: ";") else {
            throw HTTPParseError("a chunk-size line has trailing garbage: \(excerpt(line))")
        }
        return size
    }

    /// Drops consumed bytes once they are the larger part of a sizable buffer, so appends stay amortized O(1).
    private mutating func compact() {
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 16 * 1024 && start * 2 > buffer.count {
            buffer.removeSubrange(0..<start)
            start = 0
        }
    }

    private func bodyTooLarge() -> HTTPParseError {
        HTTPParseError("the response body is larger than the \(limits.maxBodyBytes)-byte limit")
    }

    private func chunkNotTerminated() -> HTTPParseError {
        HTTPParseError("a chunk's data is not followed by CRLF: \(excerpt(pending))")
    }

    // MARK: Lexical helpers

    /// Parses `HTTP/1.x SP 3DIGIT [SP reason]` (RFC 9112 §4).
    private static func parseStatusLine(_ line: ArraySlice<UInt8>) throws(HTTPParseError) -> (Int, String) {
        let bytes = Array(line)
        guard bytes.count >= 12, Array(bytes[0..<7]) == httpPrefix, isDigit(bytes[7]), bytes[8] == space,
            bytes[9...11].allSatisfy(isDigit), bytes.count == 12 || bytes[12] == space
        else {
            throw HTTPParseError("the answer does not start with an HTTP/1.x status line: \(excerpt(line))")
        }
        let status = bytes[9...11].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        guard status >= 100 else { throw HTTPParseError("the status code \(status) is out of range") }
        let reason = bytes.count > 13 ? String(decoding: bytes[13...], as: UTF8.self) : ""
        return (status, reason)
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// tchar (RFC 9110 §5.6.2).
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default: Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    /// `bytes` without leading and trailing spaces and tabs (OWS).
    private static func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var slice = bytes
        while let first = slice.first, first == space || first == tab { slice = slice.dropFirst() }
        while let last = slice.last, last == space || last == tab { slice = slice.dropLast() }
        return slice
    }
}

private let cr = UInt8(ascii: "\r")
private let lf = UInt8(ascii: "\n")
private let space = UInt8(ascii: " ")
private let tab = UInt8(ascii: "\t")
private let httpPrefix = Array("HTTP/1.".utf8)

/// Up to 40 bytes of `bytes` in quotes, printable ASCII as is and everything else as `\xNN`, for error messages.
func excerpt(_ bytes: some Collection<UInt8>) -> String {
    var text = "\""
    for byte in bytes.prefix(40) {
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"): text += "\\" + String(UnicodeScalar(byte))
        case 0x20...0x7E: text += String(UnicodeScalar(byte))
        default:
            let hex = String(byte, radix: 16, uppercase: true)
            text += "\\x" + (hex.count == 1 ? "0" + hex : hex)
        }
    }
    return text + (bytes.count > 40 ? "\"…" : "\"")
}

extension Substring {
    fileprivate func trimmingSpaces() -> String {
        var slice = self
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice = slice.dropLast() }
        return String(slice)
    }
}
