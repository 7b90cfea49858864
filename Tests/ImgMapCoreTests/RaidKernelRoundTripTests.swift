import Foundation
import Testing

@testable import ImgMapCore

/// Round trips the kernel confirmed: a text pattern scattered by imgmap through a healthy raid5/raid6
/// table into zeroed members, then read back degraded. The kernel (dm-raid, Linux 6.1, through
/// dm-oracle) was given the same surviving members with `-` for the dropped ones and read back the
/// pattern, whose sha256 is recorded here; so imgmap's scatter lays data and parity out where the
/// kernel looks for them, and imgmap's reconstruction gives what the kernel's does. The layouts, chunk
/// sizes and dropped members are ones the golden vectors do not cover.
@Suite struct RaidKernelRoundTripTests {
    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var type: String
        var members: Int
        var chunk: Int
        var memberSectors: UInt64
        var missing: Set<Int>
        /// What the kernel read from the degraded set (the pattern's sha256).
        var kernel: String
        var description: String { name }
    }

    static let cases: [Case] = [
        Case(name: "ra5", type: "raid5_ra", members: 5, chunk: 16, memberSectors: 256, missing: [2],
             kernel: "fe7695ff005874bf512f62d022751428e2d7bf7bcb61f17792394205ac637782"),
        Case(name: "nc6", type: "raid6_nc", members: 6, chunk: 32, memberSectors: 256, missing: [0, 4],
             kernel: "93fd23841fa61bca35b6ed01efd4c6ac564393164eb61b202abc04ac7406955d"),
        Case(name: "rs4", type: "raid5_rs", members: 4, chunk: 8, memberSectors: 128, missing: [0],
             kernel: "f8efa856ee810d99ade6c6adb835072196bb9a7c22667331dcb4937f07f75489"),
    ]

    /// Sector s: the line "NAME sector S\n" repeated to 512 bytes (what the generator wrote, in python).
    static func pattern(_ name: String, sectors: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Int(sectors) * 512)
        for s in 0..<sectors {
            let line = Array("\(name) sector \(s)\n".utf8)
            for i in 0..<512 { out.append(line[i % line.count]) }
        }
        return out
    }

    @Test(arguments: cases)
    func theDegradedSetReadsAsTheKernelReadIt(_ c: Case) throws {
        let data = c.members - (c.type.hasPrefix("raid6") ? 2 : 1)
        let length = c.memberSectors * UInt64(data)
        let folder = TemporaryDirectory()
        let devices = RaidTests.members(c.members, sectors: c.memberSectors, in: folder)
        let input = folder.file("data.img")
        let bytes = Self.pattern(c.name, sectors: length)
        FileManager.default.createFile(atPath: input, contents: Data(bytes))
        #expect(sha256(bytes) == c.kernel)
        let names = (0..<c.members).map { "M\($0)" }
        let healthy = RaidTests.table(c.type, chunk: c.chunk, length: length, members: names)
        _ = try scatterFile(SectorMap(top: try loadTables(healthy, devices: devices).top), input: input)
        let degraded = RaidTests.table(c.type, chunk: c.chunk, length: length,
                                       members: names.enumerated().map { c.missing.contains($0.offset) ? nil : $0.element })
        let surviving = devices.filter { name, _ in !c.missing.contains(Int(name.dropFirst())!) }
        let composed = try readAll(SectorMap(top: try loadTables(degraded, devices: surviving).top))
        #expect(sha256(composed) == c.kernel)
    }
}
