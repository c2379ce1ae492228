/// Where vxswitchd listens and vxctl connects. Both programs resolve the path with `resolve(explicit:environment:)`
/// so they agree: an explicit `--control PATH` wins, then `$VXSWITCH_CONTROL`, then `/run/vxswitch/vxswitchd.sock`.
public enum ControlSocketPath {
    /// The path used when neither an option nor the environment names one.
    public static let defaultPath = "/run/vxswitch/vxswitchd.sock"

    /// The environment variable that overrides `defaultPath`.
    public static let environmentVariable = "VXSWITCH_CONTROL"

    /// Chooses the control socket path.
    /// - Parameters:
    ///   - explicit: the path given on the command line, if any.
    ///   - environment: the process environment (pass `ProcessInfo.processInfo.environment`).
    /// - Returns: `explicit`, else a non-empty `$VXSWITCH_CONTROL`, else `defaultPath`.
    public static func resolve(explicit: String? = nil, environment: [String: String]) -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let fromEnvironment = environment[environmentVariable], !fromEnvironment.isEmpty { return fromEnvironment }
        return defaultPath
    }
}
