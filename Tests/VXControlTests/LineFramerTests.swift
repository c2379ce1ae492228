import Testing
import VXControl

@Suite struct LineFramerTests {
    private func drain(_ framer: inout LineFramer) -> [String] {
        var out: [String] = []
        while let event = framer.next() {
            switch event {
            case .line(let bytes): out.append(String(decoding: bytes, as: UTF8.self))
            case .lineTooLong(let error): out.append("<too long: \(error.code)>")
            }
        }
        return out
    }

    @Test func aLineSplitAcrossReadsComesOutWhole() {
        var framer = LineFramer()
        framer.append(Array(#"{"jsonrpc":"2.0","#.utf8))
        #expect(drain(&framer) == [])
        framer.append(Array(#""method":"show"}"#.utf8))
        #expect(drain(&framer) == [])
        framer.append([UInt8(ascii: "\n")])
        #expect(drain(&framer) == [#"{"jsonrpc":"2.0","method":"show"}"#])
        #expect(framer.bufferedByteCount == 0)
    }

    @Test func severalLinesInOneReadComeOutInOrderAndKeepThePartialTail() {
        var framer = LineFramer()
        framer.append(Array("one\ntwo\r\nthree\nfou".utf8))
        #expect(drain(&framer) == ["one", "two", "three"])
        #expect(framer.bufferedByteCount == 3)
        framer.append(Array("r\n".utf8))
        #expect(drain(&framer) == ["four"])
    }

    @Test func emptyLinesAreReportedAsEmpty() {
        var framer = LineFramer()
        framer.append(Array("\n\nx\n".utf8))
        #expect(drain(&framer) == ["", "", "x"])
    }

    @Test func anOverLongLineWithoutNewlineIsRejectedOnceAndSkippedToItsEnd() {
        var framer = LineFramer(maxLineLength: 8)
        framer.append(Array("0123456789".utf8))  // 10 bytes, no newline yet: over the limit already
        #expect(drain(&framer) == ["<too long: invalid request>"])
        #expect(framer.bufferedByteCount == 0)  // the bytes are dropped, not kept
        framer.append(Array("abcdefghijkl".utf8))  // still the same line
        #expect(drain(&framer) == [])
        framer.append(Array("end\nnext\n".utf8))
        #expect(drain(&framer) == ["next"])
    }

    @Test func anOverLongCompleteLineIsRejectedAndTheFollowingLineSurvives() {
        var framer = LineFramer(maxLineLength: 4)
        framer.append(Array("toolong\nok\n".utf8))
        #expect(drain(&framer) == ["<too long: invalid request>", "ok"])
    }

    @Test func aLineOfExactlyTheLimitIsAccepted() {
        var framer = LineFramer(maxLineLength: 4)
        framer.append(Array("abcd\r\n".utf8))
        #expect(drain(&framer) == ["abcd"])
    }

    @Test func theErrorNamesTheLimit() {
        var framer = LineFramer(maxLineLength: 16)
        framer.append([UInt8](repeating: 0x61, count: 40))
        guard case .lineTooLong(let error)? = framer.next() else {
            Issue.record("expected a rejection")
            return
        }
        #expect(error.message == "request line is longer than 16 bytes")
    }

    @Test func manySmallAppendsStayBounded() {
        var framer = LineFramer(maxLineLength: 64)
        var lines = 0
        for index in 0..<10_000 {
            framer.append(Array("line \(index)\n".utf8))
            while case .line? = framer.next() { lines += 1 }
        }
        #expect(lines == 10_000)
        #expect(framer.bufferedByteCount == 0)
    }
}
