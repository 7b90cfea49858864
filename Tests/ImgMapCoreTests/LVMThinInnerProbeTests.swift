import Foundation
import Testing

@testable import ImgMapCore

// A VG inside a thin LV, as on a Proxmox host's local-lvm (Fixtures/probe/lvm-thin-inner, made by the
// real lvm 2.03.16 and sfdisk in the kernel oracle): VG pve with a thin pool and a thin LV
// vm-100-disk-0 holding a GPT, whose partition is the PV of VG inner with a linear LV root. probe reads
// the thin LV through imgmap's thin target (the pool's btrees), finds the GPT and the inner VG, and
// gives the kernel's `dmsetup table` line for line.

@Suite struct LVMThinInnerProbeTests {
    @Test func aVolumeGroupInsideAThinLVIsFoundAndComposesToTheGuestsBytes() throws {
        let dir = TemporaryDirectory()  // kept while the dump names its images
        let result = try probeAsTheKernelLoadedIt("lvm-thin-inner", lines: 7, in: dir)
        let kernel = kernelLVMTable("lvm-thin-inner")
        // kpartx's name for a partition of a dm device: the device's name and `p1`.
        #expect(kernel.contains("pve-vm--100--disk--0p1: 0 12288 linear pve-vm--100--disk--0 2048"))
        #expect(kernel.contains("inner-root: 0 8192 linear pve-vm--100--disk--0p1 2048"))
        expectLowerFirst(result, [("pve-data-tpool", "pve-vm--100--disk--0"), ("pve-vm--100--disk--0", "pve-vm--100--disk--0p1"),
                                  ("pve-vm--100--disk--0p1", "inner-root")])
        #expect(try composedDigest(result.dump, top: "inner-root") == kernelResult("lvm-thin-inner", "inner_root.sha256"))
        #expect(try composedDigest(result.dump, top: "pve-vm--100--disk--0p1") == kernelResult("lvm-thin-inner", "part.sha256"))
        // What probe read through the thin target counts; metadata only, well under the 32 MiB of images.
        #expect(result.bytesRead > 0 && result.bytesRead < 1 << 20, "\(result.bytesRead)")
        #expect(result.report.text().contains("\"bytes_read\":\(result.bytesRead)"))
    }

    /// A thin snapshot of the VM disk holds the same PV (same UUID): probe does not read snapshots
    /// through, so the inner VG is found once, from its origin, and `--json` says why the snapshot was not.
    @Test func aSnapshotOfTheThinLVIsNotReadThroughSoTheInnerPVIsFoundOnce() throws {
        let dir = TemporaryDirectory()
        let snapshot = "snap-100 {\nid = \"AAAAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAAAA\"\nstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\nflags = []\nsegment_count = 1\n\nsegment1 {\nstart_extent = 0\nextent_count = 8\n\ntype = \"thin\"\nthin_pool = \"data\"\ntransaction_id = 0\ndevice_id = 1\norigin = \"vm-100-disk-0\"\n}\n}\n\n"
        let result = try probeWithNewerMetadata("lvm-thin-inner", on: "ia", in: dir) {
            $0.replacingOccurrences(of: "lvol0_pmspare {", with: snapshot + "lvol0_pmspare {")
        }
        #expect(result.problems.isEmpty, "\(result.problems)")
        let names = result.devices.map(\.name)
        #expect(names.contains("pve-snap--100") && names.contains("inner-root"))
        #expect(!names.contains("pve-snap--100p1"))
        #expect(result.report.text().contains("\"read_through\":false,\"read_through_reason\":\"a snapshot: its contents repeat its origin's"))
        #expect(try composedDigest(result.dump, top: "inner-root") == kernelResult("lvm-thin-inner", "inner_root.sha256"))
    }

    /// A pool whose metadata the thin-pool target refuses: the thin LV's line is still printed, a note
    /// says why it was not read through, and nothing inside it is found.
    @Test func aThinLVOverCorruptPoolMetadataIsPrintedButNotReadThrough() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("lvm-thin-inner", into: dir)
        let clean = try probe(images.values.sorted())
        let tmeta = try #require(clean.devices.first { $0.name == "pve-data_tmeta" }?.lines.first)
        #expect(tmeta.target == "linear")
        let (image, sector) = (tmeta.arguments[0], try #require(UInt64(tmeta.arguments[1])))
        // The thin-pool superblock's checksum and magic (block 0 of the metadata device).
        patch(image, at: sector * 512, [UInt8](repeating: 0xa5, count: 64))
        let result = try probe(images.values.sorted())
        #expect(result.problems.isEmpty, "\(result.problems)")
        let lines = dumpLines(result, dir)
        #expect(lines == kernelLVMTable("lvm-thin-inner").filter { !$0.hasPrefix("inner-") && !$0.contains("p1:") }
            .sorted { order(of: $0, in: clean) < order(of: $1, in: clean) })
        let notes = result.notes.filter { $0.hasPrefix("LV pve/vm-100-disk-0: not read through: ") }
        #expect(notes.count == 1, "\(result.notes)")
        #expect(result.report.text().contains("\"read_through\":false"))
    }

    func order(of line: String, in result: ProbeResult) -> Int {
        result.devices.firstIndex { line.hasPrefix($0.name + ":") } ?? -1
    }

    /// The thin pool's data PV inside a LUKS2 container, probe run without --show-keys: the dump's
    /// crypt line shows zeros, but probe reads through the thin LV with the volume key it unlocked
    /// (kept in memory, never printed), so the GPT and the inner VG are still found.
    @Test(.disabled(if: !toolExists("cryptsetup"), "cryptsetup missing"))
    func aThinLVOverAnOpenedLUKSVolumeIsReadThroughWithItsKey() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("lvm-thin-inner", into: dir)
        let (container, _) = try LUKSProbeTests.container(holding: images["ia"]!, in: dir)
        let result = try Prober(images: [container, images["ib"]!], options: .init(passphrase: SecretBytes(copying: Array("pw".utf8)))).run()
        #expect(result.problems.isEmpty, "\(result.problems)")
        #expect(result.notes.isEmpty, "\(result.notes)")
        let lines = dumpLines(result, dir)
        #expect(lines.contains("pve-vm--100--disk--0p1: 0 12288 linear pve-vm--100--disk--0 2048"))
        #expect(lines.contains("inner-root: 0 8192 linear pve-vm--100--disk--0p1 2048"))
        #expect(!result.dump.contains(LUKSProbeTests.volumeKeyHex))
        #expect(!result.report.text().contains(LUKSProbeTests.volumeKeyHex))
    }
}
