// Child processes for system tests: run a command with a deadline and capture its output, or start a long-running
// one and stop it by PID later.
//
// Everything here is bounded. A command that outlives its timeout is killed (SIGKILL, by PID) and reported as
// timed out; a spawned process is stopped with SIGTERM, then SIGKILL after a grace period. Output goes to files
// rather than pipes, so a chatty child can never block on a full pipe while we wait for it to exit.
//
// Waiting polls `Process.isRunning` with a short, growing sleep (1 ms doubling to 20 ms). That costs a few
// wake-ups per command and keeps the code free of signal handlers; Foundation's own monitor thread reaps the
// child, so we never call waitpid ourselves and cannot race it.

import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What a finished (or killed) command left behind.
public struct CommandResult: Sendable, CustomStringConvertible {
    /// The full argument vector, executable first.
    public var arguments: [String]
    /// The exit status, or the signal number plus 128 when the process was killed by a signal.
    public var status: Int32
    /// True when the command hit its deadline and was killed.
    public var timedOut: Bool
    /// Everything the command wrote to standard output, decoded as UTF-8.
    public var stdout: String
    /// Everything the command wrote to standard error, decoded as UTF-8.
    public var stderr: String

    /// True when the command exited by itself with status 0.
    public var succeeded: Bool { status == 0 && !timedOut }

    public var description: String {
        var text = "`\(arguments.joined(separator: " "))` "
        text += timedOut ? "timed out" : "exited with status \(status)"
        let err = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        if !err.isEmpty { text += "; stderr: \(err)" }
        let out = stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        if !out.isEmpty { text += "; stdout: \(out.prefix(2000))" }
        return text
    }
}

/// Errors from the process and namespace helpers.
public enum NetnsError: Error, CustomStringConvertible {
    /// A command that had to succeed did not (non-zero status or timeout).
    case commandFailed(CommandResult)
    /// A bounded wait ran out of time.
    case timedOut(String)
    /// A tool the helper needs is not installed.
    case missingTool(String)
    /// The caller asked for something impossible (bad index, name too long, ...).
    case invalidArgument(String)
    /// A check ran but its output was not what the helper expected.
    case unexpectedOutput(String)

    public var description: String {
        switch self {
        case .commandFailed(let result): return "command failed: \(result)"
        case .timedOut(let what): return "timed out: \(what)"
        case .missingTool(let tool): return "missing tool: \(tool)"
        case .invalidArgument(let what): return "invalid argument: \(what)"
        case .unexpectedOutput(let what): return "unexpected output: \(what)"
        }
    }
}

/// A long-running child started by `ProcessRunner.spawn` or `NetnsTopology.spawn`.
///
/// Stop it with `stop(grace:)`; the topology stops every process it spawned on teardown. Its output goes to
/// `stdoutPath` and `stderrPath`, which stay readable while it runs.
public final class SpawnedProcess: Sendable, CustomStringConvertible {
    /// The child's PID. `ip netns exec` execs the command in place, so this is the command itself, not a wrapper.
    public let pid: Int32
    /// The argument vector, executable first.
    public let arguments: [String]
    /// File receiving the child's standard output.
    public let stdoutPath: String
    /// File receiving the child's standard error.
    public let stderrPath: String
    /// The Foundation handle; only touched under the lock. Foundation reaps the child, so `isRunning` is the
    /// one reliable way to know the PID still belongs to our process before we signal it.
    private let process: Mutex<Process>

    init(process: Process, arguments: [String], stdoutPath: String, stderrPath: String) {
        self.pid = process.processIdentifier
        self.arguments = arguments
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
        self.process = Mutex(process)
    }

    public var description: String { "pid \(pid): \(arguments.joined(separator: " "))" }

    /// True while the child has not exited.
    public var isRunning: Bool { process.withLock { $0.isRunning } }

    /// The exit status once the child has exited (signal number plus 128 if it was killed), else nil.
    public var exitStatus: Int32? {
        process.withLock { process in
            guard !process.isRunning else { return nil }
            return process.terminationReason == .uncaughtSignal
                ? 128 + process.terminationStatus : process.terminationStatus
        }
    }

    /// The child's standard output so far.
    public func stdout() -> String { ProcessRunner.readFile(stdoutPath) }

    /// The child's standard error so far.
    public func stderr() -> String { ProcessRunner.readFile(stderrPath) }

    /// Sends `signal` to the child by PID if it is still running. The corresponding C function is `kill`.
    /// - Returns: true when the signal was sent.
    @discardableResult
    public func signal(_ signal: Int32) -> Bool {
        process.withLock { process in
            guard process.isRunning else { return false }
            return kill(process.processIdentifier, signal) == 0
        }
    }

    /// Waits until the child exits, up to `timeout`.
    /// - Returns: the exit status, or nil if the child is still running at the deadline.
    public func waitForExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        var pause = Duration.milliseconds(1)
        while isRunning {
            guard ContinuousClock.now < deadline else { return nil }
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(20))
        }
        return exitStatus
    }

    /// Waits until the child's standard output contains `text`, up to `timeout`.
    /// - Throws: `NetnsError.timedOut` at the deadline, or if the child exits first without printing it.
    public func waitForOutput(containing text: String, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while !stdout().contains(text) {
            if !isRunning, !stdout().contains(text) {
                throw NetnsError.timedOut("\(self) exited (status \(exitStatus ?? -1)) before printing \"\(text)\"; "
                    + "stderr: \(stderr())")
            }
            guard ContinuousClock.now < deadline else {
                throw NetnsError.timedOut("\(self) did not print \"\(text)\" within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Stops the child: SIGTERM, then SIGKILL if it is still running after `grace`. Blocking, so it can run from
    /// `defer` and teardown; returns at once if the child already exited.
    public func stop(grace: Duration = .seconds(2)) {
        guard signal(SIGTERM) else { return }
        if ProcessRunner.blockingWait(until: ContinuousClock.now + grace, while: { self.isRunning }) { return }
        signal(SIGKILL)
        _ = ProcessRunner.blockingWait(until: ContinuousClock.now + .seconds(5), while: { self.isRunning })
    }
}

/// Runs child processes with deadlines. Stateless; `NetnsTopology` wraps it with `ip netns exec`.
public enum ProcessRunner {
    /// Runs `arguments` (executable first; a bare name is looked up in `PATH`) and waits for it, at most
    /// `timeout`; on timeout the child is killed by PID.
    /// - Parameters:
    ///   - arguments: the argument vector, executable first.
    ///   - timeout: how long the command may run.
    /// - Returns: the result; a non-zero status is not an error here (see `NetnsTopology.check`).
    /// - Throws: only if the process could not be started.
    public static func run(_ arguments: [String], timeout: Duration = .seconds(30)) async throws -> CommandResult {
        let (process, out, err) = try start(arguments, directory: nil, name: nil)
        let deadline = ContinuousClock.now + timeout
        var pause = Duration.milliseconds(1)
        var timedOut = false
        while process.isRunning {
            if ContinuousClock.now >= deadline {
                timedOut = true
                kill(process.processIdentifier, SIGKILL)
                _ = blockingWait(until: ContinuousClock.now + .seconds(5), while: { process.isRunning })
                break
            }
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(20))
        }
        return finish(process, arguments: arguments, stdoutPath: out, stderrPath: err, timedOut: timedOut)
    }

    /// The blocking twin of `run`, for teardown paths that cannot `await` (`defer`, `deinit`).
    public static func runBlocking(_ arguments: [String], timeout: Duration = .seconds(30)) -> CommandResult {
        let started: (Process, String, String)
        do {
            started = try start(arguments, directory: nil, name: nil)
        } catch {
            return CommandResult(arguments: arguments, status: 127, timedOut: false, stdout: "", stderr: "\(error)")
        }
        let (process, out, err) = started
        var timedOut = false
        if !blockingWait(until: ContinuousClock.now + timeout, while: { process.isRunning }) {
            timedOut = true
            kill(process.processIdentifier, SIGKILL)
            _ = blockingWait(until: ContinuousClock.now + .seconds(5), while: { process.isRunning })
        }
        return finish(process, arguments: arguments, stdoutPath: out, stderrPath: err, timedOut: timedOut)
    }

    /// Starts a long-running child whose output goes to `<directory>/<name>.out` and `.err`.
    /// - Returns: a handle; the caller (usually `NetnsTopology`) must stop it.
    public static func spawn(_ arguments: [String], logDirectory: String, name: String) throws -> SpawnedProcess {
        let (process, out, err) = try start(arguments, directory: logDirectory, name: name)
        return SpawnedProcess(process: process, arguments: arguments, stdoutPath: out, stderrPath: err)
    }

    /// Finds an executable by absolute path candidates, then in `PATH`.
    /// - Returns: the first executable path found, or nil.
    public static func findExecutable(_ name: String, candidates: [String] = []) -> String? {
        let fm = FileManager.default
        for path in candidates where fm.isExecutableFile(atPath: path) { return path }
        let searchPath = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for dir in searchPath.split(separator: ":") + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
            let path = "\(dir)/\(name)"
            if fm.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    static func readFile(_ path: String) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    /// Polls `condition` with a growing sleep until it turns false or `deadline` passes.
    /// - Returns: true if `condition` turned false before the deadline.
    static func blockingWait(until deadline: ContinuousClock.Instant, while condition: () -> Bool) -> Bool {
        var pauseMicros: UInt32 = 1_000
        while condition() {
            guard ContinuousClock.now < deadline else { return false }
            usleep(pauseMicros)
            pauseMicros = min(pauseMicros * 2, 20_000)
        }
        return true
    }

    /// Starts the child with stdin from /dev/null and stdout/stderr to files: `<directory>/<name>.out|.err`, or
    /// a unique temporary pair when `directory` is nil.
    private static func start(
        _ arguments: [String],
        directory: String?,
        name: String?
    ) throws -> (Process, String, String) {
        precondition(!arguments.isEmpty, "empty argument vector")
        let fm = FileManager.default
        let base: String
        if let directory, let name {
            try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
            base = "\(directory)/\(name)"
        } else {
            base = fm.temporaryDirectory.appendingPathComponent("vx-cmd-\(UUID().uuidString)").path
        }
        let outPath = base + ".out"
        let errPath = base + ".err"
        guard fm.createFile(atPath: outPath, contents: nil), fm.createFile(atPath: errPath, contents: nil) else {
            throw NetnsError.invalidArgument("cannot create log files at \(base).{out,err}")
        }
        let process = Process()
        let executable = arguments[0].hasPrefix("/") ? arguments[0] : findExecutable(arguments[0])
        guard let executable else { throw NetnsError.missingTool(arguments[0]) }
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = Array(arguments.dropFirst())
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle(forWritingAtPath: outPath)
        process.standardError = FileHandle(forWritingAtPath: errPath)
        try process.run()
        return (process, outPath, errPath)
    }

    private static func finish(
        _ process: Process,
        arguments: [String],
        stdoutPath: String,
        stderrPath: String,
        timedOut: Bool
    ) -> CommandResult {
        let status: Int32
        if process.isRunning {
            status = -1  // SIGKILL did not take within 5 s (uninterruptible sleep); report, do not hang
        } else if process.terminationReason == .uncaughtSignal {
            status = 128 + process.terminationStatus
        } else {
            status = process.terminationStatus
        }
        let result = CommandResult(
            arguments: arguments,
            status: status,
            timedOut: timedOut,
            stdout: readFile(stdoutPath),
            stderr: readFile(stderrPath)
        )
        // Only one-shot commands come through here; their log files were private temporaries.
        try? FileManager.default.removeItem(atPath: stdoutPath)
        try? FileManager.default.removeItem(atPath: stderrPath)
        return result
    }
}
