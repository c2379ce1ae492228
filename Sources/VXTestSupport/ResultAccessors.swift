// Optional views of a `Result`, for `#expect(parse(bytes).failureValue == .truncated)` and
// `try #require(parse(bytes).successValue)` in tests of the decoders, which return `Result` instead of throwing.

extension Result {
    /// The error, or nil on success.
    public var failureValue: Failure? {
        if case .failure(let failure) = self { return failure }
        return nil
    }

    /// The value, or nil on failure.
    public var successValue: Success? {
        if case .success(let success) = self { return success }
        return nil
    }
}
