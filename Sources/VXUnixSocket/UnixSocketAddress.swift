// Linux with glibc only (Debian is our target).
import Glibc

/// A `sockaddr_un` for a filesystem path.
package struct UnixSocketAddress: Sendable {
    /// `sun_path` holds 108 bytes including the terminating NUL.
    package static let maxPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    private var storage: sockaddr_un

    /// Returns nil when `path` is empty, longer than `maxPathLength` bytes, or contains NUL.
    package init?(path: String) {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= UnixSocketAddress.maxPathLength, !bytes.contains(0) else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)  // the rest of sun_path is already zero
        }
        self.storage = address
    }

    /// Calls `body` with the address as a `sockaddr` pointer and its length, for `bind` and `connect`.
    package func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafeBytes(of: storage) { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
}
