// NamespaceSearch: from a namespace's identity back to a path that leads there (MovedPorts.swift needs one to reopen
// a TAP a user moved into a container). The first test needs nothing special; the second makes a namespace (root).

import Foundation
import Testing
import VXTestSupport
@testable import VXNetlink

@Suite("finding a way back into a namespace by its identity")
struct NamespaceSearchTests {
    @Test func theOwnNamespaceIsFoundThroughAProcessAndAnUnknownIdentityIsNot() throws {
        let own = try NamespaceSearch.currentIdentity().get()
        // No names or bind mounts to search: only /proc can lead there.
        let search = NamespaceSearch(namedDirectory: "/nonexistent-vx", bindMountDirectories: [])
        let locator = try #require(search.locator(for: own))
        guard case .pid = locator else { Issue.record("expected a pid, got \(locator)"); return }
        #expect(try NamespaceIdentity.of(path: locator.path).get() == own)
        #expect(search.locator(for: NamespaceIdentity(device: own.device, inode: 1)) == nil)
    }

    @Test(.disabled(if: netlinkSystemUnavailable != nil, "\(netlinkSystemUnavailable ?? "")"))
    func aNamedNamespaceIsFoundByItsNameBeforeAnyProcess() throws {
        let scratch = try ScratchNamespace("search")
        defer { scratch.delete() }
        let identity = try NamespaceIdentity.of(path: "/run/netns/\(scratch.name)").get()
        #expect(NamespaceSearch().locator(for: identity) == .name(scratch.name))
        // Through a bind mount elsewhere (Docker's sandboxes): found as a path.
        let elsewhere = NamespaceSearch(namedDirectory: "/nonexistent-vx", bindMountDirectories: ["/run/netns"])
        #expect(elsewhere.locator(for: identity) == .path("/run/netns/\(scratch.name)"))
    }
}
