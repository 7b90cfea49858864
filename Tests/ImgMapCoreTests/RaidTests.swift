import Foundation
import Testing

@testable import ImgMapCore

// raid, mirror and multipath beyond the kernel's vectors: random data scattered through random
// parity sets and composed back, healthy and with one or two members removed; md's parity rules
// against a direct computation; every refusal with the kernel's phrase at its line; metadata
// devices (fresh, not DmRd, or marking a member failed).

struct RaidTests {
    static let types5 = ["raid4", "raid5_la", "raid5_ra", "raid5_ls", "raid5_rs", "raid5_n"]
    static let types6 = ["raid6_zr", "raid6_nr", "raid6_nc", "raid6_n_6", "raid6_la_6", "raid6_ra_6", "raid6_ls_6", "raid6_rs_6"]

    /// Zeroed member images M0…M(n-1) of `sectors` each.
    static func members(_ n: Int, sectors: UInt64, in folder: TemporaryDirectory) -> [String: String] {
        var devices: [String: String] = [:]
        for k in 0..<n {
            let path = folder.file("M\(k).img")
            FileManager.default.createFile(atPath: path, contents: Data(count: Int(sectors * 512)))
            devices["M\(k)"] = path
        }
        return devices
    }

    static func table(_ type: String, chunk: Int, length: UInt64, members: [String?]) -> String {
        "0 \(length) raid \(type) 1 \(chunk) \(members.count) " + members.map { "- \($0 ?? "-")" }.joined(separator: " ") + "\n"
    }

    @Test(arguments: 0..<12)
    func randomDataRoundTripsThroughHealthyAndDegradedSets(_ seed: Int) throws {
        var rng = SplitMix64(seed: UInt64(seed) &* 0x9e37_79b9 &+ 7)
        let raid6 = seed % 2 == 1
        let type = raid6 ? Self.types6.randomElement(using: &rng)! : Self.types5.randomElement(using: &rng)!
        let n = Int.random(in: (raid6 ? 4 : 3)...(raid6 ? 7 : 6), using: &rng)
        let chunk = [8, 16, 32, 64].randomElement(using: &rng)!
        let data = n - (raid6 ? 2 : 1)
        let memberSectors = UInt64(chunk * Int.random(in: 3...9, using: &rng))
        let length = memberSectors * UInt64(data)
        let folder = TemporaryDirectory()
        let devices = Self.members(n, sectors: memberSectors, in: folder)
        let names = (0..<n).map { "M\($0)" }
        let context = "seed \(seed): \(type) over \(n), chunk \(chunk), \(length) sectors"

        var payload = [UInt8](repeating: 0, count: Int(length * 512))
        for i in payload.indices { payload[i] = UInt8.random(in: 0...255, using: &rng) }
        let input = folder.file("payload.bin")
        FileManager.default.createFile(atPath: input, contents: Data(payload))
        // A whole write, then an unaligned partial one over it (read-modify-write of rows).
        let healthy = try loadTables(Self.table(type, chunk: chunk, length: length, members: names), devices: devices)
        _ = try scatterFile(SectorMap(top: healthy.top), input: input)
        let seek = UInt64.random(in: 0..<length / 2, using: &rng)
        let count = UInt64.random(in: 1...(length - seek), using: &rng)
        var patch = [UInt8](repeating: 0, count: Int(count * 512))
        for i in patch.indices { patch[i] = UInt8.random(in: 0...255, using: &rng) }
        let patchPath = folder.file("patch.bin")
        FileManager.default.createFile(atPath: patchPath, contents: Data(patch))
        _ = try scatterFile(SectorMap(top: healthy.top), input: patchPath, .init(seek: Sector(seek)))
        payload.replaceSubrange(Int(seek * 512)..<Int((seek + count) * 512), with: patch)
        expectSameBytes(try readAll(SectorMap(top: healthy.top)), payload, context)

        // Every single member missing, and for raid6 a random pair.
        for gone in 0..<n {
            var present: [String?] = names
            present[gone] = nil
            let map = SectorMap(top: try loadTables(Self.table(type, chunk: chunk, length: length, members: present), devices: devices).top)
            expectSameBytes(try readAll(map), payload, "\(context), member \(gone) missing")
        }
        if raid6 {
            let a = Int.random(in: 0..<n, using: &rng)
            var b = Int.random(in: 0..<n - 1, using: &rng)
            if b >= a { b += 1 }
            var present: [String?] = names
            present[a] = nil
            present[b] = nil
            let map = SectorMap(top: try loadTables(Self.table(type, chunk: chunk, length: length, members: present), devices: devices).top)
            expectSameBytes(try readAll(map), payload, "\(context), members \(a) and \(b) missing")
        }
    }

    @Test func aWriteIntoADegradedSetReadsBackOnceTheMemberIsBack() throws {
        let folder = TemporaryDirectory()
        let devices = Self.members(4, sectors: 64, in: folder)
        let input = GoldenImages.path("W", sectors: 192)
        let degraded = try loadTables(Self.table("raid5_ls", chunk: 16, length: 192, members: ["M0", nil, "M2", "M3"]), devices: devices)
        _ = try scatterFile(SectorMap(top: degraded.top), input: input)
        expectSameBytes(try readAll(SectorMap(top: degraded.top)), readBytes(input))
        // M1 was never written: its chunks live only in the parity, and read back through it.
        #expect(readBytes(devices["M1"]!) == [UInt8](repeating: 0, count: 64 * 512))
    }

    @Test func raid6ParityIsMdsSyndrome() throws {
        // raid6_n_6 over 4 members: row 0 holds data on M0, M1, P on M2 and Q on M3; Q = D0 ⊕ 2·D1.
        let folder = TemporaryDirectory()
        let devices = Self.members(4, sectors: 16, in: folder)
        let input = GoldenImages.path("W", sectors: 32)
        let loaded = try loadTables(Self.table("raid6_n_6", chunk: 8, length: 32, members: ["M0", "M1", "M2", "M3"]), devices: devices)
        _ = try scatterFile(SectorMap(top: loaded.top), input: input)
        let m = (0..<4).map { readBytes(devices["M\($0)"]!) }
        let w = readBytes(input)
        for i in 0..<4096 {
            #expect(m[0][i] == w[i])
            #expect(m[1][i] == w[4096 + i])
            #expect(m[2][i] == w[i] ^ w[4096 + i])
            #expect(m[3][i] == w[i] ^ GF256.multiply(2, w[4096 + i]))
        }
    }

    @Test func layoutsPlaceParityAsMdDoes() {
        func g(_ level: RaidLevel, _ n: Int) -> RaidGeometry { RaidGeometry(level: level, members: n, chunk: 8, memberSectors: 64, arraySectors: 0) }
        // raid4 keeps parity on the first member (md's PARITY_0, as the kernel showed).
        #expect(g(.parity(.parity0, parityMembers: 1), 4).row(5).p == 0)
        #expect(g(.parity(.parity0, parityMembers: 1), 4).row(5).dataDisks == [1, 2, 3])
        // raid5_ls row 1 over 4: P on member 2, data from member 3 wrapping.
        #expect(g(.parity(.leftSymmetric, parityMembers: 1), 4).row(1).p == 2)
        #expect(g(.parity(.leftSymmetric, parityMembers: 1), 4).row(1).dataDisks == [3, 0, 1])
        // raid6_zr row 3 over 4: P on member 3, Q wraps to member 0, data on 1, 2.
        let zr = g(.parity(.zeroRestart, parityMembers: 2), 4).row(3)
        #expect(zr.p == 3 && zr.q == 0 && zr.dataDisks == [1, 2] && zr.qCoefficient == [1, 2])
        // raid6_nc row 0 over 5: P on 4, Q on 3, data 0, 1, 2.
        let nc = g(.parity(.nContinue, parityMembers: 2), 5).row(0)
        #expect(nc.p == 4 && nc.q == 3 && nc.dataDisks == [0, 1, 2])
        // raid6_ls_6 over 5: raid5_ls over the first 4, Q last; Q coefficients count data members in member order.
        let ls6 = g(.parity(.leftSymmetric6, parityMembers: 2), 5).row(1)
        #expect(ls6.p == 2 && ls6.q == 4 && ls6.dataDisks == [3, 0, 1] && ls6.qCoefficient == [2, 0, 1])
    }

    static let rejections: [(String, String)] = [
        ("0 4096 raid raid7 1 16 3 - A - B - C", "Unrecognised raid_type"),
        ("0 4096 raid raid5_ls x 16 3 - A - B - C", "Cannot understand number of raid parameters"),
        ("0 4096 raid raid5_ls 9 16 3 - A - B - C", "Cannot understand number of raid parameters"),
        ("0 4096 raid raid5_ls 1 16 4 - A - B - C", "Cannot understand number of raid devices parameters"),
        ("0 4096 raid raid5_ls 1 16 0", "Cannot understand number of raid devices parameters"),
        ("0 4096 raid raid5_ls 1 x16 3 - A - B - C", "Bad numerical argument given for chunk_size"),
        ("0 4096 raid raid5_ls 1 24 3 - A - B - C", "Chunk size must be a power of 2"),
        ("0 4096 raid raid5_ls 1 4 3 - A - B - C", "Chunk size value is too small"),
        ("0 4096 raid raid5_ls 3 16 nosync nosync 3 - A - B - C", "Only one 'nosync' argument allowed"),
        ("0 4096 raid raid5_ls 2 16 rebuild 3 - A - B - C", "Wrong number of raid parameters given"),
        ("0 4096 raid raid5_ls 3 16 rebuild 3 3 - A - B - C", "Invalid rebuild index given"),
        ("0 4096 raid raid5_ls 3 16 daemon_sleep x 3 - A - B - C", "Bad numerical argument given in raid params"),
        ("0 4096 raid raid5_ls 3 16 write_mostly 0 3 - A - B - C", "write_mostly option is only valid for RAID1"),
        ("0 4096 raid raid5_ls 3 16 daemon_sleep -1 3 - A - B - C", "daemon sleep period out of range"),
        ("0 4096 raid raid5_ls 3 16 data_offset 12 3 - A - B - C", "Bogus data_offset value"),
        ("0 4096 raid raid5_ls 3 16 stripe_cache -2 3 - A - B - C", "Bogus stripe cache entries value"),
        ("0 4096 raid raid1 3 0 stripe_cache 256 2 - A - B", "Inappropriate argument: stripe_cache"),
        ("0 4096 raid raid5_ls 3 16 raid10_format far 3 - A - B - C", "'raid10_format' is an invalid parameter for this RAID type"),
        ("0 4096 raid raid5_ls 3 16 frobnicate 1 3 - A - B - C", "Unable to parse RAID parameter"),
        ("0 4096 raid raid5_ls 3 16 sync nosync 3 - A - B - C", "sync and nosync are mutually exclusive"),
        ("0 4096 raid raid5_ls 5 16 min_recovery_rate 9 max_recovery_rate 3 3 - A - B - C", "Bogus recovery rates"),
        ("0 4096 raid raid5_ls 3 16 region_size 24 3 - A - B - C", "Region size is not a power of 2"),
        ("0 4096 raid raid5_ls 3 16 region_size 8 3 - A - B - C", "Region size is smaller than the chunk size"),
        ("0 4096 raid raid1 5 0 write_mostly 0 write_mostly 1 2 - A - B", "Can't set all raid1 devices to write_mostly"),
        ("0 4096 raid raid6_zr 2 16 nosync 4 - A - B - C - D", "Invalid flags combination"),
        ("0 4096 raid raid5_ls 3 16 journal_mode writeback 3 - A - B - C", "'journal_mode' is invalid without 'journal_dev'"),
        ("0 4096 raid raid5_ls 1 16 3 A - - B - C", "No data device supplied with metadata device"),
        ("0 4095 raid raid5_ls 1 16 3 - A - B - C", "Target length not divisible by number of data devices"),
        ("0 4096 raid raid5_ls 1 16 3 - A - B - S", "Component device(s) too small"),
        ("0 4096 raid raid5_ls 1 16 3 - - - - - C", "Failed to run raid array"),
        ("0 3072 raid raid6_nc 1 16 5 - - - - - - - D - E", "Failed to run raid array"),
        ("0 4096 raid raid10 1 16 4 - A - B - C - D", "Failed to run raid array"),
        ("0 2048 raid raid0 1 16 2 - A - -", "Failed to run raid array"),
        ("0 2048 mirror core 1 1000 2 A 0 B 0", "Error creating mirror dirty log"),
        ("0 2048 mirror corelog 1 1024 2 A 0 B 0", "Error creating mirror dirty log"),
        ("0 2048 mirror core 1 1024 2 A 0", "Too few mirror arguments"),
        ("0 2048 mirror core 1 1024 1 A 0", "Invalid number of mirrors"),
        ("0 2048 mirror core 1 1024 2 A 0 B 0 1 keep_log", "keep_log feature requires the handle_errors feature"),
        ("0 2048 mirror core 1 1024 2 A 0 B 0 1 fast", "Unrecognised feature requested"),
        ("0 2048 mirror core 1 1024 2 A 0 B 0 0 x", "Too many mirror arguments"),
        ("0 2048 multipath 0 0 1 1 fastest 0 1 1 A 1", "unknown path selector type"),
        ("0 2048 multipath 0 0 1 1 round-robin 0 2 1 A 1", "not enough path parameters"),
        ("0 2048 multipath 0 0 2 1 round-robin 0 1 1 A 1", "priority group count mismatch"),
        ("0 2048 multipath 0 0 1 0 round-robin 0 1 1 A 1", "invalid initial priority group"),
        ("0 2048 multipath 1 fast 0 1 1 round-robin 0 1 1 A 1", "Unrecognised multipath feature request"),
        ("0 2048 multipath 0 1 foo 1 1 round-robin 0 1 1 A 1", "unknown hardware handler type"),
        ("0 2048 multipath 0 0 1 1 round-robin 0 1 2 A 1 2", "round-robin ps: incorrect number of arguments"),
        ("0 2048 multipath 0 0 1 1 service-time 0 1 2 A 1 101", "service-time ps: invalid relative_throughput value"),
    ]

    @Test(arguments: rejections)
    func refusalsUseTheKernelsPhraseAtTheLine(_ line: String, _ phrase: String) {
        let devices = ["A": GoldenImages.path("A", sectors: 2048), "B": GoldenImages.path("B", sectors: 2048),
                       "C": GoldenImages.path("C", sectors: 2048), "D": GoldenImages.path("D", sectors: 2048),
                       "E": GoldenImages.path("E", sectors: 2048), "S": GoldenImages.path("S", sectors: 1000)]
        let error = loadError("# a comment first\n" + line + "\n", devices: devices)
        #expect(error?.exitStatus == .dataError)
        #expect(error?.description.hasPrefix("t.table:2: ") == true, "\(String(describing: error))")
        #expect(error?.description.contains(phrase) == true, "\(String(describing: error)) should say \(phrase)")
    }

    @Test func membersLargerThanNeededAreFineAndTheArrayEndsAtWholeChunks() throws {
        // 3000 sectors over 2 data members: 1500 each, rounded down to 1488 (chunk 16): 2976 read,
        // the last 24 sectors fail as the kernel's do.
        let devices = ["A": GoldenImages.path("A", sectors: 2048), "B": GoldenImages.path("B", sectors: 1500),
                       "C": GoldenImages.path("C", sectors: 4096)]
        let map = SectorMap(top: try loadTables("0 3000 raid raid5_ls 1 16 3 - A - B - C\n", devices: devices).top)
        #expect(map.errorRanges().ranges == [SectorRange(start: 2976, length: 24)])
    }

    @Test func provenanceNamesTheMemberOrTheRebuild() throws {
        let devices = ["A": GoldenImages.path("A", sectors: 1024), "C": GoldenImages.path("C", sectors: 1024)]
        let map = SectorMap(top: try loadTables("0 2048 raid raid5_ls 1 64 3 - A - - - C\n", devices: devices).top)
        let lines = extents(map).map(summary)
        #expect(lines[0] == "0 64 computed raid5_ls member 0 (A) sector 0")
        #expect(lines[1] == "64 64 computed raid5_ls member 1 (-) rebuilt (XOR) from members 0 (A), 2 (C) at member sector 0 (row 0)")
    }

    /// A metadata image: a DmRd superblock (V1.9.0) with `failed` bits, or the given bytes.
    static func metadata(_ folder: TemporaryDirectory, _ name: String, position: UInt32, failed: UInt64 = 0,
                         reshape: Bool = false, raw: [UInt8]? = nil) -> String {
        var b = raw ?? [UInt8](repeating: 0, count: 2048 * 512)
        func put32(_ o: Int, _ v: UInt32) { for i in 0..<4 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
        func put64(_ o: Int, _ v: UInt64) { for i in 0..<8 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) } }
        if raw == nil {
            put32(0, 0x6452_6D44); put32(4, 1); put32(8, 3); put32(12, position)
            put64(16, 5); put64(24, failed); put64(32, UInt64.max); put64(40, UInt64.max)
            put32(48, 5); put32(52, 2); put32(56, 64); put32(60, reshape ? 1 : 0); put64(64, reshape ? 100 : UInt64.max)
            put32(72, 5); put32(76, 2); put32(80, 64)
        }
        let path = folder.file(name)
        FileManager.default.createFile(atPath: path, contents: Data(b))
        return path
    }

    @Test func aMemberTheSuperblocksMarkFailedIsRebuilt() throws {
        let folder = TemporaryDirectory()
        var devices = ["A": GoldenImages.path("A", sectors: 2048), "B": GoldenImages.path("B", sectors: 2048),
                       "C": GoldenImages.path("C", sectors: 2048)]
        for k in 0..<3 { devices["R\(k)"] = Self.metadata(folder, "R\(k).img", position: UInt32(k), failed: 0b010) }
        let map = SectorMap(top: try loadTables("0 4096 raid raid5_ls 1 64 3 R0 A R1 B R2 C\n", devices: devices).top)
        #expect(extents(map).map(summary)[1].contains("member 1 (B) rebuilt (XOR)"))
    }

    @Test func metadataThatIsNotDmRdIsANewSetAndAReshapeIsRefused() throws {
        let folder = TemporaryDirectory()
        var devices = ["A": GoldenImages.path("A", sectors: 2048), "B": GoldenImages.path("B", sectors: 2048)]
        // Not a superblock (pattern bytes): the kernel would take both as new members of a new set.
        devices["R0"] = GoldenImages.path("R0", sectors: 2048)
        devices["R1"] = GoldenImages.path("R1", sectors: 2048)
        let map = SectorMap(top: try loadTables("0 2048 raid raid1 1 0 2 R0 A R1 B\n", devices: devices).top)
        #expect(try readAll(map) == GoldenImages.bytes("A", sectors: 2048))
        devices["R0"] = Self.metadata(folder, "S0.img", position: 0, reshape: true)
        devices["R1"] = Self.metadata(folder, "S1.img", position: 1, reshape: true)
        let error = loadError("0 2048 raid raid1 1 0 2 R0 A R1 B\n", devices: devices)
        #expect(error?.description.contains("Failed to run raid array: the superblocks record a reshape in progress") == true, "\(String(describing: error))")
    }

    @Test func raid10WithMetadataReadsAndWritesEveryCopy() throws {
        let folder = TemporaryDirectory()
        var devices = Self.members(4, sectors: 256, in: folder)
        for k in 0..<4 { devices["R\(k)"] = Self.metadata(folder, "R\(k).img", position: 0, raw: [UInt8](repeating: 0, count: 8 * 512)) }
        for format in ["near", "far", "offset"] {
            let table = "0 512 raid raid10 3 16 raid10_format \(format) 4 R0 M0 R1 M1 R2 M2 R3 M3\n"
            let input = GoldenImages.path("W", sectors: 512)
            let loaded = try loadTables(table, devices: devices)
            _ = try scatterFile(SectorMap(top: loaded.top), input: input)
            expectSameBytes(try readAll(SectorMap(top: loaded.top)), readBytes(input), format)
            let degraded = try loadTables(table.replacingOccurrences(of: "R0 M0", with: "- -"), devices: devices)
            expectSameBytes(try readAll(SectorMap(top: degraded.top)), readBytes(input), "\(format) without member 0")
        }
    }

    @Test func mirrorAndRaid1WritesReachEveryLeg() throws {
        let folder = TemporaryDirectory()
        let devices = Self.members(3, sectors: 300, in: folder)
        let input = GoldenImages.path("W", sectors: 200)
        let mirror = try loadTables("0 200 mirror core 2 64 nosync 2 M0 100 M1 0\n", devices: devices)
        _ = try scatterFile(SectorMap(top: mirror.top), input: input)
        #expect(Array(readBytes(devices["M0"]!)[(100 * 512)...]) == readBytes(input))
        #expect(Array(readBytes(devices["M1"]!)[..<(200 * 512)]) == readBytes(input))
        let raid1 = try loadTables("0 300 raid raid1 1 0 3 - M0 - - - M2\n", devices: devices)
        _ = try scatterFile(SectorMap(top: raid1.top), input: input, .init(seek: Sector(50)))
        #expect(Array(readBytes(devices["M2"]!)[(50 * 512)..<(250 * 512)]) == readBytes(input))
        #expect(Array(readBytes(devices["M0"]!)[(50 * 512)..<(250 * 512)]) == readBytes(input))
    }

    @Test func parityCheckFindsTheRowAndMemberThatDiffer() throws {
        let folder = TemporaryDirectory()
        let devices = Self.members(5, sectors: 128, in: folder)
        let input = GoldenImages.path("W", sectors: 384)
        let table = Self.table("raid6_nc", chunk: 16, length: 384, members: ["M0", "M1", "M2", "M3", "M4"])
        let loaded = try loadTables(table, devices: devices)
        _ = try scatterFile(SectorMap(top: loaded.top), input: input)
        var found: [ParityCheck.Mismatch] = []
        let clean = try ParityCheck(top: loaded.top).run { found.append($0) }
        #expect(clean.rows == 8 && clean.mismatches == 0 && found.isEmpty)
        // Flip a byte of member 2 at sector 37 (row 2): row 2 of raid6_nc over 5 has P on member 2.
        var m2 = readBytes(devices["M2"]!)
        m2[37 * 512 + 5] ^= 0xff
        FileManager.default.createFile(atPath: devices["M2"]!, contents: Data(m2))
        let dirty = try ParityCheck(top: try loadTables(table, devices: devices).top).run { found.append($0) }
        #expect(dirty.mismatches == 1)
        #expect(found.map(\.description) == ["t.table:1: row 2 (array sectors 96+48): P on member 2 (M2) differs from sector 37"])
        // The same members read as raid6_zr: the layout guess is wrong, and nearly every row says so.
        let wrong = try ParityCheck(top: try loadTables(table.replacingOccurrences(of: "raid6_nc", with: "raid6_zr"), devices: devices).top).run { _ in }
        #expect(wrong.mismatches >= 8)
    }
}
