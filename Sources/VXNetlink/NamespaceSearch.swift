// Finding a way back into a network namespace known only by its identity.
//
// A TAP that a user moved into a container tells the switch which namespace it is in now (a descriptor from
// TUNGETDEVNETNS, so an nsfs identity), but not how to open that namespace again after a restart. Every network
// namespace that is still alive is held by something that has a path: a bind mount (`ip netns add` under
// /run/netns, Docker's sandboxes under /run/docker/netns) or a process (/proc/PID/ns/net). `NamespaceSearch`
// looks in those places, in that order, for the identity: names and bind mounts first, because they outlive the
// processes in them.

#if os(Linux)
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SystemPackage

/// Looks for a path that leads to a given network namespace. See the file comment.
public struct NamespaceSearch: Sendable {
    /// Directories of `ip netns` names, searched first; their entries become `.name` locators.
    public var namedDirectory: String
    /// Directories of other bind mounts (Docker's sandboxes), searched next; entries become `.path` locators.
    public var bindMountDirectories: [String]
    /// The proc filesystem, searched last; entries become `.pid` locators (the lowest PID in the namespace).
    public var procDirectory: String

    /// The standard places.
    public init(
        namedDirectory: String = "/run/netns", bindMountDirectories: [String] = ["/run/docker/netns"],
        procDirectory: String = "/proc"
    ) {
        self.namedDirectory = namedDirectory
        self.bindMountDirectories = bindMountDirectories
        self.procDirectory = procDirectory
    }

    /// The identity of the namespace an nsfs descriptor refers to (fstat).
    public static func identity(ofDescriptor fd: Int32) -> Result<NamespaceIdentity, Errno> {
        NamespaceIdentity.of(descriptor: fd)
    }

    /// The identity of the calling thread's own network namespace (/proc/thread-self/ns/net).
    public static func currentIdentity() -> Result<NamespaceIdentity, Errno> {
        NamespaceIdentity.of(path: "/proc/thread-self/ns/net")
    }

    /// A locator that leads to the namespace with `identity` now, or nil when none of the places does.
    public func locator(for identity: NamespaceIdentity) -> NamespaceLocator? {
        for name in Self.entries(of: namedDirectory) where Self.leads("\(namedDirectory)/\(name)", to: identity) {
            return namedDirectory == "/run/netns" ? .name(name) : .path("\(namedDirectory)/\(name)")
        }
        for directory in bindMountDirectories {
            for name in Self.entries(of: directory) where Self.leads("\(directory)/\(name)", to: identity) {
                return .path("\(directory)/\(name)")
            }
        }
        let pids = Self.entries(of: procDirectory).compactMap { Int32($0) }.filter { $0 > 0 }.sorted()
        for pid in pids where Self.leads("\(procDirectory)/\(pid)/ns/net", to: identity) {
            return procDirectory == "/proc" ? .pid(pid) : .path("\(procDirectory)/\(pid)/ns/net")
        }
        return nil
    }

    private static func leads(_ path: String, to identity: NamespaceIdentity) -> Bool {
        if case .success(let found) = NamespaceIdentity.of(path: path) { return found == identity }
        return false
    }

    /// The names in `directory` (none when it cannot be read), without "." and "..".
    static func entries(of directory: String) -> [String] {
        guard let stream = unsafe opendir(directory) else { return [] }
        defer { _ = unsafe closedir(stream) }
        var names: [String] = []
        while let entry = unsafe readdir(stream) {
            let name = unsafe withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
#endif
