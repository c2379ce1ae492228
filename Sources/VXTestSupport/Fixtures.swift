// Hex fixtures: frames made by the generators under tools/fixtures (scapy), one `.hex` file each, with the
// expectations a test checks written as `// @key value` comment lines. Test targets ship the files as resources
// (`resources: [.copy("Fixtures")]`) and pass their own `Bundle.module` in, since a library cannot see another
// target's bundle.

import Foundation

/// One fixture file: its bytes and the `// @key value` expectations stated in it.
public struct HexFixture: Sendable, CustomStringConvertible {
    /// The file name without `.hex`.
    public let name: String
    /// The bytes: every hex digit outside comment lines, as `[UInt8](hex:)` reads them.
    public let bytes: [UInt8]
    /// The `// @key value` lines: key to value (empty when the line has no value).
    public let expect: [String: String]

    public var description: String { name }

    public init(name: String, bytes: [UInt8], expect: [String: String]) {
        self.name = name
        self.bytes = bytes
        self.expect = expect
    }

    /// The `Fixtures` folder among `bundle`'s resources. Traps when it is missing: the test target is broken.
    public static func resourceDirectory(in bundle: Bundle, named folder: String = "Fixtures") -> URL {
        guard let url = bundle.url(forResource: folder, withExtension: nil) else {
            preconditionFailure("no \(folder) folder in \(bundle.bundlePath)")
        }
        return url
    }

    /// Loads `name.hex` from `directory`. Traps when the file cannot be read: the test target is broken.
    public static func load(_ name: String, from directory: URL) -> HexFixture {
        let text = try! String(contentsOf: directory.appendingPathComponent(name + ".hex"), encoding: .utf8)
        var expect: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("// @") {
            let parts = line.dropFirst(4).split(separator: " ", maxSplits: 1)
            expect[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return HexFixture(name: name, bytes: [UInt8](hex: text), expect: expect)
    }

    /// Every `.hex` file in `directory`, sorted by name; none when the folder cannot be listed.
    public static func loadAll(from directory: URL) -> [HexFixture] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return files.filter { $0.hasSuffix(".hex") }.sorted().map { load(String($0.dropLast(4)), from: directory) }
    }
}
