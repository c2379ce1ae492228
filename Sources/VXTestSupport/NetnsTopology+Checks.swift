// End-to-end checks over a NetnsTopology: ping, a hash-verified TCP transfer, and bounded waits.
//
// The transfer runs tools/netns-tcp-transfer.py on both ends: the receiver is spawned in the receiving container
// and prints a "listening" line; the sender streams deterministic pseudo-random bytes; each side reports its byte
// count and SHA-256 as one JSON line. Both processes have their own deadline and we add ours on top, so a dead
// datapath fails in bounded time.

import Foundation

/// Outcome of `NetnsTopology.ping`.
public struct PingResult: Sendable, CustomStringConvertible {
    /// Echo requests sent.
    public var transmitted: Int
    /// Echo replies received.
    public var received: Int
    /// The raw ping output, for failure messages.
    public var output: String

    /// True when every request got a reply.
    public var allReceived: Bool { transmitted > 0 && received == transmitted }

    public var description: String { "\(received)/\(transmitted) replies" }
}

/// Outcome of `NetnsTopology.tcpTransfer`.
public struct TransferResult: Sendable, CustomStringConvertible {
    /// Bytes the caller asked to send.
    public var requestedBytes: Int
    /// Bytes the sender wrote.
    public var sentBytes: Int
    /// Bytes the receiver read before EOF.
    public var receivedBytes: Int
    /// SHA-256 (hex) of what the sender wrote.
    public var sentSHA256: String
    /// SHA-256 (hex) of what the receiver read.
    public var receivedSHA256: String
    /// Receiver's time from accept to EOF.
    public var seconds: Double

    /// True when every requested byte arrived and the hashes match.
    public var verified: Bool {
        sentBytes == requestedBytes && receivedBytes == requestedBytes && sentSHA256 == receivedSHA256
    }

    /// Goodput in megabits per second (10^6 bits).
    public var megabitsPerSecond: Double { seconds > 0 ? Double(receivedBytes) * 8 / seconds / 1e6 : 0 }

    public var description: String {
        let mib = Double(receivedBytes) / 1_048_576
        return String(
            format: "%.1f MiB in %.2f s (%.0f Mbit/s), %@",
            mib,
            seconds,
            megabitsPerSecond,
            verified
                ? "SHA-256 verified"
                : "MISMATCH sent \(sentBytes) B \(sentSHA256) "
                    + "received \(receivedBytes) B \(receivedSHA256)"
        )
    }
}

extension NetnsTopology {
    /// Pings `address` from inside `source`'s namespace (`ping -c count -i 0.2 -W 1 -w <timeout>`).
    /// - Parameters:
    ///   - source: where to ping from (a container, or a host for underlay checks).
    ///   - address: IPv4 or IPv6 address to ping (ping picks the family from it); it must live inside this
    ///     topology.
    ///   - count: echo requests to send.
    ///   - timeout: overall deadline; ping stops at this point whatever it has received.
    /// - Returns: sent and received counts. Lost replies are a result, not an error.
    public func ping(
        from source: some NetnsPlace,
        to address: String,
        count: Int = 3,
        timeout: Duration = .seconds(10)
    ) async throws -> PingResult {
        guard let pingPath = NetnsEnvironment.pingPath else { throw NetnsError.missingTool("ping (iputils-ping)") }
        let deadline = max(1, Int(timeout.components.seconds))
        let result = try await run(
            [pingPath, "-n", "-q", "-c", "\(count)", "-i", "0.2", "-W", "1", "-w", "\(deadline)", address],
            in: source,
            timeout: timeout + .seconds(5)
        )
        // "3 packets transmitted, 3 received, 0% packet loss, time 404ms"
        let numbers =
            result.stdout.split(separator: "\n").first { $0.contains("packets transmitted") }
            .map { line in line.split(separator: " ").compactMap { Int($0) } } ?? []
        guard numbers.count >= 2 else {
            throw NetnsError.unexpectedOutput("ping summary missing: \(result)")
        }
        return PingResult(transmitted: numbers[0], received: numbers[1], output: result.stdout)
    }

    /// Sends `bytes` of deterministic pseudo-random data over TCP from `source` to `destination` and reports what
    /// arrived and both SHA-256 digests. Check `verified` on the result.
    /// - Parameters:
    ///   - source: the sending namespace (usually a container).
    ///   - destination: the receiving container interface; the receiver binds its address.
    ///   - bytes: how much to send (the daemon tests use at least 50 MiB).
    ///   - port: TCP port of the receiver (default 5201).
    ///   - seed: seed of the data generator (same seed, same bytes).
    ///   - timeout: deadline for the whole transfer, connection set-up included.
    /// - Returns: byte counts, digests and the receiver's elapsed time.
    /// - Throws: when a side fails or times out; the error carries both sides' output.
    public func tcpTransfer(
        from source: some NetnsPlace,
        to destination: ContainerInterface,
        bytes: Int,
        port: Int = 5201,
        seed: Int = 1,
        timeout: Duration = .seconds(120)
    ) async throws -> TransferResult {
        guard let python = NetnsEnvironment.python3Path else { throw NetnsError.missingTool("python3") }
        guard let address = destination.address else {
            throw NetnsError.invalidArgument("\(destination.name) in \(destination.namespace) has no address")
        }
        let script = NetnsEnvironment.toolsDirectory + "/netns-tcp-transfer.py"
        guard FileManager.default.fileExists(atPath: script) else { throw NetnsError.missingTool(script) }
        let seconds = "\(timeout.components.seconds)"

        let receiver = try spawn(
            [python, script, "recv", "--bind", address, "--port", "\(port)", "--timeout", seconds],
            in: destination,
            name: "tcp-recv-\(port)"
        )
        defer { receiver.stop(grace: .milliseconds(500)) }
        try await receiver.waitForOutput(containing: "\"listening\"", timeout: .seconds(15))

        let sender = try await run(
            [
                python, script, "send", "--to", address, "--port", "\(port)", "--bytes", "\(bytes)",
                "--seed", "\(seed)", "--timeout", seconds,
            ],
            in: source,
            timeout: timeout + .seconds(10)
        )
        let receiverStatus = await receiver.waitForExit(timeout: .seconds(15))
        guard sender.succeeded, receiverStatus == 0 else {
            throw NetnsError.unexpectedOutput(
                "transfer failed; sender: \(sender); receiver status \(receiverStatus.map(String.init) ?? "running"), "
                    + "stdout: \(receiver.stdout()) stderr: \(receiver.stderr())"
            )
        }
        let sent = try Self.decodeReport(sender.stdout)
        let received = try Self.decodeReport(receiver.stdout())
        return TransferResult(
            requestedBytes: bytes,
            sentBytes: sent.bytes,
            receivedBytes: received.bytes,
            sentSHA256: sent.sha256,
            receivedSHA256: received.sha256,
            seconds: received.seconds
        )
    }

    /// Polls `condition` every `interval` until it returns true, at most `timeout`.
    /// - Parameters:
    ///   - what: what is awaited, for the error message.
    ///   - timeout: the deadline.
    ///   - interval: time between polls (default 50 ms).
    ///   - condition: the check; errors it throws propagate.
    /// - Throws: `NetnsError.timedOut` when the deadline passes.
    public static func waitUntil(
        _ what: String,
        timeout: Duration,
        interval: Duration = .milliseconds(50),
        _ condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw NetnsError.timedOut("\(what) (after \(timeout))") }
            try await Task.sleep(for: interval)
        }
    }

    /// Waits until `path` exists (a control socket, a pid file), at most `timeout`.
    /// - Throws: `NetnsError.timedOut` when the deadline passes.
    public static func waitForPath(_ path: String, timeout: Duration) async throws {
        try await waitUntil("\(path) to exist", timeout: timeout) { FileManager.default.fileExists(atPath: path) }
    }

    /// One JSON line printed by netns-tcp-transfer.py when a side finishes.
    private struct Report: Decodable {
        var bytes: Int
        var sha256: String
        var seconds: Double
    }

    private static func decodeReport(_ output: String) throws -> Report {
        // The receiver prints a "listening" line first; the report is the last line.
        guard let line = output.split(separator: "\n").last(where: { $0.contains("sha256") }) else {
            throw NetnsError.unexpectedOutput("no transfer report in: \(output)")
        }
        return try JSONDecoder().decode(Report.self, from: Data(line.utf8))
    }
}
