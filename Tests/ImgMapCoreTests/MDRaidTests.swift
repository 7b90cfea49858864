import Foundation
import Testing

@testable import ImgMapCore

// md's parity and RAID10 arrays as the real mdadm 4.2 and kernel 6.1 made them (Fixtures/probe/
// md-parity and md-raid10, made by make-fixtures.sh with md-parity-fixtures.sh): levels 4, 5 and 6
// in every superblock version, RAID10 near/far/offset, a RAID5 missing one member and a RAID6 missing
// two, the marks written after the members failed. Probe's tables must compose to the bytes the
// kernel presented as /dev/mdN. RAID6 in md's own layouts (mdadm's default) and RAID10 without dm-raid
// metadata devices have no dm-raid table; they become imgmap's `mdraid` target.

@Suite struct MDRaidProbeTests {
    /// Fixture set → (device name in the dump → the kernel's result tag).
    static let arrays: [String: [String: String]] = [
        "md-parity": ["r4": "r4-v12", "md1": "r5la-v090", "r5rs": "r5rs-v11", "r6": "r6-v10"],
        "md-raid10": ["r10n": "r10n2-v12", "r10f": "r10f2-v12", "r10o": "r10o2-v12", "r5deg": "r5deg", "r6deg": "r6deg"],
    ]

    @Test(arguments: ["md-parity", "md-raid10"])
    func everyArrayComposesToTheKernelsBytes(_ set: String) throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures(set, into: dir)
        let result = try probe(images.values.sorted())
        #expect(result.problems.isEmpty, "\(result.problems)")
        for (name, tag) in Self.arrays[set]!.sorted(by: { $0.key < $1.key }) {
            let device = try #require(result.devices.first { $0.name == name }, "\(name) in \(result.dump)")
            #expect(String(device.lines.reduce(0) { $0 + $1.length } * 512) == kernelResult(set, "\(tag).size"), "\(name) size")
            #expect(try composedDigest(result.dump, top: name) == kernelResult(set, "\(tag).sha256"), "\(name) bytes")
        }
    }

    @Test func md6sOwnLayoutsAndRaid10BecomeMdraidLines() throws {
        let dir = TemporaryDirectory()
        let parity = try probe(try unpackProbeFixtures("md-parity", into: dir).values.sorted())
        #expect(dumpLines(parity, dir).contains("r6: 0 32512 mdraid raid6 left-symmetric 128 16256 4 p6a.img 0 p6b.img 0 p6c.img 0 p6d.img 0"))
        // Where dm-raid has the layout, the kernel's raid target is used.
        #expect(dumpLines(parity, dir).contains { $0.hasPrefix("r5rs: 0 43008 raid raid5_rs ") })
        let raid10 = try probe(try unpackProbeFixtures("md-raid10", into: dir).values.sorted())
        let lines = dumpLines(raid10, dir)
        #expect(lines.contains("r10n: 0 28672 mdraid raid10 n2 128 14336 4 tna.img 2048 tnb.img 2048 tnc.img 2048 tnd.img 2048"))
        #expect(lines.contains("r10f: 0 21504 mdraid raid10 f2 64 14336 3 tfa.img 2048 tfb.img 2048 tfc.img 2048"))
        #expect(lines.contains("r10o: 0 21504 mdraid raid10 o2 64 14336 3 toa.img 2048 tob.img 2048 toc.img 2048"))
        #expect(lines.contains("r6deg: 0 43008 mdraid raid6 left-symmetric 64 14336 5 eda.img 2048 - - edc.img 2048 edd.img 2048 - -"))
        #expect(raid10.notes.contains("md r6deg: \(dir.path)/edb.img left out (stale: events 17 < 25)"))
        #expect(raid10.notes.contains { $0.hasPrefix("md r6deg: raid6 is mapped, but what it holds is not probed") }, "\(raid10.notes)")
    }
}

@Suite struct MDRaidTargetTests {
    /// A RAID6 in each of md's own layouts, and RAID10 in each format: random data scattered through
    /// it reads back whole, and again with one and two members removed (rebuilt from P and Q, or
    /// read from the other copy).
    @Test(arguments: [("raid6", "left-asymmetric", 5), ("raid6", "right-asymmetric", 4), ("raid6", "left-symmetric", 6),
                      ("raid6", "right-symmetric", 5), ("raid6", "parity-first", 4), ("raid6", "parity-first-6", 5),
                      ("raid5", "left-symmetric", 3), ("raid10", "n2", 4), ("raid10", "f2", 3), ("raid10", "o2", 3)])
    func randomDataRoundTripsWithMembersMissing(_ level: String, _ layout: String, _ n: Int) throws {
        var rng = SplitMix64(seed: UInt64(n * 131 + layout.count * 7 + level.count))
        let chunk: UInt64 = 16
        let memberSectors = chunk * 6
        let length: UInt64
        switch level {
        case "raid6": length = memberSectors * UInt64(n - 2)
        case "raid5": length = memberSectors * UInt64(n - 1)
        default: length = layout.hasPrefix("n") ? memberSectors * UInt64(n) / 2 : memberSectors / 2 * UInt64(n)
        }
        let folder = TemporaryDirectory()
        let devices = RaidTests.members(n, sectors: memberSectors + 8, in: folder)
        func table(_ gone: Set<Int>) -> String {
            "0 \(length) mdraid \(level) \(layout) \(chunk) \(memberSectors) \(n) "
                + (0..<n).map { gone.contains($0) ? "- -" : "M\($0) 8" }.joined(separator: " ") + "\n"
        }
        var payload = [UInt8](repeating: 0, count: Int(length * 512))
        for i in payload.indices { payload[i] = UInt8.random(in: 0...255, using: &rng) }
        let input = folder.file("payload.bin")
        FileManager.default.createFile(atPath: input, contents: Data(payload))
        let healthy = try loadTables(table([]), devices: devices)
        _ = try scatterFile(SectorMap(top: healthy.top), input: input)
        expectSameBytes(try readAll(SectorMap(top: healthy.top)), payload, "\(level) \(layout)")
        // The 8 sectors before each member's data offset are never written.
        for k in 0..<n { #expect(readRange(devices["M\(k)"]!, at: 0, count: 4096) == [UInt8](repeating: 0, count: 4096)) }
        let losses: [Set<Int>] = level == "raid6" ? (0..<n).map { [$0] } + [[0, n - 1], [1, 2]]
            : level == "raid5" ? (0..<n).map { [$0] } : [[0], [n - 1]]
        for gone in losses {
            let map = SectorMap(top: try loadTables(table(gone), devices: devices).top)
            expectSameBytes(try readAll(map), payload, "\(level) \(layout), members \(gone.sorted()) missing")
        }
    }

    @Test(arguments: [
        ("0 64 mdraid raid6 left-symmetric 16 32", "Invalid argument count"),
        ("0 64 mdraid raid7 left-symmetric 16 32 4 A 0 B 0 C 0 D 0", "Invalid level"),
        ("0 64 mdraid raid6 sideways 16 32 4 A 0 B 0 C 0 D 0", "Invalid layout"),
        ("0 64 mdraid raid5 ddf-N-restart 16 32 3 A 0 B 0 C 0", "Invalid layout"),
        ("0 64 mdraid raid10 x2 16 32 4 A 0 B 0 C 0 D 0", "Invalid layout"),
        ("0 64 mdraid raid10 n5 16 32 4 A 0 B 0 C 0 D 0", "Invalid layout"),
        ("0 64 mdraid raid6 left-symmetric 12 32 4 A 0 B 0 C 0 D 0", "Invalid chunk size"),
        ("0 64 mdraid raid6 left-symmetric 16 8 4 A 0 B 0 C 0 D 0", "Invalid member size"),
        ("0 64 mdraid raid6 left-symmetric 16 32 3 A 0 B 0 C 0", "Invalid number of devices"),
        ("0 64 mdraid raid6 left-symmetric 16 32 4 A 0 B 0 C 0", "Invalid argument count"),
        ("0 64 mdraid raid6 left-symmetric 16 32 4 A 0 B x C 0 D 0", "Invalid device sector"),
        ("0 64 mdraid raid6 left-symmetric 16 32 4 A 0 - 0 C 0 D 0", "Invalid member"),
        ("0 60 mdraid raid6 left-symmetric 16 32 4 A 0 B 0 C 0 D 0", "Target length is not the array's size"),
        ("0 64 mdraid raid6 left-symmetric 16 32 4 A 0 - - - - - -", "Failed to run raid array"),
        ("0 64 mdraid raid6 left-symmetric 16 32 4 A 0 B 0 C 0 D 64", "Component device(s) too small"),
    ])
    func badLinesAreRefusedWithWhatIsWrong(_ table: String, _ message: String) throws {
        let folder = TemporaryDirectory()
        var devices: [String: String] = [:]
        for name in ["A", "B", "C", "D"] {
            devices[name] = folder.file("\(name).img")
            FileManager.default.createFile(atPath: devices[name]!, contents: Data(count: 64 * 512))
        }
        let error = try #require(loadError(table + "\n", devices: devices))
        #expect(error.description.contains(message), "\(error.description)")
    }

    @Test func verifyParityReadsMdraidSegments() throws {
        // raid6 left-symmetric over 4 members, 16-sector chunks: row 1 has P on member 2, Q on member 3.
        let folder = TemporaryDirectory()
        let devices = RaidTests.members(4, sectors: 64, in: folder)
        let table = "0 128 mdraid raid6 left-symmetric 16 64 4 M0 0 M1 0 M2 0 M3 0\n"
        _ = try scatterFile(SectorMap(top: try loadTables(table, devices: devices).top), input: GoldenImages.path("W", sectors: 128))
        let clean = try ParityCheck(top: try loadTables(table, devices: devices).top).run { _ in }
        #expect(clean.rows == 4 && clean.mismatches == 0)
        var m3 = readBytes(devices["M3"]!)
        m3[20 * 512] ^= 1
        FileManager.default.createFile(atPath: devices["M3"]!, contents: Data(m3))
        var found: [String] = []
        let dirty = try ParityCheck(top: try loadTables(table, devices: devices).top).run { found.append($0.description) }
        #expect(dirty.mismatches == 1)
        #expect(found == ["t.table:1: row 1 (array sectors 32+32): Q on member 3 (M3) differs from sector 20"])
    }

    @Test func theTableReadsBackInItsNormalForm() throws {
        let folder = TemporaryDirectory()
        let devices = RaidTests.members(4, sectors: 80, in: folder)
        let loaded = try loadTables("0 64 mdraid raid6 left-symmetric 16 32 4 M0 8 - - M2 8 M3 0008\n", devices: devices)
        #expect(loaded.top.segments[0].target.tableArguments == "raid6 left-symmetric 16 32 4 M0 8 - - M2 8 M3 8")
    }
}
