// Blocking stream I/O built from the wrappers in Posix.swift: writing a whole buffer, and waiting for input until
// a deadline. These loop, so they sit outside the syscall funnel; every syscall they make still goes through it.

import SystemPackage

extension Posix {
    /// Sends all of `bytes`, looping over short sends, and stops at the first failure.
    /// - Returns: that failure's errno: EAGAIN when the socket's SO_SNDTIMEO passed while the peer was not
    ///   reading, EPIPE or ECONNRESET when the peer went away.
    package static func sendAll(_ fd: FileDescriptor, _ bytes: [UInt8]) -> Result<Void, Errno> {
        var offset = 0
        while offset < bytes.count {
            let result = bytes.withUnsafeBytes { raw in
                send(fd, UnsafeRawBufferPointer(rebasing: raw[offset...]))
            }
            switch result {
            case .success(let sent): offset += sent
            case .failure(let errno): return .failure(errno)
            }
        }
        return .success(())
    }

    /// Waits until `fd` has something to read (data, end of file, or an error for `recv` to report) or until
    /// `deadline`, whichever comes first. A deadline already passed wins even over data already waiting.
    /// - Returns: true when `fd` is ready, false once `deadline` has passed.
    package static func waitReadable(
        _ fd: FileDescriptor,
        until deadline: ContinuousClock.Instant
    ) -> Result<Bool, Errno> {
        while true {
            let milliseconds = pollMilliseconds(until: deadline)
            if milliseconds == 0 { return .success(false) }
            switch poll([fd], timeoutMilliseconds: milliseconds) {
            case .success(let ready) where ready[0] != 0: return .success(true)
            case .success: continue  // poll timed out: the check above now says the deadline has passed
            case .failure(let errno): return .failure(errno)
            }
        }
    }

    /// Milliseconds for `poll` until `deadline`, rounded up so a wait never ends just short of it; 0 once passed.
    static func pollMilliseconds(until deadline: ContinuousClock.Instant) -> Int32 {
        let remaining = ContinuousClock.now.duration(to: deadline)
        guard remaining > .zero else { return 0 }
        let (seconds, attoseconds) = remaining.components
        let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: milliseconds)
    }
}
