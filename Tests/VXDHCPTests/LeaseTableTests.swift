import Foundation
import Testing
import VXDHCP
import VXPacket

@Suite("LeaseTable")
struct LeaseTableTests {
    let now = LeaseInstant(seconds: 1_000)

    func table(_ first: UInt8 = 10, _ last: UInt8 = 20, excluding: [IPv4Address] = []) -> LeaseTable {
        try! LeaseTable(subnet: Net.subnet, range: Net.ip(first)...Net.ip(last), excluding: excluding)
    }

    @Test func rejectsUnusableSubnetsAndRanges() {
        #expect(throws: LeaseTableError.invalidSubnet(IPv4Subnet("10.0.0.0/31")!)) {
            try LeaseTable(
                subnet: IPv4Subnet("10.0.0.0/31")!,
                range: IPv4Address(10, 0, 0, 0)...IPv4Address(10, 0, 0, 1)
            )
        }
        #expect(throws: LeaseTableError.invalidRange(first: Net.ip(0), last: Net.ip(5))) {
            try LeaseTable(subnet: Net.subnet, range: Net.ip(0)...Net.ip(5))
        }
        #expect(throws: LeaseTableError.invalidRange(first: Net.ip(250), last: Net.ip(255))) {
            try LeaseTable(subnet: Net.subnet, range: Net.ip(250)...Net.ip(255))
        }
        #expect(
            (try? LeaseTable(
                subnet: IPv4Subnet("10.0.0.0/30")!,
                range: IPv4Address(10, 0, 0, 1)...IPv4Address(10, 0, 0, 2)
            )) != nil
        )
    }

    @Test func allocationIsLowestFreeFirstAndSkipsExclusions() {
        var t = table(excluding: [Net.ip(11)])
        #expect(t.allocate(for: .named("a"), now: now) == .success(Net.ip(10)))
        #expect(t.allocate(for: .named("b"), now: now) == .success(Net.ip(12)))
        #expect(t.allocate(for: .named("a"), now: now) == .success(Net.ip(10)), "idempotent per owner")
        #expect(t.lease(for: .named("b"))?.state == .static && t.lease(for: .named("b"))?.expires == nil)
    }

    @Test func exhaustionIsReported() {
        var t = table(10, 11)
        _ = t.allocate(for: .named("a"), now: now)
        _ = t.allocate(for: .named("b"), now: now)
        #expect(t.allocate(for: .named("c"), now: now) == .failure(.exhausted))
        #expect(t.nextFree(now: now) == nil)
    }

    @Test func reserveChecksTheAddress() {
        var t = table(excluding: [Net.gateway])
        #expect(t.reserve(Net.ip(15), for: .named("a"), now: now).failureValue == nil)
        #expect(t.reserve(Net.ip(15), for: .named("b"), now: now).failureValue == .inUse(Net.ip(15), by: .named("a")))
        #expect(t.reserve(Net.gateway, for: .named("b"), now: now).failureValue == .excluded(Net.gateway))
        #expect(
            t.reserve(Net.subnet.broadcast, for: .named("b"), now: now).failureValue
                == .outsideSubnet(Net.subnet.broadcast)
        )
        #expect(
            t.reserve(IPv4Address(10, 9, 9, 9), for: .named("b"), now: now).failureValue
                == .outsideSubnet(IPv4Address(10, 9, 9, 9))
        )
        // Outside the range but in the subnet: recorded, never allocated.
        #expect(t.reserve(Net.ip(200), for: .named("b"), now: now).failureValue == nil)
        #expect(t.lease(at: Net.ip(200))?.owner == .named("b"))
        // Reserving again for the same owner moves it.
        #expect(t.reserve(Net.ip(16), for: .named("a"), now: now).failureValue == nil)
        #expect(t.lease(at: Net.ip(15)) == nil && t.lease(for: .named("a"))?.address == Net.ip(16))
    }

    @Test func releaseForgetsTheRecordAndRevisionCountsChanges() {
        var t = table()
        let r0 = t.revision
        _ = t.allocate(for: .named("a"), now: now)
        #expect(t.revision > r0)
        let r1 = t.revision
        #expect(t.release(.named("nobody")) == nil)
        #expect(t.revision == r1)
        #expect(t.release(.named("a"))?.address == Net.ip(10))
        #expect(t.lease(at: Net.ip(10)) == nil && t.revision > r1)
        t.exclude(Net.ip(10))
        #expect(t.nextFree(now: now) == Net.ip(11))
        t.include(Net.ip(10))
        #expect(t.nextFree(now: now) == Net.ip(10))
    }

    @Test func whenFullTheRecordThatExpiredFirstIsReclaimed() {
        var server = Net.server(first: 100, last: 102)
        #expect(server.dora(TestClient(1), at: 3_000) == Net.ip(100))  // expires 6600
        #expect(server.dora(TestClient(2), at: 1_000) == Net.ip(101))  // expires 4600
        #expect(server.dora(TestClient(3), at: 2_000) == Net.ip(102))  // expires 5600
        #expect(server.leases.nextFree(now: LeaseInstant(seconds: 4_599)) == nil)
        #expect(server.leases.nextFree(now: LeaseInstant(seconds: 7_000)) == Net.ip(101))
        #expect(server.leases.allocate(for: .named("port"), now: LeaseInstant(seconds: 7_000)) == .success(Net.ip(101)))
        #expect(server.leases.lease(for: TestClient(2).owner) == nil, "the previous holder's memory is gone")
    }

    @Test func expireDropsStaleOffersAndQuarantinesButRemembersBoundLeases() {
        var server = Net.server(first: 100, last: 103)
        #expect(server.dora(TestClient(1), at: 1_000) == Net.ip(100))
        _ = server.handle(TestClient(2).discover(), at: 1_000)
        #expect(server.dora(TestClient(3), at: 1_000) == Net.ip(102))
        _ = server.handle(TestClient(3).decline(Net.ip(102)), at: 1_000)
        let removed = server.expireLeases(now: LeaseInstant(seconds: 10_000))
        #expect(removed.map(\.address) == [Net.ip(101), Net.ip(102)])
        #expect(server.leases.leases.map(\.address) == [Net.ip(100)])
        #expect(server.leases.lease(at: Net.ip(100))?.isActive(at: LeaseInstant(seconds: 10_000)) == false)
    }

    @Test func ownersRoundTripThroughText() {
        for owner: LeaseOwner in [
            .clientIdentifier([1, 2, 0xAB, 0xFF]), .hardwareAddress(MACAddress(2, 0, 0, 0, 0, 1)), .named("port:eth0"),
        ] {
            #expect(LeaseOwner(owner.description) == owner)
        }
        for bad in ["", "id:", "id:abc", "id:zz", "mac:01:02", "port:x"] {
            #expect(LeaseOwner(bad) == nil, "\(bad)")
        }
    }

    @Test func encodesToStableReadableJSON() throws {
        var t = table(10, 12, excluding: [Net.gateway])
        _ = t.reserve(Net.ip(11), for: .named("web"), now: now)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(t), as: UTF8.self)
        #expect(
            json
                == #"{"excluded":["10.20.0.1"],"first":"10.20.0.10","last":"10.20.0.12","leases":[{"address":"10.20.0.11","owner":"name:web","state":"static"}],"subnet":"10.20.0.0\/24"}"#
        )
        #expect(try JSONDecoder().decode(LeaseTable.self, from: Data(json.utf8)) == t)
    }

    @Test(arguments: [
        (
            "duplicate address",
            #"[{"address":"10.20.0.11","owner":"name:a","state":"static"},{"address":"10.20.0.11","owner":"name:b","state":"static"}]"#
        ),
        (
            "owner twice",
            #"[{"address":"10.20.0.11","owner":"name:a","state":"static"},{"address":"10.20.0.12","owner":"name:a","state":"static"}]"#
        ),
        ("static with expiry", #"[{"address":"10.20.0.11","owner":"name:a","state":"static","expires":5}]"#),
        ("bound without expiry", #"[{"address":"10.20.0.11","owner":"name:a","state":"bound"}]"#),
        ("outside subnet", #"[{"address":"10.21.0.11","owner":"name:a","state":"static"}]"#),
        ("bad owner", #"[{"address":"10.20.0.11","owner":"who","state":"static"}]"#),
        ("bad state", #"[{"address":"10.20.0.11","owner":"name:a","state":"lost"}]"#),
    ])
    func rejectsCorruptFiles(_ name: String, _ leases: String) {
        let json =
            #"{"excluded":[],"first":"10.20.0.10","last":"10.20.0.12","subnet":"10.20.0.0/24","leases":"# + leases + "}"
        #expect(throws: DecodingError.self, "\(name)") {
            try JSONDecoder().decode(LeaseTable.self, from: Data(json.utf8))
        }
    }

    @Test func rejectsABadRangeInAFile() {
        for (first, last) in [("10.20.0.12", "10.20.0.10"), ("10.20.0.0", "10.20.0.10"), ("10.20.0.1", "x")] {
            let json = #"{"excluded":[],"first":"\#(first)","last":"\#(last)","subnet":"10.20.0.0/24","leases":[]}"#
            #expect(throws: DecodingError.self) { try JSONDecoder().decode(LeaseTable.self, from: Data(json.utf8)) }
        }
    }
}
