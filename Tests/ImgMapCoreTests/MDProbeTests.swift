import Foundation
import Testing

@testable import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

// md arrays made by the real mdadm 4.2 on kernel 6.1 (Fixtures/probe/md, made by make-fixtures.sh
// through the kernel oracle): the tables probe derives from the superblocks must compose to the bytes
// the kernel presented as /dev/mdN (its sha256 and size are in results/). Synthesized superblocks
// cover the raid-target levels and broken input.

@Suite struct MDProbeTests {
    /// Array name in the dump → the kernel's result tag.
    static let arrays = ["r0": "r0-v12", "r1": "r1-v12", "lin": "lin-v12", "md3": "r1-v090", "r1e": "r1-v10",
                         "r0s": "r0-v11", "stale": "stale"]

    @Test func mdadmArraysBecomeTheTablesWhoseBytesEqualTheKernelsArrays() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("md", into: dir)
        let result = try probe(images.values.sorted())
        #expect(result.problems.isEmpty, "\(result.problems)")
        #expect(dumpLines(result, dir) == [
            "lin: 0 14336 linear lna.img 2048",
            "lin: 14336 14336 linear lnb.img 2048",
            "r0: 0 28672 striped 2 128 r0a.img 2048 r0b.img 2048",
            "r1: 0 14336 linear r1a.img 2048",
            "stale: 0 14336 linear stla.img 2048",
            "md3: 0 16256 linear v09a.img 0",
            "r1e: 0 16256 linear v10a.img 0",
            "r0s: 0 28672 striped 2 64 v11a.img 2048 v11b.img 2048",
        ])
        for (name, tag) in Self.arrays.sorted(by: { $0.key < $1.key }) {
            let device = try #require(result.devices.first { $0.name == name })
            #expect(String(device.lines.reduce(0) { $0 + $1.length } * 512) == kernelResult("md", "\(tag).size"), "\(name) size")
            #expect(try composedDigest(result.dump, top: name) == kernelResult("md", "\(tag).sha256"), "\(name) bytes")
        }
    }

    @Test func aStaleMemberIsLeftOutByItsEventCount() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("md", into: dir)
        let result = try probe([images["stla"]!, images["stlb"]!, images["stlc"]!])
        #expect(result.notes == ["md stale: \(images["stlc"]!) left out (stale: events 15 < 20)"])
        let md = result.report["md"].flatMap { if case .array(let a) = $0 { a.first } else { nil } }
        #expect(md?["state"] == "degraded")
        #expect(md?["events"] == .unsigned(20))
        #expect(try composedDigest(result.dump, top: "stale") == kernelResult("md", "stale.sha256"))
    }

    @Test func a090SuperblockWrittenBigEndianReadsTheSame() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("md", into: dir)
        let little = try probe([images["v09a"]!, images["v09b"]!])
        for member in ["v09a", "v09b"] {
            let path = images[member]!
            let at = UInt64((16384 & ~127) - 128) * 512  // 8 MiB member: the last 64 KiB-aligned 64 KiB
            var sb = readRange(path, at: at, count: 4096)
            #expect(sb.le32(0) == MDSuperblock.magic)
            // A big-endian writer stores every 32-bit word the other way round, and events_hi first.
            for w in 0..<1024 { sb[4 * w..<4 * w + 4].reverse() }
            let lo = Array(sb[156..<160]), hi = Array(sb[160..<164])
            sb.replaceSubrange(156..<160, with: hi)
            sb.replaceSubrange(160..<164, with: lo)
            patch(path, at: at, sb)
        }
        let big = try probe([images["v09a"]!, images["v09b"]!])
        #expect(big.problems.isEmpty, "\(big.problems)")
        #expect(big.dump == little.dump)
        #expect(big.report.text().contains("\"byte_order\":\"big\""))
        #expect(try composedDigest(big.dump, top: "md3") == kernelResult("md", "r1-v090.sha256"))
    }

    @Test func aCorruptSuperblockChecksumIsReportedAndTheArrayNotAssembled() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("md", into: dir)
        patch(images["r0a"]!, at: 4096 + 40, [0x58])  // a byte of the array name
        let result = try probe([images["r0a"]!, images["r0b"]!])
        #expect(result.devices.isEmpty)
        let first = (result.problems.first ?? "").replacingOccurrences(of: "0x[0-9a-f]{8}", with: "0x…", options: .regularExpression)
        #expect(first == "\(images["r0a"]!): md 1.2 superblock at sector 8: checksum mismatch (stored 0x…, computed 0x…)")
        #expect(result.problems.last?.hasPrefix("md r0 (raid0, 2 devices): too few members in sync to assemble (found: \(images["r0b"]!))") == true)
    }

    @Test func twoDevicesClaimingOneRoleAreReported() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("md", into: dir)
        let copy = dir.file("r1a-copy.img")
        #expect(try shell("cp '\(images["r1a"]!)' '\(copy)'") == 0)
        let result = try probe([images["r1a"]!, copy, images["r1b"]!])
        let uuid = kernelResult("md", "r1-v12-detail.txt").components(separatedBy: "UUID : ").dropFirst().first?.prefix(35) ?? ""
        #expect(result.problems == ["md \(uuid): \(images["r1a"]!) and \(copy) both claim role 0 with events 15: \(copy) left out"])
        #expect(try composedDigest(result.dump, top: "r1") == kernelResult("md", "r1-v12.sha256"))
    }

    // MARK: - Synthesized superblocks

    /// Writes an md 1.2 superblock at 4 KiB of a new sparse `name` of `sectors`.
    func member(_ dir: TemporaryDirectory, _ name: String, sectors: UInt64 = 32768, level: Int32, layout: UInt32 = 0,
                chunk: UInt32 = 128, raidDisks: Int, slot: Int, roles: [UInt16]? = nil, events: UInt64 = 7,
                feature: UInt32 = 0, uuid: UInt8 = 0x11, dataOffset: UInt64 = 2048) -> String {
        let path = dir.sparseImage(name, sectors: sectors)
        var b = [UInt8](repeating: 0, count: 4096)
        func put(_ at: Int, _ v: UInt64, _ n: Int) { for k in 0..<n { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) } }
        put(0, UInt64(MDSuperblock.magic), 4); put(4, 1, 4); put(8, UInt64(feature), 4)
        for k in 0..<16 { b[16 + k] = uuid &+ UInt8(k) }
        for (k, c) in "host:syn".utf8.enumerated() { b[32 + k] = c }
        put(72, UInt64(UInt32(bitPattern: level)), 4); put(76, UInt64(layout), 4)
        let dataSize = sectors - dataOffset
        put(80, dataSize, 8); put(88, UInt64(chunk), 4); put(92, UInt64(raidDisks), 4)
        put(128, dataOffset, 8); put(136, dataSize, 8); put(144, 8, 8)
        put(160, UInt64(slot), 4); put(200, events, 8); put(208, UInt64.max, 8)
        let table = roles ?? (0..<raidDisks).map { UInt16($0) }
        put(220, UInt64(table.count), 4)
        for (k, r) in table.enumerated() { put(256 + 2 * k, UInt64(r), 2) }
        var sum: UInt64 = 0
        let size = 256 + 2 * table.count
        var i = 0
        while i + 4 <= size { sum += UInt64(b.le32(i)); i += 4 }
        if size - i == 2 { sum += UInt64(b.le16(i)) }
        put(216, (sum & 0xffff_ffff) + (sum >> 32), 4)
        patch(path, at: 4096, b)
        return path
    }

    func raidLine(_ dir: TemporaryDirectory, _ paths: [String]) throws -> (String, ProbeResult) {
        let result = try probe(paths)
        return (dumpLines(result, dir).joined(separator: "\n"), result)
    }

    @Test func raid5BecomesADmRaidLineWithTheDataOffset() throws {
        let dir = TemporaryDirectory()
        let paths = (0..<3).map { member(dir, "m\($0).img", level: 5, layout: 2, raidDisks: 3, slot: $0) }
        let (line, result) = try raidLine(dir, paths)
        // 30720 data sectors per member, 2 of 3 hold data.
        // dm-raid without metadata devices ignores data_offset (the kernel oracle showed it reads the
        // members from sector 0), so each member comes through a linear device at its data offset.
        #expect(line == """
            syn_rimage_0: 0 30720 linear m0.img 2048
            syn_rimage_1: 0 30720 linear m1.img 2048
            syn_rimage_2: 0 30720 linear m2.img 2048
            syn: 0 61440 raid raid5_ls 1 128 3 - syn_rimage_0 - syn_rimage_1 - syn_rimage_2
            """)
        #expect(result.notes.isEmpty)
        #expect(result.problems.isEmpty)
    }

    @Test func aDegradedRaid5HasADashForTheMissingMember() throws {
        let dir = TemporaryDirectory()
        let paths = [0, 2].map { member(dir, "m\($0).img", level: 5, layout: 0, raidDisks: 3, slot: $0) }
        let (line, result) = try raidLine(dir, paths)
        #expect(line.hasSuffix("syn: 0 61440 raid raid5_la 1 128 3 - syn_rimage_0 - - - syn_rimage_2"))
        #expect(result.report.text().contains("\"state\":\"degraded\""))
    }

    @Test func raid6MdRaid4AndRaid10MapToTheKernelsOrImgmapsRaidTarget() throws {
        let dir = TemporaryDirectory()
        let r6 = (0..<4).map { member(dir, "six\($0).img", level: 6, layout: 18, raidDisks: 4, slot: $0, uuid: 0x20) }
        let six = try raidLine(dir, r6).0
        #expect(six.hasSuffix("\nsyn: 0 61440 raid raid6_ls_6 1 128 4 - syn_rimage_0 - syn_rimage_1 - syn_rimage_2 - syn_rimage_3"))
        let dir4 = TemporaryDirectory()
        let r4 = (0..<3).map { member(dir4, "four\($0).img", level: 4, layout: 5, raidDisks: 3, slot: $0, uuid: 0x30) }
        let four = try raidLine(dir4, r4).0
        #expect(four.hasSuffix("\nsyn: 0 61440 raid raid5_n 1 128 3 - syn_rimage_0 - syn_rimage_1 - syn_rimage_2"))
        let dir10 = TemporaryDirectory()
        let r10 = (0..<4).map { member(dir10, "ten\($0).img", level: 10, layout: 0x102, raidDisks: 4, slot: $0, uuid: 0x40) }
        let ten = try raidLine(dir10, r10).0
        // dm-raid runs raid10 only over metadata devices, which md arrays lack: imgmap's mdraid maps them.
        #expect(ten == "syn: 0 61440 mdraid raid10 n2 128 30720 4 ten0.img 2048 ten1.img 2048 ten2.img 2048 ten3.img 2048")
        let dirFar = TemporaryDirectory()
        let far = (0..<3).map { member(dirFar, "far\($0).img", level: 10, layout: 0x201, raidDisks: 3, slot: $0, uuid: 0x50) }
        // far 2 over 3 devices: 240 chunks per device, halved, times 3 devices.
        let farLine = try raidLine(dirFar, far).0
        #expect(farLine == "syn: 0 46080 mdraid raid10 f2 128 30720 3 far0.img 2048 far1.img 2048 far2.img 2048")
    }

    @Test func aRaid10MissingBothCopiesOfAChunkIsNotAssembled() throws {
        let dir = TemporaryDirectory()
        let paths = [2, 3].map { member(dir, "ten\($0).img", level: 10, layout: 0x102, raidDisks: 4, slot: $0) }
        let result = try probe(paths)
        #expect(result.devices.isEmpty)
        #expect(result.problems.first?.hasPrefix("md syn (raid10, 4 devices): too few members in sync to assemble") == true)
    }

    @Test func aReshapeInProgressIsRefused() throws {
        let dir = TemporaryDirectory()
        let paths = (0..<3).map { member(dir, "m\($0).img", level: 5, layout: 2, raidDisks: 3, slot: $0, feature: 4) }
        let result = try probe(paths)
        #expect(result.devices.isEmpty)
        #expect(result.problems == ["md syn: a reshape is in progress (the layout changes part-way through the array): not mapped; finish it with mdadm first"])
    }

    @Test func aFaultyRoleInTheFreshestSuperblockLeavesTheMemberOut() throws {
        let dir = TemporaryDirectory()
        let roles: [UInt16] = [0, 0xfffe]
        let a = member(dir, "a.img", level: 1, raidDisks: 2, slot: 0, roles: roles, events: 9)
        let b = member(dir, "b.img", level: 1, raidDisks: 2, slot: 1, roles: roles, events: 9)
        let result = try probe([a, b])
        #expect(dumpLines(result, dir) == ["syn: 0 30720 linear a.img 2048"])
        #expect(result.notes == ["md syn: \(b) left out (faulty)"])
    }

    @Test func membersOfDifferentArraysDoNotMix() throws {
        let dir = TemporaryDirectory()
        let a = member(dir, "a.img", level: 0, raidDisks: 2, slot: 0, uuid: 0x60)
        let b = member(dir, "b.img", level: 0, raidDisks: 2, slot: 1, uuid: 0x70)
        let result = try probe([a, b])
        #expect(result.devices.isEmpty)
        #expect(result.problems.count == 2)
        #expect(result.problems.allSatisfy { $0.hasPrefix("md syn (raid0, 2 devices): too few members in sync to assemble") })
    }

    @Test func aTruncatedMemberIsReportedNotCrashedOn() throws {
        let dir = TemporaryDirectory()
        let a = member(dir, "a.img", level: 1, raidDisks: 2, slot: 0)
        #expect(truncate(a, 4096 + 100) == 0)  // the superblock cut short: no magic/checksum to trust
        let result = try probe([a])
        #expect(result.devices.isEmpty)
        #expect(result.problems.isEmpty || result.problems.allSatisfy { $0.contains(a) })
    }
}

// The README's NAS: four disks with a GPT partition each, md RAID5 (1.2, left-symmetric) over the
// partitions, LVM on the array — made by the real tools (Fixtures/probe/nas). The raid line cannot be
// composed without the raid target, but probe's own reads through the array (the RAID5 data layout,
// and parity when a member is missing) must give the kernel's LV bytes.
@Suite struct NASProbeTests {
    @Test func partitionsRaid5AndLVMBecomeTheKernelsTables() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("nas", into: dir)
        let result = try probe(images.values.sorted())
        #expect(result.problems.isEmpty, "\(result.problems)")
        #expect(dumpLines(result, dir) == [
            "nas1p1: 0 47071 linear nas1.img 2048", "nas2p1: 0 47071 linear nas2.img 2048",
            "nas3p1: 0 47071 linear nas3.img 2048", "nas4p1: 0 47071 linear nas4.img 2048",
            "nas_rimage_0: 0 44928 linear nas1p1 2048", "nas_rimage_1: 0 44928 linear nas2p1 2048",
            "nas_rimage_2: 0 44928 linear nas3p1 2048", "nas_rimage_3: 0 44928 linear nas4p1 2048",
            "nas: 0 134784 raid raid5_ls 1 128 4 - nas_rimage_0 - nas_rimage_1 - nas_rimage_2 - nas_rimage_3",
            "vg_nas-data: 0 131072 linear nas 2304",
        ])
        // These tables (the LV's aside) were loaded into the kernel: dm-raid presented /dev/md0's bytes.
        let check = kernelResult("nas", "dm-raid-check.txt").split(separator: "\n").map(String.init)
        #expect(check.contains("nas: 0 134784 raid raid5_ls 1 128 4 - nas_rimage_0 - nas_rimage_1 - nas_rimage_2 - nas_rimage_3"))
        #expect(check.last == kernelResult("nas", "md-nas.sha256"))
        #expect(kernelResult("nas", "lvm-dmsetup-table.txt") == "vg_nas-data: 0 131072 linear 9:0 2304")
        #expect(String(134784 * 512) == kernelResult("nas", "md-nas.size"))
        let lv = try #require(result.volumes["vg_nas-data"])
        #expect(sha256(try readAll(lv)) == kernelResult("nas", "vg_nas_data.sha256"))
    }

    @Test func aDegradedRaid5IsReadThroughItsParity() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("nas", into: dir)
        let result = try probe([images["nas1"]!, images["nas3"]!, images["nas4"]!])
        #expect(dumpLines(result, dir).contains("nas: 0 134784 raid raid5_ls 1 128 4 - nas_rimage_0 - - - nas_rimage_2 - nas_rimage_3"))
        let lv = try #require(result.volumes["vg_nas-data"])
        #expect(sha256(try readAll(lv)) == kernelResult("nas", "vg_nas_data.sha256"))
    }
}

// RAID6 in the layouts beyond mdadm's default, made by the real mdadm 4.2 (Fixtures/probe/md-raid6, the
// third run of md-parity-fixtures.sh): md's own layouts become `mdraid` lines, the `-6` layout (Q on
// the last member) dm-raid's `raid6_ls_6` over `_rimage_N` devices — that table, loaded into the
// kernel through the oracle, presented the same bytes as /dev/md14. Each must compose to the kernel's
// /dev/mdN, and probe's own reader (what it looks for LVM labels and partitions through) must read the
// same bytes, whole and with a member missing (its chunks rebuilt from P).
@Suite struct MDRaid6LayoutProbeTests {
    struct Array: Sendable, CustomStringConvertible {
        /// The dump's name, the kernel's result tag, the members' file name prefix, probe's line.
        var name: String, tag: String, disks: String, line: String
        var description: String { tag }
    }

    static let arrays = [
        Array(name: "r6la", tag: "r6la-v12", disks: "la6", line: "r6la: 0 28672 mdraid raid6 left-asymmetric 128 14336 4 la6a.img 2048 la6b.img 2048 la6c.img 2048 la6d.img 2048"),
        Array(name: "r6rs", tag: "r6rs-v11", disks: "rs6", line: "r6rs: 0 28672 mdraid raid6 right-symmetric 64 14336 4 rs6a.img 2048 rs6b.img 2048 rs6c.img 2048 rs6d.img 2048"),
        Array(name: "r6ra", tag: "r6ra-v10", disks: "ra6", line: "r6ra: 0 32704 mdraid raid6 right-asymmetric 32 16352 4 ra6a.img 0 ra6b.img 0 ra6c.img 0 ra6d.img 0"),
        Array(name: "md13", tag: "r6pf-v090", disks: "pf6", line: "md13: 0 32512 mdraid raid6 parity-first 128 16256 4 pf6a.img 0 pf6b.img 0 pf6c.img 0 pf6d.img 0"),
        Array(name: "r6ls6", tag: "r6ls6-v12", disks: "ls6", line: "r6ls6: 0 28672 raid raid6_ls_6 1 64 4 - r6ls6_rimage_0 - r6ls6_rimage_1 - r6ls6_rimage_2 - r6ls6_rimage_3"),
    ]

    @Test(arguments: arrays)
    func eachLayoutComposesToTheKernelsArray(_ array: Array) throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("md-raid6", into: dir)
        let members = images.keys.filter { $0.hasPrefix(array.disks) }.sorted()
        #expect(members.count == 4, "\(members)")
        let result = try probe(members.map { images[$0]! })
        #expect(result.problems.isEmpty, "\(result.problems)")
        #expect(dumpLines(result, dir).contains(array.line), "\(result.dump)")
        let device = try #require(result.devices.first { $0.name == array.name })
        #expect(String(device.lines.reduce(0) { $0 + $1.length } * 512) == kernelResult("md-raid6", "\(array.tag).size"))
        #expect(try composedDigest(result.dump, top: array.name) == kernelResult("md-raid6", "\(array.tag).sha256"))
        #expect(sha256(try readAll(try #require(result.volumes[array.name]))) == kernelResult("md-raid6", "\(array.tag).sha256"))

        // The second member gone: the table has `- -` for it, and both the raid targets and probe's
        // reader rebuild its chunks.
        let degraded = try probe(members.enumerated().filter { $0.offset != 1 }.map { images[$0.element]! })
        let line = try #require(degraded.devices.first { $0.name == array.name }?.lines.first)
        #expect(line.arguments.contains("-"))
        #expect(try composedDigest(degraded.dump, top: array.name) == kernelResult("md-raid6", "\(array.tag).sha256"))
        #expect(sha256(try readAll(try #require(degraded.volumes[array.name]))) == kernelResult("md-raid6", "\(array.tag).sha256"))
    }
}

@Suite struct MDConflictProbeTests {
    @Test func aDeviceWithSuperblocksOfTwoArraysIsLeftOutAndReported() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("md", into: dir)
        // r0a (1.2 at sector 8) also gets v09a's 0.90 superblock at its end: two arrays claim it.
        let at = UInt64((16384 & ~127) - 128) * 512
        patch(images["r0a"]!, at: at, readRange(images["v09a"]!, at: at, count: 4096))
        let result = try probe([images["r0a"]!, images["r0b"]!])
        #expect(result.devices.isEmpty)
        let first = try #require(result.problems.first)
        #expect(first.hasPrefix("\(images["r0a"]!): md: superblocks of two arrays (1.2 of "))
        #expect(first.contains("at sector 8, 0.90 of "))
        #expect(first.hasSuffix("at sector 16256): the member is left out; zero the stale one with mdadm --zero-superblock --metadata=…"))
    }
}

// Partitions on md (Fixtures/probe/md-part, md-part-fixtures.sh): a GPT written on /dev/md0, a RAID5
// of three members, by the real sfdisk in the kernel oracle's guest. The array's name is the number
// mdadm --create /dev/md0 writes (`host:0`), so it is md0 and its partitions md0p1, md0p2 as the
// kernel showed them; each composes to the guest's digest of /dev/md0pN.
@Suite struct MDPartitionProbeTests {
    @Test func aGPTOnAnMDArrayGivesItsPartitionsAsTheKernelShowedThem() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("md-part", into: dir)
        let result = try probe(images.values.sorted())
        #expect(result.problems.isEmpty, "\(result.problems)")
        #expect(dumpLines(result, dir) == [
            "md0_rimage_0: 0 14336 linear mpa.img 2048",
            "md0_rimage_1: 0 14336 linear mpb.img 2048",
            "md0_rimage_2: 0 14336 linear mpc.img 2048",
            "md0: 0 28672 raid raid5_ls 1 128 3 - md0_rimage_0 - md0_rimage_1 - md0_rimage_2",
            "md0p1: 0 8192 linear md0 2048",
            "md0p2: 0 16384 linear md0 10240",
        ])
        // mdadm --create /dev/md0 without --name wrote `host:0`, which mdadm assembles as /dev/md/0, md0.
        #expect(kernelResult("md-part", "md0-examine-mpa.txt").contains("Name : dm-oracle:0  (local to host dm-oracle)"))
        #expect(kernelResult("md-part", "md0-examine-scan.txt").hasPrefix("ARRAY /dev/md/0 "))
        // The starts and sizes sfdisk --dump printed in the guest.
        let dump = kernelResult("md-part", "sfdisk-dump.txt")
        #expect(dump.contains("/dev/md0p1 : start=        2048, size=        8192"))
        #expect(dump.contains("/dev/md0p2 : start=       10240, size=       16384"))
        for name in ["md0", "md0p1", "md0p2"] {
            let device = try #require(result.devices.first { $0.name == name })
            #expect(String(device.lines.reduce(0) { $0 + $1.length } * 512) == kernelResult("md-part", "\(name).size"), "\(name) size")
            #expect(try composedDigest(result.dump, top: name) == kernelResult("md-part", "\(name).sha256"), "\(name) bytes")
        }
        // probe's own reader through the parity layout and the partition reads the same bytes.
        #expect(sha256(try readAll(try #require(result.volumes["md0p1"]))) == kernelResult("md-part", "md0p1.sha256"))
    }

    @Test func theArrayStillComposesWithAMemberMissing() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("md-part", into: dir)
        let result = try probe([images["mpa"]!, images["mpc"]!])
        #expect(dumpLines(result, dir).contains("md0p1: 0 8192 linear md0 2048"))
        #expect(try composedDigest(result.dump, top: "md0p1") == kernelResult("md-part", "md0p1.sha256"))
        #expect(try composedDigest(result.dump, top: "md0p2") == kernelResult("md-part", "md0p2.sha256"))
    }
}

