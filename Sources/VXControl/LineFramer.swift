// Newline-delimited framing: bytes arrive in arbitrary pieces (half a line, three lines, a line and a half) and
// leave as complete lines. The buffer is bounded: a line that grows past `maxLineLength` is reported once as an
// error, its remaining bytes are discarded up to the next newline, and framing resumes there, so one bad
// message costs one error response instead of the connection or unbounded memory.

/// Splits a byte stream into lines, with a bound on line length.
///
/// Not thread-safe: one framer per connection, used by the thread that reads it.
public struct LineFramer: Sendable {
    /// The default bound: 1 MiB, far above any control request.
    public static let defaultMaxLineLength = 1 << 20

    /// A line or a rejected line.
    public enum Event: Sendable {
        /// A complete line, without its `\n` (and without a `\r` before it).
        case line([UInt8])
        /// A line longer than the limit was dropped.
        case lineTooLong(ControlError)
    }

    /// The longest line accepted, in bytes, not counting the newline.
    public let maxLineLength: Int

    private var buffer: [UInt8] = []  // unconsumed bytes; buffer[start...] is the current partial data
    private var start = 0  // index of the first unconsumed byte
    private var scanned = 0  // buffer[start..<scanned] is known to hold no newline
    private var discarding = false  // inside an over-long line, dropping bytes up to its newline

    /// - Parameter maxLineLength: the longest line accepted, in bytes.
    public init(maxLineLength: Int = LineFramer.defaultMaxLineLength) {
        precondition(maxLineLength > 0, "maxLineLength must be positive")
        self.maxLineLength = maxLineLength
    }

    /// The bytes held that do not yet form a complete line.
    public var bufferedByteCount: Int { buffer.count - start }

    /// Adds bytes read from the stream.
    /// - Parameter bytes: the bytes, in stream order.
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        if start > 0 && start >= buffer.count / 2 {
            // Compact once the consumed prefix is at least half the buffer, so each byte moves O(1) times.
            buffer.removeSubrange(0..<start)
            scanned -= start
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// Returns the next complete line or rejection, or nil when more bytes are needed.
    public mutating func next() -> Event? {
        while true {
            guard let newline = buffer[scanned...].firstIndex(of: UInt8(ascii: "\n")) else {
                scanned = buffer.count
                let pending = buffer.count - start
                if discarding {
                    start = buffer.count
                } else if pending > maxLineLength + 1 {  // + 1: room for a `\r` before the newline
                    discarding = true
                    start = buffer.count
                    return .lineTooLong(tooLong())
                }
                return nil
            }
            let lineStart = start
            start = newline + 1
            scanned = start
            if discarding {
                discarding = false
                continue
            }
            var end = newline
            if end > lineStart && buffer[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            if end - lineStart > maxLineLength { return .lineTooLong(tooLong()) }
            return .line(Array(buffer[lineStart..<end]))
        }
    }

    private func tooLong() -> ControlError {
        ControlError(.invalidRequest, "request line is longer than \(maxLineLength) bytes")
    }
}
