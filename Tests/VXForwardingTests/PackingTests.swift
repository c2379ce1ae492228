// Bit packing of keys, destinations and value words: layout assertions and property-based round trips.

import PropertyBased
import Testing
import VXPacket

@testable import VXForwarding

@Suite("Key and value packing")
struct PackingTests {
    @Test func macKeyIsOneWord() {
        #expect(MemoryLayout<MACKey>.size == 8)
        #expect(MemoryLayout<EntryWord>.size == 8)
    }

    @Test func macKeyPlacesDomainAboveTheMAC() {
        let k = MACKey(domain: bd(0x1234), mac: MACAddress(0x02, 0x11, 0x22, 0x33, 0x44, 0x55))
        #expect(k.raw == 0x1234_0211_2233_4455)
        #expect(k.domain == bd(0x1234))
        #expect(k.mac == MACAddress(0x02, 0x11, 0x22, 0x33, 0x44, 0x55))
    }

    @Test func macKeyRoundTripsEveryDomainAndAddress() async {
        await propertyCheck(count: 500, input: Gen.uint16(in: 1...UInt16.max), Gen.uint64(in: 0...0xFFFF_FFFF_FFFF)) {
            domain,
            mac in
            let k = MACKey(domain: bd(domain), mac: MACAddress(raw: mac))
            #expect(k.domain.rawValue == domain)
            #expect(k.mac.raw == mac)
            #expect(MACKey(raw: k.raw) == k)
            // Never collides with the empty (0) or tombstone (1) key words.
            #expect(k.raw > ForwardingTable.tombstoneKey)
        }
    }

    @Test func destinationPacksInto25Bits() async {
        await propertyCheck(count: 500, input: Gen.bool, Gen.uint16(), Gen.uint8()) { isPeer, index, generation in
            let d: Destination =
                isPeer
                ? .peer(PeerID(index: index, generation: generation))
                : .port(PortID(index: index, generation: generation))
            #expect(d.packed < 1 << 25)
            #expect(Destination(packed: d.packed) == d)
        }
    }

    @Test func destinationKindBitSeparatesPortsFromPeers() {
        #expect(port(7, generation: 3).packed == 0x0003_0007)
        #expect(peer(7, generation: 3).packed == 0x0103_0007)
        #expect(port(7) != peer(7))
    }

    @Test func entryWordRoundTripsAndIsNeverZero() async {
        await propertyCheck(
            count: 500,
            input: Gen.uint32(in: 0...(1 << 25) - 1),
            Gen.uint16(),
            Gen.bool,
            Gen.uint16()
        ) { bits, tick, isStatic, tag in
            let word = EntryWord(destinationBits: bits, tick: tick, isStatic: isStatic, tag: tag)
            #expect(word.raw != 0)
            #expect(word.destinationBits == bits)
            #expect(word.tick == tick)
            #expect(word.isStatic == isStatic)
            #expect(word.tag == tag)
        }
    }

    @Test func updatingAnEntryKeepsItsTagAndStaticFlag() async {
        await propertyCheck(count: 300, input: Gen.uint32(in: 0...(1 << 25) - 1), Gen.uint16(), Gen.bool, Gen.uint16())
        { bits, tick, isStatic, tag in
            let old = EntryWord(destinationBits: 0x1FF_FFFF, tick: 0xFFFF, isStatic: isStatic, tag: tag)
            let new = old.updated(destinationBits: bits, tick: tick)
            #expect(new == EntryWord(destinationBits: bits, tick: tick, isStatic: isStatic, tag: tag))
        }
    }

    @Test func entryWordLayoutMatchesTheDocumentedDiagram() {
        let word = EntryWord(
            destinationBits: peer(0x0102, generation: 0x03).packed,
            tick: 0xBEEF,
            isStatic: true,
            tag: 0xCAFE
        )
        // tag 63...48, tick 47...32, present 26, static 25, kind 24, generation 23...16, index 15...0.
        #expect(word.raw == 0xCAFE_BEEF_0703_0102)
    }
}
