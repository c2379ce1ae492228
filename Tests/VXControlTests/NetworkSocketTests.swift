import Testing
import VXControl
import VXControlSocket

/// The network methods over a real Unix socket, with `FakeSwitch` behind `ControlServer.start(path:service:)`:
/// the server knows its service only as `some ControlService`, so these also check that the router finds the
/// network catalog on its own.
@Suite struct NetworkSocketTests {
    private func withServer(
        service: FakeSwitch = FakeSwitch(),
        _ body: (ControlClient) async throws -> Void
    ) async throws {
        let directory = TempDirectory()
        defer { directory.remove() }
        let server = try ControlServer.start(path: directory.socketPath, service: service)
        do {
            try await body(ControlClient(path: directory.socketPath))
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    private func expectError(
        _ code: ControlError.Code,
        _ message: String,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () async throws(ControlError) -> Void
    ) async {
        do throws(ControlError) {
            try await body()
            Issue.record("no error; expected \(code): \(message)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == code, sourceLocation: sourceLocation)
            #expect(error.message == message, sourceLocation: sourceLocation)
        }
    }

    private static let net1 = try! NetworkCreateParams(
        name: "net1", vni: vni(100), subnet: cidr("10.0.0.0/24"), range: range("10.0.0.100-10.0.0.101"),
        gateway: ip("10.0.0.1")
    )

    @Test func createListAndRemoveANetwork() async throws {
        try await withServer { client in
            let created = try await client.call(ControlMethods.NetworkCreate.self, Self.net1)
            #expect(
                created
                    == NetworkInfo(
                        name: "net1", vni: vni(100), subnet: cidr("10.0.0.0/24"), range: range("10.0.0.100-10.0.0.101"),
                        gateway: ip("10.0.0.1")
                    )
            )
            let other = try NetworkCreateParams(name: "net2", vni: vni(200), subnet: cidr("10.1.0.0/16"), dhcp: true)
            #expect(try await client.call(ControlMethods.NetworkCreate.self, other).range == range("10.1.0.1-10.1.255.254"))

            let list = try await client.call(ControlMethods.NetworkList.self, EmptyParams())
            #expect(list.networks.map(\.name) == ["net1", "net2"])
            #expect(list.networks.map(\.dhcp) == [false, true])

            _ = try await client.call(ControlMethods.NetworkRemove.self, try NetworkRemoveParams(name: "net1"))
            #expect(try await client.call(ControlMethods.NetworkList.self, EmptyParams()).networks.map(\.name) == ["net2"])
        }
    }

    @Test func networkErrorsKeepTheirCodeAcrossTheWire() async throws {
        try await withServer { client in
            _ = try await client.call(ControlMethods.NetworkCreate.self, Self.net1)
            await expectError(.alreadyExists, #"network "net1" already exists"#) { () throws(ControlError) in
                _ = try await client.call(ControlMethods.NetworkCreate.self, Self.net1)
            }
            let sameVNI = try NetworkCreateParams(name: "net9", vni: vni(100), subnet: cidr("10.9.0.0/24"))
            await expectError(.alreadyExists, #"VNI 100 already belongs to network "net1""#) { () throws(ControlError) in
                _ = try await client.call(ControlMethods.NetworkCreate.self, sameVNI)
            }
            await expectError(.notFound, #"no network named "net9""#) { () throws(ControlError) in
                _ = try await client.call(ControlMethods.NetworkRemove.self, try NetworkRemoveParams(name: "net9"))
            }
        }
    }

    @Test func attachThenLeasesThenDetach() async throws {
        try await withServer { client in
            _ = try await client.call(ControlMethods.NetworkCreate.self, Self.net1)

            let first = try await client.call(
                ControlMethods.Attach.self, try AttachParams(network: "net1", container: .netns("c1"), ip: .auto)
            )
            #expect(
                first
                    == AttachmentInfo(
                        port: name("vx3f9a1c2b"), network: "net1", vni: vni(100), container: .netns("c1"),
                        namespace: "/run/netns/c1", ifname: name("eth0"), ip: "10.0.0.100/24",
                        mac: mac("02:5e:3f:9a:1c:2b"), mtu: 1450, gateway: ip("10.0.0.1")
                    )
            )
            let second = try await client.call(
                ControlMethods.Attach.self,
                try AttachParams(
                    network: "net1", container: .netns("c1"), ifname: name("eth1"), ip: .address(cidr("10.0.0.7/24")),
                    mac: mac("02:00:00:00:00:07"), mtu: 9000, gateway: ip("10.0.0.254")
                )
            )
            #expect(second.ip == "10.0.0.7/24")
            #expect(second.mac == mac("02:00:00:00:00:07") && second.mtu == 9000 && second.gateway == ip("10.0.0.254"))
            let docker = try await client.call(
                ControlMethods.Attach.self, try AttachParams(network: "net1", container: .docker("web"))
            )
            #expect(docker.namespace == "/proc/4242/ns/net")
            #expect(docker.ip == nil && docker.gateway == nil)

            let leases = try await client.call(ControlMethods.Leases.self, try LeasesParams(network: "net1"))
            #expect(
                leases.leases == [
                    LeaseInfo(network: "net1", ip: ip("10.0.0.7"), owner: "vx3f9a1c2c", kind: .static),
                    LeaseInfo(network: "net1", ip: ip("10.0.0.100"), owner: "vx3f9a1c2b", kind: .static),
                ]
            )
            let listed = try await client.call(ControlMethods.NetworkList.self, EmptyParams()).networks
            #expect(listed.first?.ports == [name("vx3f9a1c2b"), name("vx3f9a1c2c"), name("vx3f9a1c2d")])
            #expect(listed.first?.leases == 2)

            let one = try await client.call(
                ControlMethods.Detach.self, DetachParams(container: .netns("c1"), ifname: name("eth1"))
            )
            #expect(one.detached == [second])
            let rest = try await client.call(ControlMethods.Detach.self, DetachParams(container: .netns("c1")))
            #expect(rest.detached == [first])
            #expect(try await client.call(ControlMethods.Leases.self, try LeasesParams()).leases.isEmpty)
        }
    }

    @Test func attachErrorsKeepTheirCodeAcrossTheWire() async throws {
        try await withServer { client in
            await expectError(.notFound, #"no network named "net1""#) { () throws(ControlError) in
                _ = try await client.call(
                    ControlMethods.Attach.self, try AttachParams(network: "net1", container: .netns("c1"))
                )
            }
            _ = try await client.call(ControlMethods.NetworkCreate.self, Self.net1)
            let auto = try AttachParams(network: "net1", container: .netns("c1"), ip: .auto)
            _ = try await client.call(ControlMethods.Attach.self, auto)
            await expectError(.alreadyExists, "netns c1 already has an interface eth0") { () throws(ControlError) in
                _ = try await client.call(ControlMethods.Attach.self, auto)
            }
            await expectError(.alreadyExists, "10.0.0.100 is already leased") { () throws(ControlError) in
                _ = try await client.call(
                    ControlMethods.Attach.self,
                    try AttachParams(network: "net1", container: .pid(9), ip: .address(cidr("10.0.0.100/24")))
                )
            }
            await expectError(.invalidArgument, #"10.9.0.5/24 is not in the subnet of network "net1" (10.0.0.0/24)"#) {
                () throws(ControlError) in
                _ = try await client.call(
                    ControlMethods.Attach.self,
                    try AttachParams(network: "net1", container: .pid(9), ip: .address(cidr("10.9.0.5/24")))
                )
            }
            _ = try await client.call(
                ControlMethods.Attach.self, try AttachParams(network: "net1", container: .pid(9), ip: .auto)
            )
            await expectError(.invalidArgument, #"network "net1" has no free address in 10.0.0.100-10.0.0.101"#) {
                () throws(ControlError) in
                _ = try await client.call(
                    ControlMethods.Attach.self, try AttachParams(network: "net1", container: .pid(10), ip: .auto)
                )
            }
            await expectError(.notFound, #"no Docker container "db""#) { () throws(ControlError) in
                _ = try await client.call(
                    ControlMethods.Attach.self, try AttachParams(network: "net1", container: .docker("db"))
                )
            }
            await expectError(.resourceBusy, #"network "net1" still has 2 attachment(s); detach them first"#) {
                () throws(ControlError) in
                _ = try await client.call(ControlMethods.NetworkRemove.self, try NetworkRemoveParams(name: "net1"))
            }
            await expectError(.notFound, "no interface eth1 attached to pid 9") { () throws(ControlError) in
                _ = try await client.call(ControlMethods.Detach.self, DetachParams(container: .pid(9), ifname: name("eth1")))
            }
            await expectError(.notFound, #"no network named "net2""#) { () throws(ControlError) in
                _ = try await client.call(ControlMethods.Leases.self, try LeasesParams(network: "net2"))
            }
        }
    }

    @Test func dhcpLeasesAreListedWithStaticOnes() async throws {
        let service = FakeSwitch()
        try await withServer(service: service) { client in
            _ = try await client.call(ControlMethods.NetworkCreate.self, Self.net1)
            service.recordDHCPLease(
                LeaseInfo(network: "net1", ip: ip("10.0.0.101"), owner: "mac:02:42:ac:11:00:02", kind: .dhcp,
                          expires: 1_767_225_600)
            )
            _ = try await client.call(
                ControlMethods.Attach.self, try AttachParams(network: "net1", container: .netns("c1"), ip: .auto)
            )
            let leases = try await client.call(ControlMethods.Leases.self, try LeasesParams()).leases
            #expect(leases.map(\.kind) == [.static, .dhcp])
            #expect(leases.map(\.expires) == [nil, 1_767_225_600])
            #expect(try await client.call(ControlMethods.NetworkList.self, EmptyParams()).networks.first?.leases == 2)
        }
    }

    @Test func theServerValidatesParamsThatNoClientChecked() async throws {
        try await withServer { client in
            let connection = try await ControlConnection.connect(path: client.path)
            defer { connection.close() }
            await expectError(.invalidParams, "give exactly one of netns, pid or docker (got netns and pid)") {
                () throws(ControlError) in
                _ = try await connection.callRaw(
                    method: "attach",
                    params: .object(["network": .string("net1"), "netns": .string("c1"), "pid": .integer(3)])
                )
            }
            await expectError(.invalidParams, "10.0.0.1/24 is not a network address (did you mean 10.0.0.0/24?)") {
                () throws(ControlError) in
                _ = try await connection.callRaw(
                    method: "network-create",
                    params: .object(["name": .string("n"), "vni": .integer(1), "subnet": .string("10.0.0.1/24")])
                )
            }
        }
    }

    @Test func rawRequestLinesForEveryNetworkMethod() async throws {
        try await withServer { client in
            let connection = try await ControlConnection.connect(path: client.path)
            defer { connection.close() }
            func send(_ line: String) async throws -> String {
                String(decoding: try await connection.roundTrip(Array(line.utf8)), as: UTF8.self)
            }
            #expect(
                try await send(
                    #"{"jsonrpc":"2.0","id":1,"method":"network-create","params":{"name":"net1","vni":100,"subnet":"10.0.0.0/24","gateway":"10.0.0.1"}}"#
                )
                    == #"{"id":1,"jsonrpc":"2.0","result":{"dhcp":false,"gateway":"10.0.0.1","leases":0,"name":"net1","ports":[],"range":"10.0.0.2-10.0.0.254","subnet":"10.0.0.0/24","vni":100}}"#
            )
            #expect(
                try await send(#"{"jsonrpc":"2.0","id":2,"method":"attach","params":{"network":"net1","netns":"c1","ip":"auto"}}"#)
                    == #"{"id":2,"jsonrpc":"2.0","result":{"container":{"netns":"c1"},"gateway":"10.0.0.1","ifname":"eth0","ip":"10.0.0.2/24","mac":"02:5e:3f:9a:1c:2b","mtu":1450,"namespace":"/run/netns/c1","network":"net1","port":"vx3f9a1c2b","vni":100}}"#
            )
            #expect(
                try await send(#"{"jsonrpc":"2.0","id":3,"method":"leases"}"#)
                    == #"{"id":3,"jsonrpc":"2.0","result":{"leases":[{"ip":"10.0.0.2","kind":"static","network":"net1","owner":"vx3f9a1c2b"}]}}"#
            )
            #expect(
                try await send(#"{"jsonrpc":"2.0","id":4,"method":"network-ls"}"#)
                    == #"{"id":4,"jsonrpc":"2.0","result":{"networks":[{"dhcp":false,"gateway":"10.0.0.1","leases":1,"name":"net1","ports":["vx3f9a1c2b"],"range":"10.0.0.2-10.0.0.254","subnet":"10.0.0.0/24","vni":100}]}}"#
            )
            #expect(
                try await send(#"{"jsonrpc":"2.0","id":5,"method":"network-rm","params":{"name":"net1"}}"#)
                    == #"{"error":{"code":-32004,"message":"network \"net1\" still has 1 attachment(s); detach them first"},"id":5,"jsonrpc":"2.0"}"#
            )
            #expect(
                try await send(#"{"jsonrpc":"2.0","id":6,"method":"detach","params":{"netns":"c1"}}"#)
                    == #"{"id":6,"jsonrpc":"2.0","result":{"detached":[{"container":{"netns":"c1"},"gateway":"10.0.0.1","ifname":"eth0","ip":"10.0.0.2/24","mac":"02:5e:3f:9a:1c:2b","mtu":1450,"namespace":"/run/netns/c1","network":"net1","port":"vx3f9a1c2b","vni":100}]}}"#
            )
            #expect(
                try await send(#"{"jsonrpc":"2.0","id":7,"method":"network-rm","params":{"name":"net1"}}"#)
                    == #"{"id":7,"jsonrpc":"2.0","result":{}}"#
            )
        }
    }
}

/// Which methods a router serves, by how it was built.
@Suite struct NetworkRouterTests {
    @Test func aServiceOfBothProtocolsGetsEveryMethod() {
        #expect(ControlRouter(service: FakeSwitch()).methodNames == ControlMethods.allNames.sorted())
    }

    @Test func theNetworkMethodsAreFoundWhenTheServiceIsKnownOnlyAsAControlService() {
        let service: any ControlService = FakeSwitch()
        #expect(ControlRouter(service: service).methodNames == ControlMethods.allNames.sorted())
        func generic(_ service: some ControlService) -> ControlRouter { ControlRouter(service: service) }
        #expect(generic(FakeSwitch()).methodNames == ControlMethods.allNames.sorted())
    }

    @Test func aControlServiceAloneGetsNoNetworkMethods() {
        #expect(ControlRouter(service: RecordingService()).methodNames == ControlMethods.serviceNames.sorted())
    }

    @Test func networkMethodsCanBeRegisteredOnTheirOwn() {
        var router = ControlRouter(service: RecordingService())
        router.register(networkService: AcceptingNetworkService())
        #expect(router.methodNames == ControlMethods.allNames.sorted())
        var networkOnly = ControlRouter()
        networkOnly.register(networkService: AcceptingNetworkService())
        #expect(networkOnly.methodNames == ControlMethods.networkNames.sorted())
    }
}
