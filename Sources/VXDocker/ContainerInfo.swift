/// What `vxctl attach --docker` needs to know about a container: who it is, and which process holds its network
/// namespace. These are the fields `docker inspect` shows as `.Id`, `.Name`, `.State.Pid` and `.State.Running`.
public struct ContainerInfo: Hashable, Sendable, CustomStringConvertible {
    /// The full container id: 64 lowercase hex digits.
    public var id: String
    /// The container's name without the leading `/` the engine reports it with, e.g. `web`.
    public var name: String
    /// The process id of the container's init process on this host, in the host's PID namespace; 0 when the
    /// container is not running.
    public var pid: Int32
    /// Whether the engine reports the container as running (paused containers count as running).
    public var running: Bool

    /// - Parameters:
    ///   - id: the full container id.
    ///   - name: the name, without a leading `/`.
    ///   - pid: the init process's id, 0 when not running.
    ///   - running: `State.Running`.
    public init(id: String, name: String, pid: Int32, running: Bool) {
        self.id = id
        self.name = name
        self.pid = pid
        self.running = running
    }

    /// The container's network namespace as a path, `/proc/PID/ns/net`, as `ovs-docker` and `pipework` reach it.
    /// Meaningful only while the container runs, and only to a process in the host's PID namespace.
    public var networkNamespacePath: String { "/proc/\(pid)/ns/net" }

    /// `web (3f4e5a6b7c8d, pid 4242)`: the name, the short id and the pid.
    public var description: String {
        "\(name) (\(id.prefix(12)), \(running ? "pid \(pid)" : "not running"))"
    }
}
