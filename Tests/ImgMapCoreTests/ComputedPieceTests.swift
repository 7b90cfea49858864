import Foundation
import Testing

@testable import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

// Computed pieces (bytes a target computes from lower devices, as crypt decrypts and raid rebuilds)
// flow through every engine: compose to a file and to a pipe, verify, manifest, map, scatter. A toy
// target, defined here as a library user would, transforms whole units of 8 sectors, so unaligned
// reads and writes are exercised too.

/// `xorunit <device> <offset>`: byte i of unit u is the lower byte XOR (0x5a + u), in units of 8 sectors.
struct XorUnitTarget: Target {
    static let name = "xorunit"
    let source: XorUnitSource
    let token: String

    init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        guard arguments.count == 2 else { throw TargetError("Invalid argument count") }
        guard let offset = KernelNumber.sector(arguments[1]) else { throw TargetError("Invalid device sector") }
        guard length.value % 8 == 0 else { throw TargetError("Device size is not multiple of unit") }
        source = XorUnitSource(device: try context.device(arguments[0]), token: arguments[0], offset: offset)
        token = arguments[0]
    }

    func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {}

    func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        try body(.computed(source, token: token, sector: offset, count: count))
    }

    var tableArguments: String { "\(token) \(source.offset)" }
}

final class XorUnitSource: ComputedSource {
    let device: Device
    let token: String
    let offset: UInt64
    static let unit: UInt64 = 8

    init(device: Device, token: String, offset: UInt64) {
        self.device = device
        self.token = token
        self.offset = offset
    }

    var unitSectors: UInt64 { Self.unit }

    static func transform(_ bytes: UnsafeMutableRawBufferPointer, firstUnit: UInt64) {
        let unitBytes = Int(unit * sectorSize)
        for i in 0..<bytes.count { bytes[i] ^= UInt8(truncatingIfNeeded: 0x5a &+ firstUnit &+ UInt64(i / unitBytes)) }
    }

    /// The whole units covering `sector ..< sector + count`.
    func units(_ sector: UInt64, _ count: UInt64) -> (first: UInt64, sectors: UInt64) {
        let first = sector / Self.unit
        let end = (sector + count + Self.unit - 1) / Self.unit
        return (first, (end - first) * Self.unit)
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at sector: UInt64, io: DeviceIO) throws {
        let (first, sectors) = units(sector, UInt64(buffer.count) / sectorSize)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(sectors * sectorSize), alignment: 4096)
        defer { scratch.deallocate() }
        try io.read(device, into: scratch, at: offset + first * Self.unit)
        Self.transform(scratch, firstUnit: first)
        let skip = Int((sector - first * Self.unit) * sectorSize)
        buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: scratch[skip..<skip + buffer.count]))
    }

    func write(_ bytes: UnsafeRawBufferPointer, at sector: UInt64, io: DeviceIO) throws {
        let (first, sectors) = units(sector, UInt64(bytes.count) / sectorSize)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(sectors * sectorSize), alignment: 4096)
        defer { scratch.deallocate() }
        try read(into: scratch, at: first * Self.unit, io: io)
        let skip = Int((sector - first * Self.unit) * sectorSize)
        UnsafeMutableRawBufferPointer(rebasing: scratch[skip..<skip + bytes.count]).copyMemory(from: bytes)
        Self.transform(scratch, firstUnit: first)
        try io.write(device, UnsafeRawBufferPointer(scratch), at: offset + first * Self.unit)
    }

    func writeRefusal(sector: UInt64, count: UInt64) -> String? { nil }

    func forEachLowerArea(sector: UInt64, count: UInt64, _ body: (Device, String, UInt64, UInt64) throws -> Void) rethrows {
        let (first, sectors) = units(sector, count)
        try body(device, token, offset + first * Self.unit, sectors)
    }

    func describe(sector: UInt64, count: UInt64) -> String {
        "xor of \(token) sector \(offset + sector)"
    }
}

/// What `xorunit` over `lower` from `offset` reads as, for `sectors` sectors.
private func expectedXor(_ lower: [UInt8], offset: UInt64, sectors: UInt64) -> [UInt8] {
    var out = Array(lower[Int(offset * 512)..<Int((offset + sectors) * 512)])
    out.withUnsafeMutableBytes { XorUnitSource.transform($0, firstUnit: 0) }
    return out
}

private func loadXor(_ table: String, devices: [String: String] = [:], lower: [(String, String)] = []) throws -> SectorMap {
    SectorMap(top: try loadTables(table, lower: lower, devices: devices, extraTargets: [XorUnitTarget.self]).top)
}

@Suite struct ComputedPieceTests {
    @Test func composedComputedPiecesMatchTheTransformToAFileAndToAPipe() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let a = GoldenImages.path("A", sectors: 256)
        // Stacked under linear with an offset that is not unit-aligned, next to plain data and zeros.
        let map = try loadXor("0 16 linear A 0\n16 40 linear X 3\n56 8 zero\n",
                              devices: ["A": a], lower: [("X", "0 64 xorunit A 100\n")])
        let bytes = GoldenImages.bytes("A", sectors: 256)
        let x = expectedXor(bytes, offset: 100, sectors: 64)
        let expected = Array(bytes[0..<16 * 512]) + Array(x[3 * 512..<43 * 512]) + [UInt8](repeating: 0, count: 8 * 512)

        for sparse in [Compose.Sparse.always, .auto, .never] {
            let path = dir.file("out-\(sparse).img")
            let out = try OutputFile(path: path, inputs: [])
            var options = Compose.Options(onError: .fail, sparse: sparse)
            options.bufferSize = 4096 * 3   // buffers that end inside units
            _ = try Compose(map: map, options: options).run(to: out)
            try out.commit()
            expectSameBytes(readBytes(path), expected, "sparse \(sparse)")
        }
        #expect(try readAll(map) == expected)
    }

    @Test func mapShowsTheComputedLineAndItsDescription() throws {
        let a = GoldenImages.path("A", sectors: 64)
        let map = try loadXor("0 16 xorunit A 8\n", devices: ["A": a])
        let all = extents(map)
        #expect(all.count == 1)
        #expect(all[0].origin.description == "t.table:1 xorunit A")
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.write("map.json", "")
        let sink = TextSink(file: try ImageFile(openForReading: path, writable: true))
        _ = try MapListing(map: map, format: .json).write(to: sink)
        let text = String(decoding: readBytes(path), as: UTF8.self)
        #expect(text.contains("\"computed\":\"xor of A sector 8\""), "\(text)")
    }

    @Test func verifyFindsADifferenceInsideAComputedPieceAndManifestHashesIt() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let a = GoldenImages.path("A", sectors: 64)
        let map = try loadXor("0 32 xorunit A 0\n", devices: ["A": a])
        let good = dir.file("good.img")
        try Data(try readAll(map)).write(to: URL(fileURLWithPath: good))
        #expect(try verifyImage(map, good).mismatches.isEmpty)
        flipByte(good, at: 13 * 512 + 7)
        let found = try verifyImage(map, good).mismatches
        #expect(found.map(\.range) == [SectorRange(start: 13, length: 1)])

        let bmap = try BmapFile(text: try Manifest(map: map).bmap(path: "t.table"))
        #expect(bmap.mappedBlocksCount == 4)
    }

    @Test func scatterWritesThroughTheTransformAndReadsBack() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let a = dir.file("A.img")
        try Data(GoldenImages.bytes("A", sectors: 64)).write(to: URL(fileURLWithPath: a))
        let map = try loadXor("0 4 zero\n4 40 xorunit A 16\n", devices: ["A": a])
        var rng = SplitMix64(seed: 7)
        let payload = rng.bytes(13 * 512 + 100)   // unaligned start, a partial last sector
        let input = dir.file("in.img")
        try Data(payload).write(to: URL(fileURLWithPath: input))
        let report = try scatterFile(map, input: input, .init(seek: Sector(9)))
        #expect(report.written.ranges == [SectorRange(start: 9, length: 14)])

        let after = try readAll(map)
        expectSameBytes(Array(after[9 * 512..<9 * 512 + payload.count]), payload)
        // Sectors around the write keep their old bytes.
        let before = [UInt8](repeating: 0, count: 4 * 512) + expectedXor(GoldenImages.bytes("A", sectors: 64), offset: 16, sectors: 40)
        expectSameBytes(Array(after[0..<9 * 512]), Array(before[0..<9 * 512]))
        expectSameBytes(Array(after[(9 * 512 + payload.count)...]), Array(before[(9 * 512 + payload.count)...]))
    }

    @Test func aLowerErrorFailsOnlyTheUnitsComputedFromIt() throws {
        let a = GoldenImages.path("A", sectors: 64)
        let map = try loadXor("0 32 xorunit L 0\n", devices: ["A": a],
                              lower: [("L", "0 10 linear A 0\n10 1 error\n11 21 linear A 11\n")])
        let reader = MapReader(map: map, onError: .zero)
        let buffer = IOBuffer(size: 32 * 512)
        try reader.read(into: buffer.bytes, at: .zero)
        #expect(reader.errors.ranges == [SectorRange(start: 8, length: 8)])
        #expect(buffer.bytes[16 * 512] == expectedXor(GoldenImages.bytes("A", sectors: 64), offset: 0, sectors: 32)[16 * 512])

        let failing = MapReader(map: map, onError: .fail)
        #expect(throws: MappedReadError(range: SectorRange(start: 8, length: 8), origin: extents(map)[0].origin)) {
            try failing.read(into: buffer.bytes, at: .zero)
        }
    }

    @Test func scatterRefusesAnErrorUnderAComputedPieceBeforeWriting() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let a = dir.file("A.img")
        let original = GoldenImages.bytes("A", sectors: 64)
        try Data(original).write(to: URL(fileURLWithPath: a))
        let map = try loadXor("0 32 xorunit L 0\n", devices: ["A": a],
                              lower: [("L", "0 10 linear A 0\n10 1 error\n11 21 linear A 11\n")])
        let input = dir.file("in.img")
        try Data([UInt8](repeating: 1, count: 32 * 512)).write(to: URL(fileURLWithPath: input))
        let error = failure { _ = try scatterFile(map, input: input) }
        #expect(error?.exitStatus == .ioError)
        #expect(error?.description.contains("refused before anything was written") == true)
        #expect(readBytes(a) == original)
    }
}
