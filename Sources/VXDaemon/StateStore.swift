// The switch's configuration on disk, so it survives a restart — and a `kill -9`.
//
// Every control request that changes the configuration is written here *before* it is acknowledged: the file is
// written to a temporary name in the same directory, fsync'd, renamed over the old one, and the directory is
// fsync'd, so after a crash the file is either the old or the new version, never a torn mix (the classic
// write-fsync-rename; rename(2) is atomic within a filesystem). A request whose write failed is undone and answered
// with an error, so nothing acknowledged to a client can be lost.

import Foundation
import VXControl
import VXDHCP
import VXPacket

/// Everything vxswitchd restores at start. Versioned so a later format can read (or refuse) an older one.
public struct PersistedState: Codable, Sendable, Equatable {
    public static let currentVersion = 1

    public var version = PersistedState.currentVersion
    public var ports: [PersistedPort] = []
    public var peers: [PersistedPeer] = []
    public var networks: [PersistedNetwork] = []

    public init() {}

    enum CodingKeys: String, CodingKey { case version, ports, peers, networks }

    /// Keys added after the first release are optional, so older files still load.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        version = try container.decode(Int.self, forKey: .version)
        ports = try container.decodeIfPresent([PersistedPort].self, forKey: .ports) ?? []
        peers = try container.decodeIfPresent([PersistedPeer].self, forKey: .peers) ?? []
        networks = try container.decodeIfPresent([PersistedNetwork].self, forKey: .networks) ?? []
    }
}

/// One network as configured, with its leases.
public struct PersistedNetwork: Codable, Sendable, Equatable {
    public var name: String
    public var vni: UInt32
    public var subnet: String
    public var rangeFirst: String
    public var rangeLast: String
    public var gateway: String?
    public var dhcp: Bool
    public var leases: LeaseTable
}

/// Where `attach` put a port's interface.
public struct PersistedAttachment: Codable, Sendable, Equatable {
    /// How the user named the container: `netns`, `pid` or `docker`, and the name or number.
    public var containerKind: String
    public var containerValue: String
    /// The namespace as resolved at attach time: a name under /run/netns, or a pid.
    public var namespaceName: String?
    public var namespacePID: Int32?
    /// The namespace's identity then, so a restart can tell it is still the same namespace.
    public var namespaceDevice: UInt64
    public var namespaceInode: UInt64
    public var namespaceCookie: UInt64?
    public var ifname: String
    public var address: String?
    public var mac: String
    public var gateway: String?
}

/// Where a user moved an `add-port` port's interface (MovedPorts.swift).
public struct PersistedMove: Codable, Sendable, Equatable {
    /// Its name there.
    public var ifname: String
    /// How to get into its namespace: a name under /run/netns, a pid, or another path (a Docker sandbox); all nil
    /// when nothing led there.
    public var namespaceName: String?
    public var namespacePID: Int32?
    public var namespacePath: String?
    /// The namespace's identity; nil when the interface was only renamed in the switch's own namespace.
    public var namespaceDevice: UInt64?
    public var namespaceInode: UInt64?
    public var namespaceCookie: UInt64?

    public init(ifname: String) {
        self.ifname = ifname
    }
}

/// One port as configured.
public struct PersistedPort: Codable, Sendable, Equatable {
    public var name: String
    public var vni: UInt32
    public var mtu: Int
    /// For ports made by `attach`: the network and where the interface lives.
    public var network: String?
    public var attachment: PersistedAttachment?
    /// For `add-port` ports a user moved into another namespace: where the interface was last seen.
    public var moved: PersistedMove?

    public init(
        name: String, vni: UInt32, mtu: Int, network: String? = nil, attachment: PersistedAttachment? = nil,
        moved: PersistedMove? = nil
    ) {
        self.name = name
        self.vni = vni
        self.mtu = mtu
        self.network = network
        self.attachment = attachment
        self.moved = moved
    }
}

/// One peer as configured.
public struct PersistedPeer: Codable, Sendable, Equatable {
    public var ip: String
    /// `vxlan` or `gre`.
    public var encap: String
    /// For GRE: `vni`, `nvgre` or `none`.
    public var greKey: String?
    public var vnis: [UInt32]

    public init(ip: String, encap: String, greKey: String?, vnis: [UInt32]) {
        self.ip = ip
        self.encap = encap
        self.greKey = greKey
        self.vnis = vnis
    }
}

/// Reads and atomically writes the state file.
public struct StateStore: Sendable {
    /// Where vxswitchd keeps its state unless told otherwise.
    public static let defaultPath = "/var/lib/vxswitch/state.json"

    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// The saved state, or an empty one when there is no file yet.
    /// - Throws: `ControlError` with the path and what is wrong when the file exists but cannot be read or parsed
    ///   (the daemon refuses to start rather than silently forget a configuration).
    public func load() throws(ControlError) -> PersistedState {
        guard FileManager.default.fileExists(atPath: path) else { return PersistedState() }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ControlError(.systemError, "cannot read the state file \(path): \(error.localizedDescription)")
        }
        let state: PersistedState
        do {
            state = try JSONDecoder().decode(PersistedState.self, from: data)
        } catch {
            throw ControlError(
                .invalidArgument,
                "the state file \(path) is not valid vxswitch state (\(error)); move it away to start empty")
        }
        guard state.version <= PersistedState.currentVersion else {
            throw ControlError(
                .invalidArgument,
                "the state file \(path) has format version \(state.version); this vxswitchd reads up to \(PersistedState.currentVersion)")
        }
        return state
    }

    /// Replaces the file with `state`: temporary file, fsync, rename, fsync of the directory.
    public func save(_ state: PersistedState) throws(ControlError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data: Data
        do {
            data = try encoder.encode(state)
        } catch {
            throw ControlError(.internalError, "cannot encode the switch state: \(error)")
        }
        let directory = try Self.makeDirectory(containing: path)
        let temporary = "\(path).tmp.\(getpid())"
        try writeDurably(data, to: temporary)
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw ControlError(.systemError, "cannot replace the state file \(path): \(String(cString: strerror(code)))")
        }
        // The rename is durable only once the directory entry is.
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            fsync(directoryFD)
            close(directoryFD)
        }
    }

    /// Creates the directory `statePath` lives in when it is missing (the first save, or the lock at start).
    /// - Returns: that directory, "." for a bare file name.
    static func makeDirectory(containing statePath: String) throws(ControlError) -> String {
        let parent = (statePath as NSString).deletingLastPathComponent
        let directory = parent.isEmpty ? "." : parent
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ControlError(.systemError, "cannot create \(directory) for the state file: \(error.localizedDescription)")
        }
        return directory
    }

    private func writeDurably(_ data: Data, to file: String) throws(ControlError) {
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw ControlError(.systemError, "cannot write \(file): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var failure: Int32 = 0
        data.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                offset += written
            }
        }
        if failure == 0, fsync(fd) != 0 { failure = errno }
        if failure != 0 {
            unlink(file)
            throw ControlError(.systemError, "cannot write \(file): \(String(cString: strerror(failure)))")
        }
    }
}

/// One switch per state file. Two vxswitchd started with the same `--state` (the default, say, in two network
/// namespaces of one host) would each overwrite the other's saves, and the next start would restore one switch's
/// ports and peers into the other. The lock is `flock(2)` on `<state>.lock`, which the kernel drops when the
/// holder exits, even on `kill -9`, so a stale lock file never keeps a switch from starting.
public final class StateFileLock: Sendable {
    private let descriptor: Int32

    private init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)  // drops the flock
    }

    /// Takes the lock for `statePath`, creating its directory and lock file if needed, and writes this process's
    /// pid into the lock file so that a refused switch can say who holds it.
    /// - Throws: `ControlError` naming the state file and the holder's pid when another process holds the lock.
    public static func acquire(statePath: String) throws(ControlError) -> StateFileLock {
        let path = statePath + ".lock"
        _ = try StateStore.makeDirectory(containing: statePath)
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw ControlError(.systemError, "cannot open the state lock \(path): \(String(cString: strerror(errno)))")
        }
        var locked: Int32
        repeat { locked = flock(descriptor, LOCK_EX | LOCK_NB) } while locked != 0 && errno == EINTR
        guard locked == 0 else {
            let code = errno
            let holder = readHolder(descriptor)
            close(descriptor)
            guard code == EWOULDBLOCK else {
                throw ControlError(.systemError, "cannot lock \(path): \(String(cString: strerror(code)))")
            }
            throw ControlError(
                .systemError,
                "the state file \(statePath) is in use by another vxswitchd\(holder.map { " (pid \($0))" } ?? ""); "
                    + "give each switch its own --state, or --state none")
        }
        let pid = Array("\(getpid())\n".utf8)
        if ftruncate(descriptor, 0) == 0 {
            _ = pid.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        }
        return StateFileLock(descriptor: descriptor)
    }

    /// The pid the holder wrote, if the file holds one.
    private static func readHolder(_ descriptor: Int32) -> Int32? {
        var bytes = [UInt8](repeating: 0, count: 16)
        let count = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        let text = String(decoding: bytes[..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return Int32(text)
    }
}
