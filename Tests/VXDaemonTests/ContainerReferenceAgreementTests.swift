// The control layer (ControlValidation.dockerContainer, checked when an attach or detach request is decoded) and
// the Docker client (VXDocker's ContainerReference, checked before the reference goes into a request path) state
// the same rule in two modules that cannot import each other. This table holds them to one answer: a reference
// the daemon would look up is never refused by the control validation, and the other way round.

import Testing
import VXControl
import VXDocker

@Suite("Docker container references: control validation and Docker client agree")
struct ContainerReferenceAgreementTests {
    static let rows: [(label: String, reference: String, accepted: Bool)] = [
        ("name", "web", true),
        ("name as docker inspect shows it", "/web", true),
        ("Compose name", "proj_web-1.x", true),
        ("full id", String(repeating: "0123456789abcdef", count: 4), true),
        ("one-digit id prefix", "7", true),
        ("255 bytes", "w" + String(repeating: "e", count: 254), true),
        ("1024 bytes", "w" + String(repeating: "e", count: 1023), true),
        ("1024 bytes after a leading /", "/w" + String(repeating: "e", count: 1023), true),
        ("1025 bytes", "w" + String(repeating: "e", count: 1024), false),
        ("empty", "", false),
        ("only /", "/", false),
        ("two leading /", "//web", false),
        ("..", "..", false),
        (".", ".", false),
        ("leading -", "-web", false),
        ("leading _", "_web", false),
        ("path", "a/b", false),
        ("query", "web?x", false),
        ("fragment", "web#x", false),
        ("percent", "web%2F", false),
        ("space", "my web", false),
        ("CR", "web\r", false),
        ("LF", "web\nHost: x", false),
        ("CRLF", "web\r\n", false),
        ("NUL", "web\0", false),
        ("non-ASCII", "wéb", false),
    ]

    @Test("both checks accept or refuse each row", arguments: rows)
    func agree(row: (label: String, reference: String, accepted: Bool)) {
        let control = Result { () throws(ControlError) in try ControlValidation.dockerContainer(row.reference) }
        let docker = Result { () throws(DockerError) in try VXDocker.ContainerReference(row.reference) }
        let controlAccepts = (try? control.get()) != nil
        let dockerAccepts = (try? docker.get()) != nil
        #expect(controlAccepts == row.accepted, "control validation, \(row.label): \(control)")
        #expect(dockerAccepts == row.accepted, "ContainerReference, \(row.label): \(docker)")
        // What the control layer passes on is what the Docker client would put in the request path.
        if let passedOn = try? control.get(), let reference = try? docker.get() {
            #expect(passedOn == reference.value, "\(row.label)")
        }
    }
}
