// What a user may name a container by: its name, its full id, or a prefix of its id. Docker gives names out only
// if they match `/?[a-zA-Z0-9][a-zA-Z0-9_.-]+` (moby's `RestrictedNamePattern`), and ids are 64 lowercase hex
// digits, of which any prefix resolves when unique. Every id and id prefix also matches
// `[a-zA-Z0-9][a-zA-Z0-9_.-]*` (the `*` rather than `+` admits one-digit prefixes), so that one pattern is the check.
// Anything else cannot name a container, so it is refused before a byte is sent: no path traversal (`..`, `/`),
// no query (`?`), no header injection (CR, LF).
//
// VXControl's `ControlValidation.dockerContainer` checks attach and detach requests by the same rule (it cannot
// import this module); ContainerReferenceAgreementTests in VXDaemonTests keep the two in step.

/// A container name, id or id prefix that Docker could have given out, checked before it goes into a request path.
public struct ContainerReference: Hashable, Sendable, CustomStringConvertible {
    /// The longest reference accepted. Docker documents no limit on names; this one keeps the request line bounded
    /// and is far beyond any name Docker or Compose generates (a full id is 64 bytes).
    public static let maxLength = 1024

    /// The reference without the leading `/` that the engine puts before names (`/web` is accepted as `web`).
    public let value: String

    /// Checks a reference as a user typed it.
    /// - Parameter reference: a name (`web`, `/web`), a full id, or an id prefix.
    /// - Throws: `DockerError` with code `invalidReference` when it cannot name a Docker container.
    public init(_ reference: String) throws(DockerError) {
        // `docker inspect` shows names as `/web`; the engine adds that `/` to a bare name before looking it up,
        // so dropping it here names the same container and keeps `/` out of the request path.
        let trimmed = reference.hasPrefix("/") ? String(reference.dropFirst()) : reference
        let bytes = Array(trimmed.utf8)
        guard !bytes.isEmpty else {
            throw DockerError(.invalidReference, "invalid container reference \(Self.quoted(reference)): it is empty")
        }
        guard bytes.count <= Self.maxLength else {
            throw DockerError(
                .invalidReference,
                "invalid container reference: it is \(bytes.count) bytes long, more than \(Self.maxLength)"
            )
        }
        guard Self.isAlphanumeric(bytes[0]) else {
            throw DockerError(
                .invalidReference,
                "invalid container reference \(Self.quoted(reference)): it must start with a letter or a digit"
            )
        }
        if let bad = bytes.first(where: { !Self.isAllowed($0) }) {
            let what = bad >= 0x21 && bad <= 0x7E ? "\"\(Character(Unicode.Scalar(bad)))\"" : "byte \(bad)"
            throw DockerError(
                .invalidReference,
                "invalid container reference \(Self.quoted(reference)): it contains \(what); Docker names and ids "
                    + "use only letters, digits, \"_\", \".\" and \"-\""
            )
        }
        self.value = trimmed
    }

    /// The reference as a path segment, percent-encoded (RFC 3986 §2.1) for every byte that is not unreserved
    /// (§2.3). The check in `init` leaves only unreserved bytes, so today this is `value` itself; encoding anyway
    /// keeps the path well formed should the accepted set ever grow.
    public var pathSegment: String {
        Self.percentEncoded(value)
    }

    /// The reference, e.g. `web`.
    public var description: String { value }

    /// Percent-encodes every byte of `string`'s UTF-8 that is not an RFC 3986 unreserved character.
    static func percentEncoded(_ string: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(string.utf8.count)
        for byte in string.utf8 {
            if isAlphanumeric(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "~")
            {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default: false
        }
    }

    private static func isAllowed(_ byte: UInt8) -> Bool {
        isAlphanumeric(byte) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-")
    }

    /// The reference in quotes for a message, with control characters escaped so a stray newline cannot forge
    /// a second line of output.
    private static func quoted(_ reference: String) -> String {
        "\"" + reference.unicodeScalars.map { $0.escaped(asASCII: false) }.joined() + "\""
    }
}
