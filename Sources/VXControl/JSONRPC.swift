// JSON-RPC 2.0 envelopes (https://www.jsonrpc.org/specification), one per line.
//
//   request       {"jsonrpc":"2.0","id":1,"method":"add-port","params":{"name":"tap0","vni":100}}
//   result        {"id":1,"jsonrpc":"2.0","result":{"mtu":1450,"name":"tap0","vni":100}}
//   error         {"error":{"code":-32001,"message":"no port named \"tap9\""},"id":2,"jsonrpc":"2.0"}
//
// A request without "id" is a notification: it is executed and gets no response. A JSON array of requests is a
// batch and gets an array of responses (none if all were notifications).

/// A request's `id`: a string, an integer, or `null` (allowed, but then responses cannot be told apart).
public enum RequestID: Hashable, Sendable, Codable, CustomStringConvertible {
    case number(Int64)
    case string(String)
    case null

    /// Reads an `id` member; nil when the value is not a string, an integer or null.
    /// - Parameter json: the member's value.
    public init?(json: JSONValue) {
        switch json {
        case .integer(let value): self = .number(value)
        case .string(let value): self = .string(value)
        case .null: self = .null
        default: return nil
        }
    }

    /// Decodes an `id`.
    /// - Parameter decoder: the decoder positioned at the value.
    public init(from decoder: any Decoder) throws {
        let json = try JSONValue(from: decoder)
        guard let id = RequestID(json: json) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "id must be a string, an integer or null")
            )
        }
        self = id
    }

    /// Encodes the `id`.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .null: try container.encodeNil()
        }
    }

    public var description: String {
        switch self {
        case .number(let value): String(value)
        case .string(let value): value.debugDescription
        case .null: "null"
        }
    }
}

/// A JSON-RPC request as a client sends it.
public struct ControlRequest: Codable, Sendable, Hashable {
    /// The request's id, or nil for a notification (no response).
    public var id: RequestID?
    /// The method name.
    public var method: String
    /// The params object.
    public var params: JSONValue

    /// - Parameters:
    ///   - id: the id, or nil for a notification.
    ///   - method: the method name.
    ///   - params: the params object.
    public init(id: RequestID?, method: String, params: JSONValue) {
        self.id = id
        self.method = method
        self.params = params
    }

    /// Builds a request for a catalog method.
    /// - Parameters:
    ///   - method: the method.
    ///   - params: its typed params.
    ///   - id: the request id.
    public init<M: ControlMethod>(_ method: M.Type, _ params: M.Params, id: RequestID) throws(ControlError) {
        self.init(id: id, method: M.name, params: try ControlJSON.value(of: params))
    }

    private enum CodingKeys: String, CodingKey {
        case jsonrpc, id, method, params
    }

    /// Decodes a request; use `ControlDispatcher` on the server, which reports each defect precisely.
    /// - Parameter decoder: the decoder positioned at the request object.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.id = try container.decodeIfPresent(RequestID.self, forKey: .id)
        if container.contains(.id), self.id == nil { self.id = .null }
        self.method = try container.decode(String.self, forKey: .method)
        self.params = try container.decodeIfPresent(JSONValue.self, forKey: .params) ?? .object([:])
    }

    /// Encodes the request with `"jsonrpc": "2.0"`.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode("2.0", forKey: .jsonrpc)
        try container.encodeIfPresent(id, forKey: .id)
        try container.encode(method, forKey: .method)
        try container.encode(params, forKey: .params)
    }
}

/// A JSON-RPC response: the request's id with either a result or an error.
public struct ControlResponse: Codable, Sendable {
    /// The id of the request answered; `null` when the request could not be read.
    public var id: RequestID
    /// The result, or the error.
    public var outcome: Result<JSONValue, ControlError>

    /// - Parameters:
    ///   - id: the request's id.
    ///   - outcome: the result or the error.
    public init(id: RequestID, outcome: Result<JSONValue, ControlError>) {
        self.id = id
        self.outcome = outcome
    }

    private enum CodingKeys: String, CodingKey {
        case jsonrpc, id, result, error
    }

    private enum ErrorKeys: String, CodingKey {
        case code, message, data
    }

    private enum DataKeys: String, CodingKey {
        case cause
    }

    /// Decodes a response; an `error` member becomes a `ControlError` with a `RemoteCause`.
    /// - Parameter decoder: the decoder positioned at the response object.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.id = try container.decodeIfPresent(RequestID.self, forKey: .id) ?? .null
        if container.contains(.error) {
            let error = try container.nestedContainer(keyedBy: ErrorKeys.self, forKey: .error)
            var cause: ControlError.RemoteCause?
            if let data = try? error.nestedContainer(keyedBy: DataKeys.self, forKey: .data),
                let text = try data.decodeIfPresent(String.self, forKey: .cause)
            {
                cause = ControlError.RemoteCause(text)
            }
            self.outcome = .failure(
                ControlError(
                    ControlError.Code(rawValue: try error.decode(Int.self, forKey: .code)),
                    try error.decode(String.self, forKey: .message),
                    cause: cause
                )
            )
        } else {
            self.outcome = .success(try container.decode(JSONValue.self, forKey: .result))
        }
    }

    /// Encodes the response; an error's cause is sent as `data.cause` text.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode("2.0", forKey: .jsonrpc)
        try container.encode(id, forKey: .id)
        switch outcome {
        case .success(let result):
            try container.encode(result, forKey: .result)
        case .failure(let error):
            var object = container.nestedContainer(keyedBy: ErrorKeys.self, forKey: .error)
            try object.encode(error.code.rawValue, forKey: .code)
            try object.encode(error.message, forKey: .message)
            if let cause = error.cause {
                var data = object.nestedContainer(keyedBy: DataKeys.self, forKey: .data)
                try data.encode("\(cause)", forKey: .cause)
            }
        }
    }
}
