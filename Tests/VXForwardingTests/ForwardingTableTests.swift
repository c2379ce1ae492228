// Single-threaded behaviour of the forwarding table: learning, moves, static entries, refresh, aging, flushes,
// capacity, duplicate resolution.

import Synchronization
import Testing
import VXPacket

@testable import VXForwarding

@Suite("ForwardingTable")
struct ForwardingTableTests {
    @Test func learnedEntryIsFoundOnlyInItsDomain() {
        let table = ForwardingTable(capacity: 1_000)
        #expect(table.learn(key(1, 1), destination: port(3)) == .learned)
        #expect(table.lookup(key(1, 1)) == port(3))
        #expect(table.lookup(key(2, 1)) == nil)
        #expect(table.lookup(key(1, 2)) == nil)
        #expect(table.count == 1)
        #expect(table.counters.learned == 1)
    }

    @Test func slotCountIsTheNextPowerOfTwoAtOrAboveTwiceTheCapacity() {
        #expect(ForwardingTable(capacity: 65_536).slotCount == 131_072)
        #expect(ForwardingTable(capacity: 1_000).slotCount == 2_048)
        #expect(ForwardingTable(capacity: 1).slotCount == 16)
    }

    @Test func learningAKnownMACElsewhereMovesItInPlace() {
        let table = ForwardingTable(capacity: 1_000)
        table.learn(key(1, 1), destination: port(3))
        #expect(table.learn(key(1, 1), destination: peer(9)) == .moved)
        #expect(table.lookup(key(1, 1)) == peer(9))
        #expect(table.count == 1)
        #expect(table.counters.moved == 1)
        #expect(table.entries().count == 1)
    }

    @Test func staticEntryNeverMovesNorAges() {
        let table = ForwardingTable(capacity: 1_000, agingTicks: 5)
        #expect(table.addStatic(key(1, 1), destination: port(4)))
        #expect(table.learn(key(1, 1), destination: port(5)) == .refusedStatic)
        #expect(table.learn(key(1, 1), destination: port(4)) == .unchanged)
        #expect(table.lookup(key(1, 1)) == port(4))
        for _ in 0..<20 {
            table.advanceClock()
            table.expire()
        }
        #expect(table.lookup(key(1, 1)) == port(4))
        #expect(table.flushAll() == 0)
        #expect(table.flush(port: PortID(index: 4, generation: 0)) == 0)
        let c = table.counters
        #expect(c.refusedStatic == 1 && c.aged == 0 && c.moved == 0 && c.staticInserted == 1)
        #expect(table.entries() == [ForwardingEntry(key: key(1, 1), destination: port(4), age: 0, isStatic: true)])
    }

    @Test func addStaticOverridesADynamicEntryAndRemoveStaticDeletesIt() {
        let table = ForwardingTable(capacity: 1_000)
        table.learn(key(1, 1), destination: port(1))
        #expect(table.addStatic(key(1, 1), destination: port(2)))
        #expect(table.lookup(key(1, 1)) == port(2))
        #expect(table.count == 1)
        #expect(!table.removeStatic(key(1, 2)))
        #expect(table.removeStatic(key(1, 1)))
        #expect(table.lookup(key(1, 1)) == nil)
        #expect(countersAddUp(table.counters))
        // A dynamic entry is not removed by removeStatic.
        table.learn(key(1, 3), destination: port(1))
        #expect(!table.removeStatic(key(1, 3)))
        #expect(table.lookup(key(1, 3)) == port(1))
    }

    @Test func refreshingACorrectEntryWritesNothingWithinATick() throws {
        let table = ForwardingTable(capacity: 1_000)
        table.learn(key(1, 1), destination: port(3))
        let before = try #require(table.rawValueWord(for: key(1, 1)))
        for _ in 0..<100 {
            #expect(table.learn(key(1, 1), destination: port(3)) == .unchanged)
        }
        #expect(table.rawValueWord(for: key(1, 1)) == before)
        #expect(table.counters.refreshed == 0)

        table.advanceClock()
        #expect(table.learn(key(1, 1), destination: port(3)) == .refreshed)
        #expect(table.learn(key(1, 1), destination: port(3)) == .unchanged)
        let after = try #require(table.rawValueWord(for: key(1, 1)))
        #expect(EntryWord(raw: after).tick == EntryWord(raw: before).tick &+ 1)
        #expect(table.counters.refreshed == 1)
    }

    @Test func agingRemovesOnlyEntriesNotSeenForTheAgingTime() {
        let table = ForwardingTable(capacity: 1_000, agingTicks: 10)
        table.learn(key(1, 1), destination: port(1))
        table.learn(key(1, 2), destination: port(2))
        for _ in 0..<5 { table.advanceClock() }
        table.learn(key(1, 2), destination: port(2))  // refreshed at tick 5
        for _ in 0..<4 { table.advanceClock() }
        #expect(table.expire() == 0)  // tick 9: ages 9 and 4
        table.advanceClock()
        #expect(table.expire() == 1)  // tick 10: key 1 is 10 ticks old
        #expect(table.lookup(key(1, 1)) == nil)
        #expect(table.lookup(key(1, 2)) == port(2))
        #expect(table.entries().map(\.age) == [5])
        for _ in 0..<5 { table.advanceClock() }
        #expect(table.expire() == 1)
        #expect(table.count == 0)
        #expect(table.counters.aged == 2)
        #expect(countersAddUp(table.counters))
    }

    @Test func agingWorksAcrossTheWrapOfTheSixteenBitTick() {
        let table = ForwardingTable(capacity: 100, agingTicks: 300)
        for _ in 0..<65_500 { table.advanceClock() }
        table.learn(key(1, 1), destination: port(1))
        for _ in 0..<299 {
            table.advanceClock()
            table.expire()
        }
        #expect(table.lookup(key(1, 1)) == port(1))  // 65,799: wrapped, 299 ticks old
        table.advanceClock()
        #expect(table.expire() == 1)
    }

    @Test func flushByPortRemovesEveryGenerationOfThatIndexAndNothingElse() {
        let table = ForwardingTable(capacity: 1_000)
        table.learn(key(1, 1), destination: port(1))
        table.learn(key(1, 2), destination: port(1, generation: 1))
        table.learn(key(2, 3), destination: port(1))
        table.learn(key(1, 4), destination: port(2))
        table.learn(key(1, 5), destination: peer(1))
        table.addStatic(key(1, 6), destination: port(1))
        #expect(table.flush(port: PortID(index: 1, generation: 1)) == 3)
        #expect(Set(table.entries().map(\.key)) == [key(1, 4), key(1, 5), key(1, 6)])
        #expect(table.flush(port: PortID(index: 1, generation: 0), includingStatic: true) == 1)
        #expect(table.counters.flushed == 4)
        #expect(countersAddUp(table.counters))
    }

    @Test func flushByPeerCanBeLimitedToOneDomain() {
        let table = ForwardingTable(capacity: 1_000)
        table.learn(key(1, 1), destination: peer(7))
        table.learn(key(2, 2), destination: peer(7))
        table.learn(key(2, 3), destination: port(7))
        #expect(table.flush(peer: PeerID(index: 7, generation: 0), in: bd(2)) == 1)
        #expect(table.lookup(key(1, 1)) == peer(7))
        #expect(table.lookup(key(2, 2)) == nil)
        #expect(table.lookup(key(2, 3)) == port(7))
        #expect(table.flush(peer: PeerID(index: 7, generation: 0)) == 1)
        #expect(table.lookup(key(1, 1)) == nil)
    }

    @Test func flushByDomainLeavesOtherDomainsAlone() {
        let table = ForwardingTable(capacity: 1_000)
        for n in 0..<50 as Range<UInt64> {
            table.learn(key(1, n), destination: port(1))
            table.learn(key(2, n), destination: port(1))
        }
        #expect(table.flush(domain: bd(1)) == 50)
        #expect(table.entries().allSatisfy { $0.key.domain == bd(2) })
        #expect(table.count == 50)
    }

    @Test func capacityBoundRefusesAndCountsLearnsBeyondIt() {
        let table = ForwardingTable(capacity: 100)
        var results: [LearnResult: Int] = [:]
        for n in 0..<150 as Range<UInt64> {
            results[table.learn(key(1, n), destination: port(1)), default: 0] += 1
        }
        #expect(results[.learned] == 100)
        #expect(results[.refusedFull] == 50)
        #expect(table.count == 100)
        let c = table.counters
        #expect(c.refusedFull + c.refusedWindowFull == 50)
        // Room again after a flush: tombstones are reused.
        #expect(table.flush(port: PortID(index: 1, generation: 0)) == 100)
        #expect(table.learn(key(1, 1_000), destination: port(1)) == .learned)
    }

    @Test func tombstonesAreReusedSoChurnNeverFillsTheTable() {
        let table = ForwardingTable(capacity: 64)
        for round in 0..<200 as Range<UInt64> {
            for n in 0..<64 as Range<UInt64> {
                #expect(table.learn(key(1, round * 64 + n), destination: port(1)) == .learned)
            }
            #expect(table.flushAll() == 64)
        }
        #expect(table.counters.refusedWindowFull == 0)
    }

    @Test func aMillionEntryTableFillsToCapacity() {
        let capacity = 1_000_000
        let table = ForwardingTable(capacity: capacity)
        #expect(table.slotCount == 2_097_152)
        var learned = 0
        for n in 0..<UInt64(capacity) {
            if table.learn(MACKey(domain: bd(UInt16(n % 7 + 1)), mac: host(n)), destination: port(UInt16(n % 1000)))
                == .learned
            {
                learned += 1
            }
        }
        let c = table.counters
        // Probe windows of 16 slots at just under 50% load refuse about 2 keys in 10^5; allow 1 in 10^4.
        #expect(c.refusedWindowFull <= 100)
        #expect(learned + Int(c.refusedWindowFull) == capacity)
        #expect(table.count == learned)
        // Top up to the bound with fresh keys, then one more is refused for capacity.
        var extra: UInt64 = UInt64(capacity)
        while table.count < capacity {
            table.learn(MACKey(domain: bd(1), mac: host(extra)), destination: port(1))
            extra += 1
        }
        #expect(table.learn(MACKey(domain: bd(1), mac: host(extra)), destination: port(1)) == .refusedFull)
        #expect(table.counters.refusedFull == 1)
        var found = 0
        for n in stride(from: 0, to: UInt64(capacity), by: 97) {
            if table.lookup(MACKey(domain: bd(UInt16(n % 7 + 1)), mac: host(n))) == port(UInt16(n % 1000)) {
                found += 1
            }
        }
        #expect(found >= (capacity / 97) - Int(c.refusedWindowFull))
    }

    @Test func entriesReportKeyDestinationAgeAndStaticFlag() {
        let table = ForwardingTable(capacity: 100)
        table.learn(key(1, 1), destination: peer(2))
        table.advanceClock()
        table.advanceClock()
        table.addStatic(key(3, 4), destination: port(5))
        let entries = Set(table.entries())
        #expect(
            entries == [
                ForwardingEntry(key: key(1, 1), destination: peer(2), age: 2, isStatic: false),
                ForwardingEntry(key: key(3, 4), destination: port(5), age: 0, isStatic: true),
            ]
        )
    }

    /// White box: plants a second copy of a key, as two racing learners would, and checks the resolution rule.
    @Test(arguments: [true, false])
    func concurrentInsertDuplicateIsRemovedKeepingTheEarlierCopy(resolverOwnsTheEarlierCopy: Bool) {
        let table = ForwardingTable(capacity: 100)
        let k = key(1, 42)
        let hash = forwardingHash(k.raw)
        let tag = forwardingTag(hash: hash)
        #expect(table.learn(k, destination: port(1)) == .learned)
        let first = table.slot(hash: hash, position: 0)
        let second = table.slot(hash: hash, position: 1)
        #expect(table.keyWord(first).pointee.load(ordering: .relaxed) == k.raw)
        // The racing learner's copy at position 1, published, counted like a learn.
        table.keyWord(second).pointee.store(k.raw, ordering: .relaxed)
        let other = EntryWord(destinationBits: port(2).packed, tick: 0, isStatic: false, tag: tag)
        table.valueWord(second).pointee.store(other.raw, ordering: .relaxed)
        table.meta[ForwardingTable.Meta.entries.offset].wrappingAdd(1, ordering: .relaxed)
        table.meta[ForwardingTable.Meta.learned.offset].wrappingAdd(1, ordering: .relaxed)

        if resolverOwnsTheEarlierCopy {
            table.resolveDuplicates(k.raw, hash: hash, ownSlot: first, ownPosition: 0)
        } else {
            table.resolveDuplicates(k.raw, hash: hash, ownSlot: second, ownPosition: 1)
        }
        #expect(table.entries().map(\.key) == [k])
        #expect(table.lookup(k) == port(1))
        #expect(table.keyWord(second).pointee.load(ordering: .relaxed) == ForwardingTable.tombstoneKey)
        #expect(table.counters.duplicatesRemoved == 1)
        #expect(countersAddUp(table.counters))
    }

    @Test func readerTreatsAValueWithTheWrongTagAsAMiss() {
        let table = ForwardingTable(capacity: 100)
        let k = key(1, 1)
        table.learn(k, destination: port(1))
        let slot = table.probe(k.raw, hash: forwardingHash(k.raw)).slot
        // What a reader sees mid-ABA: its key back in the slot, another key's value beside it.
        let foreign = EntryWord(
            destinationBits: port(9).packed,
            tick: 0,
            isStatic: false,
            tag: forwardingTag(hash: forwardingHash(k.raw)) &+ 1
        )
        table.valueWord(slot).pointee.store(foreign.raw, ordering: .relaxed)
        #expect(table.lookup(k) == nil)
        #expect(table.learn(k, destination: port(1)) == .busy)
        #expect(table.entries().isEmpty)
        // Deleters skip it too rather than delete a value they cannot vouch for.
        #expect(table.flushAll() == 0)
    }

    @Test func programmerErrorsTrap() async {
        await #expect(processExitsWith: .failure) { _ = ForwardingTable(capacity: 0) }
        await #expect(processExitsWith: .failure) { _ = MACKey(raw: 0x0000_0200_0000_0001) }
        await #expect(processExitsWith: .failure) { _ = BridgeDomain(uncheckedNonZero: 0) }
    }
}
