// Child processes for system tests: run a command with a deadline and capture its output, or start a long-running
// one and stop it by PID later.
//
// Everything here is bounded. A command that outlives its timeout is killed (SIGKILL, by PID) and reported as
// timed out; a spawned process is stopped with SIGTERM, then SIGKILL after a grace period. Output goes to files
// rather than pipes, so a chatty child can never block on a full pipe while we wait for it to exit.
//
// Why posix_spawn and not Foundation's Process: a child inherits its parent thread's signal mask, and our callers
// run on Dispatch/cooperative-pool threads, which block SIGTERM and friends. Foundation's Process does not reset
// the mask, so its children ignored SIGTERM (found here: a spawned `sleep` outlived SIGTERM by ten minutes, and a
// daemon under test could never have been stopped gracefully). We spawn with POSIX_SPAWN_SETSIGMASK (empty mask)
// and POSIX_SPAWN_SETSIGDEF (every signal back to SIG_DFL), so children start as they would from a shell.
//
// Reaping: we waitpid(pid, WNOHANG) our own PIDs only, never -1, so we cannot steal Foundation's children (it
// waits on specific PIDs too). Until we reap a child its PID cannot be reused, so signalling an unreaped PID
// always reaches our process. Waiting polls with a short, growing sleep (1 ms doubling to 20 ms): a few
// wake-ups per command, and no SIGCHLD handler to install in a test runner we do not own.

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
    /// posix_spawn failed.
    case spawnFailed([String], Int32)

    public var description: String {
        switch self {
        case .commandFailed(let result): return "command failed: \(result)"
        case .timedOut(let what): return "timed out: \(what)"
        case .missingTool(let tool): return "missing tool: \(tool)"
        case .invalidArgument(let what): return "invalid argument: \(what)"
        case .unexpectedOutput(let what): return "unexpected output: \(what)"
        case .spawnFailed(let arguments, let code):
            return "cannot spawn `\(arguments.joined(separator: " "))`: \(String(cString: strerror(code)))"
        }
    }
}

/// A long-running child started by `ProcessRunner.spawn` or `NetnsTopology.spawn`.
///
/// Stop it with `stop(grace:)`; the topology stops every process it spawned on teardown. Its output goes to
/// `stdoutPath` and `stderrPath`, which stay readable while it runs and after it exits.
public final class SpawnedProcess: Sendable, CustomStringConvertible {
    /// The child's PID. `ip netns exec` execs the command in place, so this is the command itself, not a wrapper.
    public let pid: Int32
    /// The argument vector, executable first.
    public let arguments: [String]
    /// File receiving the child's standard output.
    public let stdoutPath: String
    /// File receiving the child's standard error.
    public let stderrPath: String
    /// The exit status once reaped (signal number plus 128 if killed by one); nil while running. Reaping and
    /// signalling both happen under this lock, so a signal never goes to a PID we have already released.
    private let reapedStatus = Mutex<Int32?>(nil)

    init(pid: Int32, arguments: [String], stdoutPath: String, stderrPath: String) {
        self.pid = pid
        self.arguments = arguments
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
    }

    public var description: String { "pid \(pid): \(arguments.joined(separator: " "))" }

    /// True while the child has not exited.
    public var isRunning: Bool { exitStatus == nil }

    /// The exit status once the child has exited (signal number plus 128 if it was killed), else nil.
    public var exitStatus: Int32? {
        reapedStatus.withLock { status in
            if status == nil { status = Self.reap(pid) }
            return status
        }
    }

    /// The child's standard output so far.
    public func stdout() -> String { ProcessRunner.readFile(stdoutPath) }

    /// The child's standard error so far.
    public func stderr() -> String { ProcessRunner.readFile(stderrPath) }

    /// Sends `signal` to the child by PID if it has not exited. The corresponding C function is `kill`.
    /// - Returns: true when the signal was sent.
    @discardableResult
    public func signal(_ signal: Int32) -> Bool {
        reapedStatus.withLock { status in
            if status == nil { status = Self.reap(pid) }
            guard status == nil else { return false }
            return kill(pid, signal) == 0
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
                throw NetnsError.timedOut(
                    "\(self) exited (status \(exitStatus ?? -1)) before printing \"\(text)\"; "
                        + "stderr: \(stderr())"
                )
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

    deinit {
        // Never leave a zombie: a handle dropped without stop() still gets its child killed and reaped.
        stop(grace: .zero)
    }

    /// Reaps `pid` if it has exited. The corresponding C function is `waitpid(pid, &status, WNOHANG)`.
    /// - Returns: the decoded status, or nil while it runs.
    static func reap(_ pid: Int32) -> Int32? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { break }
            if result == 0 { return nil }
            if errno == EINTR { continue }
            return -1  // ECHILD: not our child any more; report it as gone rather than spin forever
        }
        // <sys/wait.h> macros by hand (Swift does not import them): low 7 bits are the terminating signal.
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
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
        let child = try start(arguments, logDirectory: nil, name: nil)
        let deadline = ContinuousClock.now + timeout
        var pause = Duration.milliseconds(1)
        var timedOut = false
        while child.isRunning {
            if ContinuousClock.now >= deadline {
                timedOut = true
                child.stop(grace: .zero)
                break
            }
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(20))
        }
        return finish(child, timedOut: timedOut)
    }

    /// The blocking twin of `run`, for teardown paths that cannot `await` (`defer`, `deinit`).
    public static func runBlocking(_ arguments: [String], timeout: Duration = .seconds(30)) -> CommandResult {
        let child: SpawnedProcess
        do {
            child = try start(arguments, logDirectory: nil, name: nil)
        } catch {
            return CommandResult(arguments: arguments, status: 127, timedOut: false, stdout: "", stderr: "\(error)")
        }
        var timedOut = false
        if !blockingWait(until: ContinuousClock.now + timeout, while: { child.isRunning }) {
            timedOut = true
            child.stop(grace: .zero)
        }
        return finish(child, timedOut: timedOut)
    }

    /// Starts a long-running child whose output goes to `<logDirectory>/<name>.out` and `.err`.
    /// - Returns: a handle; the caller (usually `NetnsTopology`) must stop it.
    public static func spawn(_ arguments: [String], logDirectory: String, name: String) throws -> SpawnedProcess {
        try start(arguments, logDirectory: logDirectory, name: name)
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

    /// Spawns the child: stdin from /dev/null, stdout/stderr to `<logDirectory>/<name>.out|.err` (a unique
    /// temporary pair when `logDirectory` is nil), empty signal mask, default signal dispositions, the caller's
    /// environment. The corresponding C function is `posix_spawn`.
    private static func start(_ arguments: [String], logDirectory: String?, name: String?) throws -> SpawnedProcess {
        precondition(!arguments.isEmpty, "empty argument vector")
        let fm = FileManager.default
        let base: String
        if let logDirectory, let name {
            try fm.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
            base = "\(logDirectory)/\(name)"
        } else {
            base = fm.temporaryDirectory.appendingPathComponent("vx-cmd-\(UUID().uuidString)").path
        }
        let outPath = base + ".out"
        let errPath = base + ".err"
        let executable = arguments[0].hasPrefix("/") ? arguments[0] : findExecutable(arguments[0])
        guard let executable else { throw NetnsError.missingTool(arguments[0]) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        sigdelset(&allSignals, SIGKILL)
        sigdelset(&allSignals, SIGSTOP)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)

        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let code = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard code == 0 else { throw NetnsError.spawnFailed(arguments, code) }
        return SpawnedProcess(pid: pid, arguments: arguments, stdoutPath: outPath, stderrPath: errPath)
    }

    /// Collects a one-shot command's result and deletes its private log files.
    private static func finish(_ child: SpawnedProcess, timedOut: Bool) -> CommandResult {
        let result = CommandResult(
            arguments: child.arguments,
            status: child.exitStatus ?? -1,  // -1: SIGKILL did not take within 5 s (uninterruptible sleep)
            timedOut: timedOut,
            stdout: child.stdout(),
            stderr: child.stderr()
        )
        try? FileManager.default.removeItem(atPath: child.stdoutPath)
        try? FileManager.default.removeItem(atPath: child.stderrPath)
        return result
    }
}
