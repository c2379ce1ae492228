import CVXLinux
import Testing
import VXIO
import VXPacket

@Suite("PacketBufferPool")
struct BufferPoolTests {
    @Test func takeAndGiveCycleEveryBufferExactlyOnce() throws {
        let pool = PacketBufferPool(count: 8)
        var seen = Set<UInt32>()
        for _ in 0..<8 { seen.insert(try #require(pool.take()).index) }
        #expect(seen == Set(0..<8))
        #expect(pool.available == 0)
        pool.give(BufferID(3))
        #expect(pool.available == 1)
        #expect(pool.take() == BufferID(3))
    }

    @Test func exhaustedPoolReturnsNil() {
        let pool = PacketBufferPool(count: 2)
        #expect(pool.take() != nil)
        #expect(pool.take() != nil)
        #expect(pool.take() == nil)
        #expect(pool.take() == nil)
    }

    @Test(arguments: [(2048, 64), (4096, 128), (2048, 0)])
    func buffersAreDisjointAndHeadroomIsHonoured(bufferSize: Int, headroom: Int) throws {
        let pool = PacketBufferPool(count: 4, bufferSize: bufferSize, headroom: headroom)
        #expect(pool.headroom == headroom)
        let a = try #require(pool.take())
        let b = try #require(pool.take())
        let startA = unsafe pool.unsafeAddress(of: a)
        let startB = unsafe pool.unsafeAddress(of: b)
        #expect(unsafe abs(startA.distance(to: startB)) >= bufferSize)
        // The data area after the headroom is bufferSize - headroom bytes, and writing all of it leaves the
        // neighbour untouched.
        unsafe pool.unsafeBytes(of: b, offset: 0, length: bufferSize).initializeMemory(as: UInt8.self, repeating: 0xEE)
        let data = unsafe pool.unsafeBytes(of: a, offset: headroom, length: bufferSize - headroom)
        unsafe data.initializeMemory(as: UInt8.self, repeating: 0xAB)
        #expect(unsafe data.baseAddress == startA + headroom)
        #expect(unsafe pool.unsafeBytes(of: b, offset: 0, length: bufferSize).allSatisfy { $0 == 0xEE })
        // Page-aligned block, so the kernel can register it.
        #expect(unsafe Int(bitPattern: pool.unsafeBlock.baseAddress) % 4096 == 0)
    }
}

@Suite("PacketBufferPool, large buffers")
struct LargeBufferPoolTests {
    @Test func largeBuffersAreNumberedAfterTheStandardOnesAndKeptApart() throws {
        let pool = PacketBufferPool(count: 4, largeCount: 3)
        #expect(pool.count == 7 && pool.standardCount == 4 && pool.largeCount == 3)
        #expect(pool.available == 4 && pool.availableLarge == 3)
        var large: [BufferID] = []
        while let buffer = pool.takeLarge() { large.append(buffer) }
        #expect(Set(large.map(\.index)) == [4, 5, 6])
        #expect(pool.available == 4, "taking large buffers leaves the standard ones")
        #expect(large.allSatisfy { pool.isLarge($0) && pool.size(of: $0) == PacketBufferPool.defaultLargeBufferSize })
        let standard = try #require(pool.take())
        #expect(!pool.isLarge(standard) && pool.size(of: standard) == pool.bufferSize)

        // A whole large buffer is writable and leaves its neighbours (large and standard) untouched.
        let size = pool.largeBufferSize
        unsafe pool.unsafeBytes(of: standard, offset: 0, length: pool.bufferSize)
            .initializeMemory(as: UInt8.self, repeating: 0x11)
        unsafe pool.unsafeBytes(of: large[0], offset: 0, length: size).initializeMemory(as: UInt8.self, repeating: 0x22)
        unsafe pool.unsafeBytes(of: large[2], offset: 0, length: size).initializeMemory(as: UInt8.self, repeating: 0x44)
        unsafe pool.unsafeBytes(of: large[1], offset: 0, length: size).initializeMemory(as: UInt8.self, repeating: 0x33)
        #expect(unsafe pool.unsafeBytes(of: standard, offset: 0, length: pool.bufferSize).allSatisfy { $0 == 0x11 })
        #expect(unsafe pool.unsafeBytes(of: large[0], offset: 0, length: size).allSatisfy { $0 == 0x22 })
        #expect(unsafe pool.unsafeBytes(of: large[2], offset: 0, length: size).allSatisfy { $0 == 0x44 })

        // Each goes back to its own free list.
        for buffer in large { pool.give(buffer) }
        pool.give(standard)
        #expect(pool.available == 4 && pool.availableLarge == 3)
    }

    @Test func aLargeBufferHoldsTheLargestTSORead() {
        // virtio-net header + Ethernet with an 802.1Q tag + the largest IP packet, read at headroom - 12.
        let largest = 12 + 18 + 65_535
        #expect(PacketBufferPool.defaultLargeBufferSize - (PacketBufferPool.defaultHeadroom - 12) >= largest)
        #expect(PacketBufferPool.defaultLargeBufferSize % 64 == 0)
    }

    @Test func aLargeBufferHoldsTheLargestGROReadThroughIOURing() {
        // io_uring_recvmsg_out + sockaddr_in + the control space + the largest IPv4 UDP payload, at headroom - 12.
        let largest = 16 + 16 + Int(CVX_TUNNEL_CONTROL_SPACE) + 65_507
        #expect(PacketBufferPool.defaultLargeBufferSize - (PacketBufferPool.defaultHeadroom - 12) >= largest)
    }
}

@Suite("RxBatch and TxBatch")
struct BatchTests {
    private func frame(_ index: UInt32) -> ReceivedFrame {
        ReceivedFrame(source: PortHandle(raw: 1), buffer: BufferID(index), offset: 64, length: 60, remote: .any)
    }

    @Test func rxBatchFillsToCapacityAndResetKeepsIt() {
        var batch = RxBatch(capacity: 4)
        for index in 0..<4 { batch.append(frame(UInt32(index))) }
        #expect(batch.isFull)
        #expect(batch.remainingCapacity == 0)
        #expect(batch.frames.map(\.buffer.index) == [0, 1, 2, 3])
        batch.reset()
        #expect(batch.count == 0)
        #expect(batch.capacity == 4)
        #expect(batch.remainingCapacity == 4)
    }

    @Test func txBatchRefusesPastCapacity() {
        let batch = TxBatch(capacity: 2)
        #expect(batch.append(target: PortHandle(raw: 1), buffer: BufferID(0), offset: 0, length: 1))
        #expect(batch.append(target: PortHandle(raw: 1), buffer: BufferID(1), offset: 0, length: 1))
        #expect(!batch.append(target: PortHandle(raw: 1), buffer: BufferID(2), offset: 0, length: 1))
        #expect(batch.count == 2)
        batch.reset()
        #expect(batch.count == 0 && batch.capacity == 2)
        #expect(batch.append(target: PortHandle(raw: 1), buffer: BufferID(2), offset: 0, length: 1))
    }

    @Test func headerSlotsDoNotOverlap() {
        let batch = TxBatch(capacity: 8)
        for index in 0..<8 {
            let appended = batch.append(
                target: PortHandle(raw: 1), remote: .any, buffer: BufferID(0), offset: 0, length: 0
            ) { slot in
                #expect(slot.count == TxBatch.maxHeaderLength)
                unsafe slot.initializeMemory(as: UInt8.self, repeating: UInt8(index + 1))
                return TxBatch.maxHeaderLength
            }
            #expect(appended)
        }
        for index in 0..<8 {
            let slot = unsafe batch.headerSlot(index)
            #expect(unsafe slot.allSatisfy { $0 == UInt8(index + 1) }, "slot \(index) was overwritten")
        }
        #expect(batch.frames.allSatisfy { Int($0.headerLength) == TxBatch.maxHeaderLength })
    }
}
