import Foundation

/// The JSON settings every control message uses, and conversions between `JSONValue` and typed values.
///
/// Output is compact (one message per line: `JSONEncoder` without `.prettyPrinted` never emits a raw newline, a
/// newline inside a string is escaped as `\n`) and keys are sorted, so equal messages are equal bytes.
public enum ControlJSON {
    /// Encodes `value` as one line of compact JSON, without the trailing newline.
    /// - Parameter value: the message.
    /// - Returns: the UTF-8 bytes.
    public static func encodeLine(_ value: some Encodable) throws(ControlError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(value))
        } catch {
            throw ControlError(.internalError, "cannot encode a control message", cause: error)
        }
    }

    /// Encodes `value` as indented JSON for people and `jq` (`vxctl --json`).
    /// - Parameter value: the value to print.
    /// - Returns: the text, without a trailing newline.
    public static func encodePretty(_ value: some Encodable) throws(ControlError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        do {
            return String(decoding: try encoder.encode(value), as: UTF8.self)
        } catch {
            throw ControlError(.internalError, "cannot encode JSON", cause: error)
        }
    }

    /// Converts a typed value to a `JSONValue`.
    /// - Parameter value: the value.
    /// - Returns: its JSON tree.
    public static func value(of value: some Encodable) throws(ControlError) -> JSONValue {
        let bytes = try encodeLine(value)
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch {
            throw ControlError(.internalError, "cannot re-read an encoded control message", cause: error)
        }
    }

    /// Decodes a typed value from a `JSONValue`, turning decoding failures into `invalidParams` errors that name
    /// the offending member (`missing parameter "vni"`). A `ControlError` thrown by a validating initializer
    /// passes through unchanged.
    /// - Parameters:
    ///   - type: the type to decode.
    ///   - json: the JSON tree.
    ///   - code: the code for decoding failures (`invalidParams` for requests, `protocolError` for responses).
    /// - Returns: the decoded value.
    public static func decode<T: Decodable>(
        _ type: T.Type,
        from json: JSONValue,
        failureCode code: ControlError.Code = .invalidParams
    ) throws(ControlError) -> T {
        let bytes = try encodeLine(json)
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch let error as ControlError {
            // A validating initializer's error; in a response it means the daemon sent a bad value.
            guard code != .invalidParams, error.code == .invalidParams else { throw error }
            throw ControlError(code, error.message)
        } catch let error as DecodingError {
            throw ControlError(code, describe(error))
        } catch {
            throw ControlError(code, "cannot decode \(T.self)", cause: error)
        }
    }

    /// Parses one line into a `JSONValue`.
    /// - Parameter line: the line's bytes, without the newline.
    /// - Returns: the JSON tree.
    /// - Throws: `parseError` when the bytes are not JSON.
    public static func parse(_ line: some Collection<UInt8>) throws(ControlError) -> JSONValue {
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(line))
        } catch {
            // Foundation's parser says only "The given data was not valid JSON." (no position), so quote the start
            // of the line to show which message it was.
            let shown = String(decoding: line.prefix(60), as: UTF8.self)
            throw ControlError(.parseError, "the line is not valid JSON: \(shown)\(line.count > 60 ? "..." : "")")
        }
    }

    /// A sentence for a decoding failure that names the member by its path, e.g. `parameter "vni" must be an
    /// integer`.
    /// - Parameter error: the decoding error.
    /// - Returns: the sentence.
    public static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, let context):
            return "missing parameter \"\(path(context.codingPath + [key]))\""
        case .typeMismatch(let type, let context):
            return "parameter \"\(path(context.codingPath))\" must be \(noun(for: type))"
        case .valueNotFound(let type, let context):
            return "parameter \"\(path(context.codingPath))\" must be \(noun(for: type)), not null"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return context.debugDescription }
            return "parameter \"\(path(context.codingPath))\": \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        var text = ""
        for key in keys {
            if let index = key.intValue {
                text += "[\(index)]"
            } else {
                text += text.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
        return text
    }

    private static func noun(for type: Any.Type) -> String {
        switch type {
        case is any BinaryInteger.Type: "an integer"
        case is any FloatingPoint.Type: "a number"
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is [Any].Type: "an array"
        case is [String: Any].Type: "an object"
        default: "\(type)"
        }
    }
}

/// A coding key built from any string, for checking which members an object has.
struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int?

    init(stringValue: String) {
        self.stringValue = stringValue
        self.intValue = nil
    }

    init(intValue: Int) {
        self.stringValue = String(intValue)
        self.intValue = intValue
    }
}

extension Decoder {
    /// Throws `invalidParams` naming the first member of the current object that is not in `accepted`, so a
    /// misspelt optional parameter (`"mut": 9000`) is reported instead of silently ignored.
    func rejectUnknownKeys<Key: CodingKey & CaseIterable>(_ keys: Key.Type) throws {
        let container = try self.container(keyedBy: AnyCodingKey.self)
        let accepted = Key.allCases.map(\.stringValue)
        for key in container.allKeys.sorted(by: { $0.stringValue < $1.stringValue })
        where !accepted.contains(key.stringValue) {
            let list = accepted.isEmpty ? "none" : accepted.joined(separator: ", ")
            throw ControlError.invalidParams("unknown parameter \"\(key.stringValue)\" (accepted: \(list))")
        }
    }
}
