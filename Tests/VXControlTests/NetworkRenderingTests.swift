import Testing
import VXControl

/// vxctl's output for the network methods, character for character.
@Suite struct NetworkRenderingTests {
    @Test func networkLsRendersOneRowPerNetwork() {
        let result = NetworkListResult(networks: [
            NetworkCodingTests.network,
            NetworkInfo(
                name: "storage-backplane", vni: vni(16_777_215), subnet: cidr("172.16.0.0/12"),
                range: range("172.16.0.100-172.16.0.199"), dhcp: true,
                ports: [name("vx00000001"), name("vx00000002")], leases: 12
            ),
        ])
        #expect(
            ControlRendering.networks(result) == """
                NAME                    VNI  SUBNET         RANGE                      GATEWAY   DHCP  PORTS                  LEASES
                net1                    100  10.0.0.0/24    10.0.0.2-10.0.0.254        10.0.0.1  no    vx3f9a1c2b                  1
                storage-backplane  16777215  172.16.0.0/12  172.16.0.100-172.16.0.199  -         yes   vx00000001,vx00000002      12

                """
        )
    }

    @Test func emptyListsSayNone() {
        #expect(ControlRendering.networks(NetworkListResult(networks: [])) == "no networks\n")
        #expect(ControlRendering.leases(LeasesResult(leases: [])) == "no leases\n")
        #expect(ControlRendering.detached(DetachResult(detached: [])) == "nothing detached\n")
    }

    @Test func networkCreateIsOneLine() {
        #expect(
            ControlRendering.network(NetworkCodingTests.network)
                == "network net1: vni 100, subnet 10.0.0.0/24, range 10.0.0.2-10.0.0.254, gateway 10.0.0.1, dhcp off\n"
        )
        let dhcp = NetworkInfo(
            name: "n2", vni: vni(7), subnet: cidr("192.168.0.0/30"), range: range("192.168.0.1-192.168.0.2"), dhcp: true
        )
        #expect(
            ControlRendering.network(dhcp)
                == "network n2: vni 7, subnet 192.168.0.0/30, range 192.168.0.1-192.168.0.2, dhcp on\n"
        )
    }

    @Test func attachIsOneLine() {
        #expect(
            ControlRendering.attachment(NetworkCodingTests.attachment)
                == "attached eth0 (port vx3f9a1c2b) to net1 in /run/netns/c1: 10.0.0.100/24, mac 02:5e:3f:9a:1c:2b, "
                + "mtu 1450, gateway 10.0.0.1\n"
        )
        let bare = AttachmentInfo(
            port: name("vx00000001"), network: "net1", vni: vni(100), container: .pid(77), namespace: "/proc/77/ns/net",
            ifname: name("eth1"), ip: nil, mac: mac("02:00:00:00:00:01"), mtu: 1500
        )
        #expect(
            ControlRendering.attachment(bare)
                == "attached eth1 (port vx00000001) to net1 in /proc/77/ns/net: no address, mac 02:00:00:00:00:01, "
                + "mtu 1500\n"
        )
    }

    @Test func detachIsOneLinePerInterface() {
        var second = NetworkCodingTests.attachment
        second.ifname = name("eth1")
        second.port = name("vx3f9a1c2c")
        #expect(
            ControlRendering.detached(DetachResult(detached: [NetworkCodingTests.attachment, second])) == """
                detached eth0 (port vx3f9a1c2b) from net1 in /run/netns/c1
                detached eth1 (port vx3f9a1c2c) from net1 in /run/netns/c1

                """
        )
    }

    @Test func leasesRenderExpiryInUTC() {
        let result = LeasesResult(leases: [
            LeaseInfo(network: "net1", ip: ip("10.0.0.100"), owner: "vx3f9a1c2b", kind: .static),
            LeaseInfo(network: "net1", ip: ip("10.0.0.101"), owner: "mac:02:42:ac:11:00:02", kind: .dhcp,
                      expires: 1_767_225_600),
            LeaseInfo(network: "storage", ip: ip("172.16.0.100"), owner: "id:01024242ac110003", kind: .dhcp,
                      expires: 1_767_229_199),
        ])
        #expect(
            ControlRendering.leases(result) == """
                NETWORK  IP            OWNER                  KIND    EXPIRES
                net1     10.0.0.100    vx3f9a1c2b             static  -
                net1     10.0.0.101    mac:02:42:ac:11:00:02  dhcp    2026-01-01T00:00:00Z
                storage  172.16.0.100  id:01024242ac110003    dhcp    2026-01-01T00:59:59Z

                """
        )
    }

    @Test(arguments: [
        (0, "1970-01-01T00:00:00Z"),
        (-1, "1969-12-31T23:59:59Z"),
        (68_169_600, "1972-02-29T00:00:00Z"),
        (951_782_400, "2000-02-29T00:00:00Z"),
        (951_868_799, "2000-02-29T23:59:59Z"),
        (1_709_164_800, "2024-02-29T00:00:00Z"),
        (1_767_225_599, "2025-12-31T23:59:59Z"),
        (2_147_483_647, "2038-01-19T03:14:07Z"),
        (4_102_444_800, "2100-01-01T00:00:00Z"),
        (4_107_542_400, "2100-03-01T00:00:00Z"),  // 2100 is not a leap year
    ])
    func utcTimestamps(_ seconds: Int, _ text: String) {
        #expect(ControlRendering.utcTimestamp(seconds) == text)
    }
}
