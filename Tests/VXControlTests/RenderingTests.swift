import Testing
import VXControl
import VXPacket

/// vxctl's tables, character for character.
@Suite struct RenderingTests {
    @Test func showRendersThreeAlignedTables() {
        #expect(
            ControlRendering.show(MessageCodingTests.show) == """
                ports:
                  NAME  VNI   MTU  IFINDEX
                  tap0  100  1450        7
                peers:
                  IP         ENCAP  GRE-KEY  VNIS
                  192.0.2.2  vxlan  -        100,200
                  192.0.2.3  gre    nvgre    100
                vnis:
                  VNI  PORTS  PEERS
                  100  tap0   192.0.2.2,192.0.2.3

                """
        )
    }

    @Test func showNamesAFailedPortAndHowToRemoveIt() {
        let result = ShowResult(
            ports: [
                PortInfo(name: name("tap0"), vni: vni(100), mtu: 1450, ifindex: 7),
                PortInfo(
                    name: name("tap1"), vni: vni(100), mtu: 1450, ifindex: 8,
                    failure: "EBADFD (File descriptor in bad state) on read"),
            ],
            peers: [], vnis: [])
        #expect(
            ControlRendering.show(result) == """
                ports:
                  NAME  VNI   MTU  IFINDEX
                  tap0  100  1450        7
                  tap1  100  1450        8
                  port tap1 FAILED: EBADFD (File descriptor in bad state) on read; remove it with `vxctl del-port tap1`
                peers: none
                vnis: none

                """
        )
    }

    @Test func showAddsAWhereColumnOnlyWhenAPortsInterfaceIsElsewhere() {
        let result = ShowResult(
            ports: [
                PortInfo(name: name("tap0"), vni: vni(100), mtu: 1450, ifindex: 7),
                PortInfo(name: name("tap1"), vni: vni(100), mtu: 1450, ifindex: 3, location: "eth0 in netns c1"),
            ],
            peers: [], vnis: [])
        #expect(
            ControlRendering.show(result) == """
                ports:
                  NAME  VNI   MTU  IFINDEX  WHERE
                  tap0  100  1450        7  -
                  tap1  100  1450        3  eth0 in netns c1
                peers: none
                vnis: none

                """
        )
    }

    @Test func showListsTheUnderlayNeighboursOnlyWithAnUnderlayTAP() {
        let neighbors = [
            UnderlayNeighborInfo(ip: ip("192.0.2.1"), mac: nil, isNextHop: true, age: nil),
            UnderlayNeighborInfo(
                ip: ip("192.0.2.12"), mac: MACAddress("02:76:78:00:02:0c")!, isNextHop: false, age: 31),
        ]
        #expect(
            ControlRendering.show(ShowResult(ports: [], peers: [], vnis: [], underlayNeighbors: neighbors)) == """
                ports: none
                peers: none
                vnis: none
                underlay neighbours:
                  IP          MAC                NEXT-HOP  AGE
                  192.0.2.1   unresolved         yes         -
                  192.0.2.12  02:76:78:00:02:0c  no         31

                """
        )
        #expect(
            ControlRendering.show(ShowResult(ports: [], peers: [], vnis: [], underlayNeighbors: []))
                == "ports: none\npeers: none\nvnis: none\nunderlay neighbours: none\n")
    }

    @Test func anEmptySwitchSaysNone() {
        #expect(ControlRendering.show(ShowResult(ports: [], peers: [], vnis: [])) == "ports: none\npeers: none\nvnis: none\n")
        #expect(ControlRendering.fdb(FDBResult(entries: [])) == "no FDB entries\n")
    }

    @Test func fdbRendersLikeBridgeFdb() {
        let result = FDBResult(entries: [
            FDBEntry(vni: vni(100), mac: mac("02:00:00:00:00:01"), destination: .port(name("tap0")), age: 12),
            FDBEntry(vni: vni(16_777_215), mac: mac("02:00:00:00:00:02"), destination: .peer(vtep("192.0.2.2")), age: 0,
                     isStatic: true),
        ])
        #expect(
            ControlRendering.fdb(result) == """
                     VNI  MAC                DESTINATION     AGE  TYPE
                     100  02:00:00:00:00:01  port tap0        12  learned
                16777215  02:00:00:00:00:02  peer 192.0.2.2    -  static

                """
        )
    }

    @Test func statsRendersCountersAndEveryNonZeroDrop() {
        let result = StatsResult(
            ports: [
                PortStats(name: name("tap0"), counters: TrafficCounters(rxFrames: 10, rxBytes: 1000, txFrames: 5,
                                                                        txBytes: 500, drops: ["no-fdb-entry": 2, "mtu": 0])),
                PortStats(name: name("tap1"), counters: TrafficCounters()),
            ],
            peers: [PeerStats(ip: vtep("192.0.2.2"), counters: TrafficCounters(rxFrames: 1_000_000, rxBytes: 64_000_000))],
            drops: ["unknown-peer": 3]
        )
        #expect(
            ControlRendering.stats(result) == """
                PORT  RX-FRAMES  RX-BYTES  TX-FRAMES  TX-BYTES  DROPS
                tap0         10      1000          5       500      2
                tap1          0         0          0         0      0

                PEER       RX-FRAMES  RX-BYTES  TX-FRAMES  TX-BYTES  DROPS
                192.0.2.2    1000000  64000000          0         0      0

                drops:
                  WHERE      REASON        FRAMES
                  port tap0  no-fdb-entry       2
                  switch     unknown-peer       3

                """
        )
    }

    @Test func statsListsWhatEachWorkerCarried() {
        let result = StatsResult(
            ports: [], peers: [], drops: [:],
            workers: [WorkerStats(worker: 0, rxFrames: 120, txFrames: 7), WorkerStats(worker: 1, rxFrames: 3, txFrames: 0)])
        #expect(
            ControlRendering.stats(result) == """
                ports: none

                peers: none

                drops: none

                workers:
                  WORKER  RX-FRAMES  TX-FRAMES
                  0             120          7
                  1               3          0

                """
        )
    }

    @Test func statsListsOnlyTheOffloadCountersThatCounted() {
        var offloads = OffloadStats()
        offloads.tsoFramesReceived = 14_000
        offloads.udpGSOSends = 15_200
        offloads.groFramesReceived = 1_900
        let result = StatsResult(
            ports: [], peers: [], drops: [:], workers: [WorkerStats(worker: 0, rxFrames: 5, txFrames: 4)],
            offloads: offloads)
        #expect(
            ControlRendering.stats(result) == """
                ports: none

                peers: none

                drops: none

                offloads:
                  COUNTER            COUNT
                  tsoFramesReceived  14000
                  udpGSOSends        15200
                  groFramesReceived   1900

                workers:
                  WORKER  RX-FRAMES  TX-FRAMES
                  0               5          4

                """
        )
    }

    @Test func statsSaysWhenNoOffloadCounted() {
        let result = StatsResult(ports: [], peers: [], drops: [:], offloads: OffloadStats())
        #expect(ControlRendering.stats(result) == "ports: none\n\npeers: none\n\ndrops: none\n\noffloads: none\n")
    }

    @Test func statsWithoutDrops() {
        #expect(ControlRendering.stats(StatsResult(ports: [], peers: [], drops: [:])) == "ports: none\n\npeers: none\n\ndrops: none\n")
    }

    @Test func addResultsAreOneLine() {
        #expect(ControlRendering.port(PortInfo(name: name("tap0"), vni: vni(100), mtu: 1450, ifindex: 7))
                    == "port tap0: vni 100, mtu 1450, ifindex 7\n")
        #expect(ControlRendering.port(PortInfo(name: name("mem0"), vni: vni(1), mtu: 1500)) == "port mem0: vni 1, mtu 1500\n")
        #expect(ControlRendering.peer(PeerInfo(ip: vtep("192.0.2.3"), encapsulation: .gre(key: .nvgre), vnis: [vni(1), vni(2)]))
                    == "peer 192.0.2.3: gre key=nvgre, vnis 1,2\n")
    }

    @Test func tablesNeverEndLinesInSpaces() {
        var table = TextTable([("A", .left), ("B", .left)])
        table.append(["long value", ""])
        table.append(["x"])
        #expect(table.lines() == ["A           B", "long value", "x"])
    }
}
