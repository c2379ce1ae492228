// How many CPUs this process may run on, for vxswitchd's default worker count. The machine's online CPUs
// (sysconf) overstate it wherever the switch is confined: `taskset`, a cgroup cpuset (`docker run --cpuset-cpus`)
// or systemd's `CPUAffinity=` all narrow the affinity mask, and a worker per CPU the process cannot use only adds
// threads that take turns on the same cores.

internal import CVXLinux

public enum CPUAffinity {
    /// The CPUs in the calling thread's affinity mask (threads inherit it, so at start-up it is the process's),
    /// or nil when the kernel does not say.
    public static func usableCPUCount() -> Int? {
        let count = cvx_usable_cpu_count()
        return count > 0 ? Int(count) : nil
    }
}
