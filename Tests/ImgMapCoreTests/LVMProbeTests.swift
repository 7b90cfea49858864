import Foundation
import Testing

@testable import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

// LVM2 volume groups made by the real lvm 2.03.16 (Fixtures/probe/lvm, made by make-fixtures.sh through
// the kernel oracle): vg0 on two PVs (striped, a linear LV with a dash in its name, a linear LV over both
// PVs), nas-vg on an md RAID1. probe's LV tables must be the kernel's `dmsetup table` (its major:minor
// numbers read through disks.txt) and compose to the bytes the kernel presented as /dev/VG/LV.

@Suite struct LVMProbeTests {
    /// The kernel's `dmsetup table` with guest device numbers replaced by the dump's names.
    func kernelTable() -> [String] {
        var names: [String: String] = ["9:0": "nas"]  // /dev/md0, the array the nas-vg PV is on
        let disks = (try? String(contentsOf: probeFixturesURL.appendingPathComponent("lvm/disks.txt"), encoding: .utf8)) ?? ""
        for line in disks.split(separator: "\n") {
            let f = line.split(separator: " ")
            names[String(f[0])] = String(f[1])
        }
        return kernelResult("lvm", "lvm-dmsetup-table.txt").split(separator: "\n").map { line in
            line.split(separator: " ").map { names[String($0)] ?? String($0) }.joined(separator: " ")
        }
    }

    /// The dump's lines of LV devices (not the md array), sorted as `dmsetup table` sorts (by name).
    func lvLines(_ result: ProbeResult, _ dir: TemporaryDirectory) -> [String] {
        dumpLines(result, dir).filter { !$0.hasPrefix("nas:") }.sorted()
    }

    @Test func lvmVolumeGroupsBecomeTheKernelsTablesAndBytes() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("lvm", into: dir)
        let result = try probe(images.values.sorted())
        #expect(result.problems.isEmpty, "\(result.problems)")
        #expect(lvLines(result, dir) == kernelTable())
        #expect(kernelTable().count == 5)
        for (device, tag) in [("vg0-str", "vg0_str"), ("vg0-my--data", "vg0_my-data"), ("vg0-root", "vg0_root"),
                              ("nas--vg-data", "nas-vg_data"), ("nas", "md-nas")] {
            #expect(try composedDigest(result.dump, top: device) == kernelResult("lvm", "\(tag).sha256"), "\(device)")
        }
        // Lower devices first: the md array before the LV on it.
        let names = result.devices.map(\.name)
        #expect(names.firstIndex(of: "nas")! < names.firstIndex(of: "nas--vg-data")!)
    }

    /// `--json` gives each segment's areas resolved to the device and sector the table reads, and
    /// the settings lvm recorded: a script can rebuild the striped and linear lines from the report.
    @Test func theReportGivesEachSegmentsAreasAsTheTableUsesThem() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("lvm", into: dir)
        let result = try probe(images.values.sorted())
        guard case .array(let vgs) = result.report["lvm"], let vg0 = vgs.first(where: { $0["name"] == "vg0" }),
              case .array(let lvs) = vg0["lvs"] else { Issue.record("no vg0 in \(result.report.text())"); return }
        var rebuilt: [String] = []
        for lv in lvs {
            guard case .array(let segments) = lv["segments"], case .string(let device) = lv["device"] else { continue }
            for segment in segments {
                guard case .string(let type) = segment["type"], case .unsigned(let start) = segment["start"],
                      case .unsigned(let length) = segment["length"], case .array(let areas) = segment["areas"] else {
                    Issue.record("segment without areas: \(segment.text())"); continue
                }
                let places = areas.map { area -> String in
                    guard case .string(let path) = area["device"], case .unsigned(let sector) = area["sector"] else { return "?" }
                    return "\(path.replacingOccurrences(of: dir.path + "/", with: "")) \(sector)"
                }
                if type == "striped", areas.count == 1 {
                    rebuilt.append("\(device): \(start) \(length) linear \(places[0])")
                } else if case .number(let stripe) = segment["stripe_size"] {
                    rebuilt.append("\(device): \(start) \(length) striped \(areas.count) \(stripe) \(places.joined(separator: " "))")
                }
            }
        }
        let vg0Lines = dumpLines(result, dir).filter { $0.hasPrefix("vg0-") }
        #expect(rebuilt.sorted() == vg0Lines.sorted())
        #expect(vg0Lines.count == 4)
        #expect(result.report.text().contains("\"pv\":\"pv0\",\"device\":\"\(images["pva"]!)\",\"extent\":"))
    }

    @Test func aPartialVolumeGroupsReportSaysWhichAreasAreMissing() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("lvm", into: dir)
        let result = try probe([images["pva"]!], partial: true)
        #expect(result.report.text().contains("\"pv\":\"pv1\",\"device\":null,\"extent\":"))
    }

    @Test func lvNamesDoubleTheirDashes() {
        #expect(lvmDeviceName(vg: "nas-vg", lv: "my-data") == "nas--vg-my--data")
        #expect(lvmDeviceName(vg: "vg0", lv: "root") == "vg0-root")
    }

    @Test func aCorruptLabelIsReportedAndItsVolumeGroupNotActivated() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("lvm", into: dir)
        patch(images["pvb"]!, at: 512 + 40, [0x21])  // a character of the PV UUID in the label sector
        let result = try probe([images["pva"]!, images["pvb"]!])
        #expect(result.devices.isEmpty)
        let first = (result.problems.first ?? "").replacingOccurrences(of: "0x[0-9a-f]{8}", with: "0x…", options: .regularExpression)
        #expect(first == "\(images["pvb"]!): LVM label in sector 1: CRC mismatch (stored 0x…, computed 0x…)")
        #expect(result.problems.last?.hasPrefix("VG vg0: PV pv1 (") == true)
        #expect(result.problems.last?.hasSuffix("not found: its LVs are not activated") == true)
    }

    @Test func metadataTextFailingItsChecksumIsReported() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("lvm", into: dir)
        let path = images["pva"]!
        let header = readRange(path, at: 4096, count: 512)
        patch(path, at: 4096 + header.le64(40) + 10, [0x7a])
        let result = try probe([path])
        #expect(result.problems.first?.contains("LVM metadata area at byte 4096: metadata text at \(header.le64(40))+\(header.le64(48)) fails its checksum") == true)
    }

    @Test func duplicatePVUUIDsActivateNothingAndSaySo() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("lvm", into: dir)
        let copy = dir.file("pva-copy.img")
        #expect(try shell("cp '\(images["pva"]!)' '\(copy)'") == 0)
        let result = try probe([images["pva"]!, images["pvb"]!, copy])
        #expect(result.devices.isEmpty)
        #expect(result.problems.count == 1)
        #expect(result.problems.first?.hasPrefix("VG vg0: duplicate PV UUID fMQbpg-icj3-RMx9-MqwK-HzTY-kNOG-J4cTEc on \(images["pva"]!), \(copy)") == true)
    }

    @Test func aMissingPVIsReportedWithWhereItWasLastSeen() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("lvm", into: dir)
        let result = try probe([images["pva"]!])
        #expect(result.devices.isEmpty)
        #expect(result.problems == ["VG vg0: PV pv1 (Qg69te-cerh-3ZsL-Szeo-phms-MjAR-50UM8K, last seen as /dev/vdb) not found: its LVs are not activated"])
    }

    /// Rewrites the metadata area header of the PV at `path` to point at `text` placed at `offset`
    /// (relative to the area, wrapping as the circular buffer does), with fresh checksums.
    func relocate(_ path: String, text: [UInt8], to offset: UInt64) {
        let mda: UInt64 = 4096
        var header = readRange(path, at: mda, count: 512)
        let areaSize = header.le64(32)
        let first = Int(min(UInt64(text.count), areaSize - offset))
        patch(path, at: mda + offset, Array(text[..<first]))
        if first < text.count { patch(path, at: mda + 512, Array(text[first...])) }
        func put(_ at: Int, _ v: UInt64, _ n: Int) { for k in 0..<n { header[at + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) } }
        put(40, offset, 8)
        put(48, UInt64(text.count), 8)
        put(56, UInt64(lvmCRC(text, 0..<text.count)), 4)
        put(0, UInt64(lvmCRC(header, 4..<512)), 4)
        patch(path, at: mda, header)
    }

    func currentText(_ path: String) -> [UInt8] {
        let header = readRange(path, at: 4096, count: 512)
        return readRange(path, at: 4096 + header.le64(40), count: Int(header.le64(48)))
    }

    @Test func metadataWrappingRoundTheCircularBufferIsReadWhole() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("lvm", into: dir)
        let good = try probe([images["pva"]!, images["pvb"]!]).dump
        let text = currentText(images["pva"]!)
        let areaSize = readRange(images["pva"]!, at: 4096, count: 512).le64(32)
        relocate(images["pva"]!, text: text, to: areaSize - UInt64(text.count / 2))
        let result = try probe([images["pva"]!, images["pvb"]!])
        #expect(result.problems.isEmpty, "\(result.problems)")
        #expect(result.dump == good)
    }

    @Test func theNewestSeqnoAcrossPVsWins() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("lvm", into: dir)
        // pvb's area gets an older text: seqno 1, without the LV `root`.
        var text = String(decoding: currentText(images["pvb"]!), as: UTF8.self)
        let seqno = try #require(text.components(separatedBy: "seqno = ").dropFirst().first?.prefix { $0.isNumber })
        text = text.replacingOccurrences(of: "seqno = \(seqno)\n", with: "seqno = 1\n")
            .replacingOccurrences(of: "\nroot {", with: "\nroot_gone_in_old {")
        relocate(images["pvb"]!, text: Array(text.utf8), to: 512)
        let result = try probe([images["pva"]!, images["pvb"]!])
        #expect(result.problems.isEmpty, "\(result.problems)")
        #expect(result.devices.map(\.name) == ["vg0-str", "vg0-my--data", "vg0-root"])
        #expect(result.notes == ["VG vg0: \(images["pvb"]!) holds older metadata (seqno 1 < \(seqno)); the newest is used"])
    }

    // MARK: - The text format

    @Test func metadataTextParsesSectionsArraysStringsAndComments() throws {
        let text = """
            # comment
            vg {
            id = "a-b"
            seqno = 7
            status = ["READ", "WRITE"] # trailing
            name = "quote \\" and backslash \\\\"
            f = 1.5
            neg = -3
            sub { x = 1 }
            }
            """
        let root = try LVMConfig.parse(Array(text.utf8))
        let vg = try #require(root["vg"])
        #expect(vg["id"]?.string == "a-b")
        #expect(vg["seqno"]?.integer == 7)
        #expect(vg["status"]?.strings == ["READ", "WRITE"])
        #expect(vg["name"]?.string == "quote \" and backslash \\")
        #expect(vg["neg"]?.integer == -3)
        #expect(vg["sub"]?["x"]?.integer == 1)
    }

    @Test func malformedMetadataTextNamesTheLine() {
        for (text, line, message) in [("vg {\nid = \n}", 3, "expected a value"), ("vg {\n x = [1, 2\n", 3, "unterminated array"),
                                      ("vg {\n", 2, "unexpected end of text inside a section"), ("}", 1, "unexpected `}`"),
                                      (String(repeating: "a {", count: 100), 1, "sections nested deeper than 64")] {
            do {
                _ = try LVMConfig.parse(Array(text.utf8))
                Issue.record("parsed: \(text)")
            } catch let error as LVMConfig.ParseError {
                #expect(error.line == line, "\(text)")
                #expect(error.message == message, "\(text)")
            } catch {
                Issue.record("\(error)")
            }
        }
    }
}

/// The kernel's `dmsetup table` of LVM fixture set `set`, its device numbers named through the guest's
/// `dmsetup info` (dm devices) and disks.txt (the images).
func kernelLVMTable(_ set: String) -> [String] {
    var names: [String: String] = [:]
    for line in kernelResult(set, "lvm-dmsetup-info.txt").split(separator: "\n").dropFirst() {
        let f = line.split(separator: " ")
        names["\(f[1]):\(f[2])"] = String(f[0])
    }
    let disks = (try? String(contentsOf: probeFixturesURL.appendingPathComponent("\(set)/disks.txt"), encoding: .utf8)) ?? ""
    for line in disks.split(separator: "\n") {
        let f = line.split(separator: " ")
        names[String(f[0])] = String(f[1])
    }
    return kernelResult(set, "lvm-dmsetup-table.txt").split(separator: "\n").map { line in
        line.split(separator: " ").map { names[String($0)] ?? String($0) }.joined(separator: " ")
    }
}

/// Probes fixture set `set` whole and checks what every such fixture must give: no problems, no notes,
/// and the kernel's `dmsetup table` (`lines` lines) line for line.
func probeAsTheKernelLoadedIt(_ set: String, lines: Int, in dir: TemporaryDirectory) throws -> ProbeResult {
    let images = try unpackProbeFixtures(set, into: dir)
    let result = try probe(images.values.sorted())
    #expect(result.problems.isEmpty, "\(result.problems)")
    #expect(result.notes.isEmpty, "\(result.notes)")
    let kernel = kernelLVMTable(set)
    #expect(dumpLines(result, dir).sorted() == kernel.sorted())
    #expect(kernel.count == lines)
    return result
}

/// Checks that LV `lv` (`vg/lv`) alone was left out, said in the notes and in `--json` with `reason`,
/// and that nothing was a problem.
func expectNotMapped(_ result: ProbeResult, _ lv: String, because reason: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.problems.isEmpty, "\(result.problems)", sourceLocation: sourceLocation)
    #expect(result.notes.filter { $0.hasPrefix("LV ") } == ["LV \(lv): \(reason): not mapped"], "\(result.notes)", sourceLocation: sourceLocation)
    #expect(result.report.text().contains("\"mapped\":false,\"reason\":\"\(reason)\""), sourceLocation: sourceLocation)
}

/// Probes fixture set `set` after giving `pv`'s metadata area `edit`ed text with the next seqno, so
/// that copy is the one used.
func probeWithNewerMetadata(_ set: String, on pv: String, in dir: TemporaryDirectory, _ edit: (String) -> String) throws -> ProbeResult {
    let images = try unpackProbeFixtures(set, into: dir)
    let pvs = LVMProbeTests()
    let text = String(decoding: pvs.currentText(images[pv]!), as: UTF8.self)
    let seqno = try #require(text.components(separatedBy: "seqno = ").dropFirst().first?.prefix { $0.isNumber }.description)
    let bumped = text.replacingOccurrences(of: "seqno = \(seqno)\n", with: "seqno = \(Int(seqno)! + 1)\n")
    let newer = edit(bumped)
    #expect(newer != bumped, "the edit found nothing to change")
    pvs.relocate(images[pv]!, text: Array(newer.utf8), to: 512)
    return try probe(images.values.sorted())
}

// raid1, mirror, thin-pool + thin and snapshot LVs made by the real lvm (Fixtures/probe/lvm-types):
// probe's tables, sub-LVs and layers included, are the kernel's `dmsetup table` line for line (its
// device numbers read through dmsetup info and disks.txt). Their targets are not composed here.
@Suite struct LVMTypesProbeTests {
    @Test func raidMirrorThinAndSnapshotLVsBecomeTheKernelsTables() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("lvm-types", into: dir)
        let result = try probe(images.values.sorted())
        #expect(result.problems.isEmpty, "\(result.problems)")
        let kernel = kernelLVMTable("lvm-types")
        #expect(dumpLines(result, dir).sorted() == kernel.sorted())
        #expect(kernel.count == 17)
        // Lower devices first, so the dump loads in order.
        expectLowerFirst(result, [("vgt-r1_rimage_0", "vgt-r1"), ("vgt-pool-tpool", "vgt-thin"), ("vgt-base-real", "vgt-snap"), ("vgt-snap-cow", "vgt-snap")])
    }

    /// A segment type probe has no table for (writecache here) leaves that LV out with the reason,
    /// in the notes and in `--json`; the VG's other LVs are still mapped.
    @Test func anLVOfASegmentTypeProbeDoesNotMapIsLeftOutWithTheReason() throws {
        let dir = TemporaryDirectory()
        let result = try probeWithNewerMetadata("lvm-types", on: "tpa", in: dir) {
            $0.replacingOccurrences(of: "type = \"thin\"\n", with: "type = \"writecache\"\n")
        }
        expectNotMapped(result, "vgt/thin", because: "probe has no table for segment type writecache")
        #expect(!result.devices.contains { $0.name == "vgt-thin" })
        #expect(result.devices.contains { $0.name == "vgt-pool" })
    }
}

// raid4/5/6/10 LVs and cache LVs (writethrough, writeback) made by the real lvm (Fixtures/probe/lvm-raid,
// lvm-raid-fixtures.sh): probe's raid tables are the kernel's `dmsetup table` lines, sub-LVs included,
// and composing each LV gives the digest the guest read from /dev/vgr/LV.
@Suite struct LVMRaidProbeTests {
    @Test func raid4To10AndCacheLVsBecomeTheKernelsTablesAndComposeToItsBytes() throws {
        let dir = TemporaryDirectory()  // kept while the dump names its images
        let result = try probeAsTheKernelLoadedIt("lvm-raid", lines: 44, in: dir)
        // wb's cache holds no block (its recorded status: 0/16 cached), so this checks its line and its
        // reads through the cache target; the cachevol suite below is the one with dirty blocks.
        for lv in ["r4", "r5", "r6", "r10", "wt", "wb"] {
            #expect(try composedDigest(result.dump, top: "vgr-\(lv)") == kernelResult("lvm-raid", "vgr_\(lv).sha256"), "\(lv)")
        }
    }

    /// The cache line follows the pool's metadata: format 1 gives `1 <mode>`, the mode is the pool's
    /// cache_mode, and policy_settings become key/value pairs (as libdevmapper writes them).
    @Test func theCacheLineFollowsThePoolsFormatModeAndPolicySettings() throws {
        let dir = TemporaryDirectory()
        let result = try probeWithNewerMetadata("lvm-raid", on: "ra", in: dir) {
            $0.replacingOccurrences(of: "metadata_format = 2\n", with: "metadata_format = 1\n")
                .replacingOccurrences(of: "cache_mode = \"writeback\"\n", with: "cache_mode = \"passthrough\"\n")
                .replacingOccurrences(of: "policy = \"smq\"\n", with: "policy = \"smq\"\npolicy_settings {\nmigration_threshold = 4096\n}\n")
        }
        #expect(result.problems.isEmpty, "\(result.problems)")
        let lines = dumpLines(result, dir)
        #expect(lines.contains("vgr-wt: 0 4096 cache vgr-wtpool_cpool_cmeta vgr-wtpool_cpool_cdata vgr-wt_corig 128 1 writethrough smq 2 migration_threshold 4096"), "\(lines)")
        #expect(lines.contains("vgr-wb: 0 4096 cache vgr-wbpool_cpool_cmeta vgr-wbpool_cpool_cdata vgr-wb_corig 128 1 passthrough smq 2 migration_threshold 4096"), "\(lines)")
    }

    /// A cache pool whose metadata names no policy (older lvm text) is loaded with mq, lvm's
    /// CACHE_POLICY_WHEN_MISSING.
    @Test func aCachePoolWithoutAPolicyIsLoadedWithMQ() throws {
        let dir = TemporaryDirectory()
        let result = try probeWithNewerMetadata("lvm-raid", on: "ra", in: dir) { $0.replacingOccurrences(of: "policy = \"smq\"\n", with: "") }
        #expect(result.problems.isEmpty, "\(result.problems)")
        #expect(dumpLines(result, dir).contains("vgr-wt: 0 4096 cache vgr-wtpool_cpool_cmeta vgr-wtpool_cpool_cdata vgr-wt_corig 128 2 metadata2 writethrough mq 0"))
    }

    /// A cache whose pool is a plain LV but whose segment has no metadata_start (what marks a cachevol
    /// cache for lvm) is said not to be mapped, not guessed at.
    @Test func aCacheOverAPlainLVWithoutMetadataStartIsNotMapped() throws {
        let result = try probeWithNewerMetadata("lvm-raid", on: "ra", in: TemporaryDirectory()) {
            $0.replacingOccurrences(of: "type = \"cache-pool+METADATA_FORMAT\"\ndata = \"wtpool", with: "type = \"striped\"\ndata = \"wtpool")
        }
        #expect(result.notes.contains("LV vgr/wt: a cache over wtpool_cpool, which is neither a cache pool nor a cachevol (the segment has no metadata_start): not mapped"), "\(result.notes)")
        #expect(!result.devices.contains { $0.name == "vgr-wt" })
        #expect(result.devices.contains { $0.name == "vgr-wb" })
    }
}

// Cache LVs over a cachevol (`lvconvert --type cache --cachevol`, no cache pool) made by the real lvm
// (Fixtures/probe/lvm-cachevol, lvm-cachevol-fixtures.sh): wt in writethrough, wb in writeback with 4
// dirty blocks that only its cachevol holds. probe's lines are the kernel's `dmsetup table`, and the LVs
// and their sub-devices compose to the digests the guest read.
@Suite struct LVMCacheVolumeProbeTests {
    @Test func cachevolCacheLVsBecomeTheKernelsTablesAndComposeToItsBytes() throws {
        let dir = TemporaryDirectory()  // kept while the dump names its images
        let result = try probeAsTheKernelLoadedIt("lvm-cachevol", lines: 10, in: dir)
        #expect(kernelLVMTable("lvm-cachevol").contains("vgc-wb: 0 16384 cache vgc-wbfast_cvol-cmeta vgc-wbfast_cvol-cdata vgc-wb_corig 128 2 metadata2 writeback mq 0"))
        for device in ["wt", "wt_corig", "wtfast_cvol-cdata", "wb", "wb_corig", "wbfast_cvol-cdata"] {
            #expect(try composedDigest(result.dump, top: "vgc-\(device)") == kernelResult("lvm-cachevol", "vgc_\(device).sha256"), "\(device)")
        }
        // The dirty blocks are only on the cachevol: without them the origin reads otherwise.
        #expect(kernelResult("lvm-cachevol", "vgc_wb.sha256") != kernelResult("lvm-cachevol", "vgc_wb_corig.sha256"))
        // Lower devices first: the cachevol before its areas, the areas before the cache.
        expectLowerFirst(result, [("vgc-wtfast_cvol", "vgc-wtfast_cvol-cmeta"), ("vgc-wtfast_cvol-cdata", "vgc-wt"), ("vgc-wt_corig", "vgc-wt")])
    }

    /// Areas the cachevol cannot hold, or that lvm 2.03.16 would place elsewhere, leave the LV unmapped
    /// with the reason; the other cache LV is still mapped.
    @Test func cachevolAreasPastTheCachevolAreReportedAndNotMapped() throws {
        let good = "metadata_start = 0\nmetadata_len = 4096\ndata_start = 4096\ndata_len = 4096\n"
        for (areas, message) in [
            ("metadata_start = 0\nmetadata_len = 4096\ndata_start = 4096\ndata_len = 8192\n",
             "the cachevol's data area (4096+8192) runs past the end of wtfast_cvol (8192 sectors)"),
            ("metadata_start = 9223372036854775807\nmetadata_len = 4096\ndata_start = 4096\ndata_len = 4096\n",
             "a cachevol cache whose metadata_start is missing or out of range"),
            ("metadata_start = 8000\nmetadata_len = 4096\ndata_start = 4096\ndata_len = 4096\n",
             "the cachevol's metadata area (8000+4096) runs past the end of wtfast_cvol (8192 sectors)"),
            ("metadata_start = 0\nmetadata_len = 0\ndata_start = 4096\ndata_len = 4096\n",
             "a cachevol cache with empty or overlapping metadata and data areas"),
            ("metadata_start = 0\nmetadata_len = 2048\ndata_start = 4096\ndata_len = 4096\n",
             "a cachevol cache with metadata_start 0 and data_start 4096, where lvm 2.03.16 maps its areas at 0 and metadata_len"),
        ] {
            let result = try probeWithNewerMetadata("lvm-cachevol", on: "ca", in: TemporaryDirectory()) {
                // Only wt's segment: its areas are the first in the text.
                guard let range = $0.range(of: good) else { return $0 }
                return $0.replacingCharacters(in: range, with: areas)
            }
            #expect(result.notes.filter { $0.hasPrefix("LV ") } == ["LV vgc/wt: \(message): not mapped"], "\(areas)")
            #expect(result.problems.isEmpty, "\(result.problems)")
            let names = result.devices.map(\.name)
            #expect(!names.contains { $0.hasPrefix("vgc-wt") }, "\(names)")
            #expect(names.contains("vgc-wb"))
        }
    }

    /// A cachevol cache's settings are its own segment's; lvm 2.03.16 names no policy for it (`mq`)
    /// and so passes every setting, migration_threshold first and at least 8 chunks.
    @Test func cachevolPolicySettingsPassThroughAsLibdevmapperWritesThem() throws {
        let dir = TemporaryDirectory()
        let result = try probeWithNewerMetadata("lvm-cachevol", on: "ca", in: dir) {
            $0.replacingOccurrences(of: "cache_mode = \"writethrough\"\npolicy = \"smq\"\n",
                                    with: "cache_mode = \"passthrough\"\npolicy = \"smq\"\npolicy_settings {\nrandom_threshold = 4\nmigration_threshold = 100\n}\n")
        }
        #expect(result.problems.isEmpty, "\(result.problems)")
        #expect(dumpLines(result, dir).contains(
            "vgc-wt: 0 16384 cache vgc-wtfast_cvol-cmeta vgc-wtfast_cvol-cdata vgc-wt_corig 128 2 metadata2 passthrough mq 4 migration_threshold 1024 random_threshold 4"))
    }
}

// Thin LVs as the real lvm makes them (Fixtures/probe/lvm-thin, lvm-thin-fixtures.sh): a pool created
// with --errorwhenfull y, a thin LV, a thin snapshot (tsnap) and a COW snapshot (csnap) of it, and a thin
// snapshot (ext) of the read-only LV ro, its external origin; each written after the snapshot. probe's
// lines are the kernel's `dmsetup table`, and every LV composes to the digest the guest read.
@Suite struct LVMThinProbeTests {
    @Test func thinSnapshotsAndExternalOriginsBecomeTheKernelsTablesAndComposeToItsBytes() throws {
        let dir = TemporaryDirectory()  // kept while the dump names its images
        let result = try probeAsTheKernelLoadedIt("lvm-thin", lines: 12, in: dir)
        let kernel = kernelLVMTable("lvm-thin")
        #expect(kernel.contains("vgh-pool-tpool: 0 16384 thin-pool vgh-pool_tmeta vgh-pool_tdata 128 0 1 error_if_no_space"))
        #expect(kernel.contains("vgh-ext: 0 8192 thin vgh-pool-tpool 3 vgh-ro-real"))
        for lv in ["thin", "tsnap", "csnap", "ext", "ro"] {
            #expect(try composedDigest(result.dump, top: "vgh-\(lv)") == kernelResult("lvm-thin", "vgh_\(lv).sha256"), "\(lv)")
        }
        // Each snapshot was written after it was taken: none reads as its origin.
        for (snapshot, origin) in [("tsnap", "thin"), ("csnap", "thin"), ("ext", "ro")] {
            #expect(kernelResult("lvm-thin", "vgh_\(snapshot).sha256") != kernelResult("lvm-thin", "vgh_\(origin).sha256"), "\(snapshot)")
        }
        expectLowerFirst(result, [("vgh-ro-real", "vgh-ext"), ("vgh-ro-real", "vgh-ro"), ("vgh-thin-real", "vgh-csnap"), ("vgh-pool-tpool", "vgh-tsnap")])
    }

    /// The pool's features follow lvm's reading of the text: no zero_new_blocks skips zeroing, no
    /// discards ignores them; they are printed in pool_status's order, error_if_no_space last.
    @Test func thinPoolFeaturesFollowLvmsDefaultsInTheKernelsOrder() throws {
        for (settings, features) in [("", "3 skip_block_zeroing ignore_discard error_if_no_space"),
                                     ("discards = \"nopassdown\"\nzero_new_blocks = 0\n", "3 skip_block_zeroing no_discard_passdown error_if_no_space"),
                                     ("discards = \"ignore\"\nzero_new_blocks = 1\n", "2 ignore_discard error_if_no_space")] {
            let dir = TemporaryDirectory()
            let result = try probeWithNewerMetadata("lvm-thin", on: "ha", in: dir) {
                $0.replacingOccurrences(of: "discards = \"passdown\"\nzero_new_blocks = 1\n", with: settings)
            }
            #expect(result.problems.isEmpty, "\(result.problems)")
            #expect(dumpLines(result, dir).contains("vgh-pool-tpool: 0 16384 thin-pool vgh-pool_tmeta vgh-pool_tdata 128 0 \(features)"), "\(settings)")
        }
    }

    /// A thin LV whose external origin is not defined is left out with the reason; the VG's other
    /// LVs are mapped, and ro, no longer anyone's external origin, loses its -real layer.
    @Test func anExternalOriginThatIsNotDefinedLeavesItsThinLVOut() throws {
        let dir = TemporaryDirectory()
        let result = try probeWithNewerMetadata("lvm-thin", on: "ha", in: dir) {
            $0.replacingOccurrences(of: "external_origin = \"ro\"\n", with: "external_origin = \"gone\"\n")
        }
        expectNotMapped(result, "vgh/ext", because: "the thin segment's external origin gone is not defined")
        let names = result.devices.map(\.name)
        #expect(!names.contains("vgh-ext") && !names.contains("vgh-ro-real"), "\(names)")
        #expect(dumpLines(result, dir).contains("vgh-ro: 0 8192 linear hb.img 6144"))
        #expect(names.contains("vgh-tsnap") && names.contains("vgh-csnap"))
    }
}

@Suite struct LVMPartialProbeTests {
    @Test func partialActivationMapsTheMissingPVsAreasAsErrors() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("lvm", into: dir)
        let result = try probe([images["pva"]!], partial: true)
        // vg0-str stripes over both PVs and vg0-root has a segment on each: what was on pvb is `error`.
        #expect(dumpLines(result, dir) == [
            "vg0-str: 0 8192 error",
            "vg0-my--data: 0 4096 linear pva.img 6144",
            "vg0-root: 0 26624 error",
            "vg0-root: 26624 22528 linear pva.img 10240",
        ])
        #expect(result.problems == ["VG vg0: PV pv1 (Qg69te-cerh-3ZsL-Szeo-phms-MjAR-50UM8K) not found: activated partially, its areas read as errors"])
        #expect(try composedDigest(result.dump, top: "vg0-my--data") == kernelResult("lvm", "vg0_my-data.sha256"))
    }
}
