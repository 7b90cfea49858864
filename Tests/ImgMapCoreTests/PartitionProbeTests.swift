import Foundation
import Testing

@testable import ImgMapCore

// Partition tables made by the real sfdisk, sgdisk and fdisk on plain files: probe's `<disk>p<N>`
// devices must have the numbers, starts and sizes `sfdisk --json` reports, and a partition composes
// to exactly those bytes of the disk. Corrupt GPTs fall back to the backup; broken EBR chains stop.

private let partitionToolsMissing = !toolExists("sfdisk") || !toolExists("sgdisk")

@Suite(.disabled(if: partitionToolsMissing, "sfdisk/sgdisk missing (apt-get install fdisk gdisk)"))
struct PartitionProbeTests {
    /// A 64 MiB image whose every sector holds its own number (so offsets show), partitioned by `script`.
    func disk(_ directory: TemporaryDirectory, _ name: String, sfdisk script: String) throws -> String {
        let path = directory.sparseImage(name, sectors: 131072)
        try fillSectorNumbers(path, sectors: 131072)
        #expect(try shell("printf '\(script)' | sfdisk -q '\(path)' >/dev/null 2>&1") == 0)
        return path
    }

    func fillSectorNumbers(_ path: String, sectors: UInt64) throws {
        let fd = open(path, O_WRONLY)
        defer { close(fd) }
        var chunk = [UInt8](repeating: 0x20, count: 512 * 256)
        var s: UInt64 = 0
        while s < sectors {
            for k in 0..<256 {
                let tag = Array("sector \(s + UInt64(k))\n".utf8)
                chunk.replaceSubrange(k * 512..<k * 512 + tag.count, with: tag)
            }
            _ = chunk.withUnsafeBytes { pwrite(fd, $0.baseAddress, chunk.count, off_t(s * 512)) }
            s += 256
        }
    }

    /// `sfdisk --json` of an image: (number, start, size) of each partition.
    func sfdiskPartitions(_ path: String, in directory: TemporaryDirectory) throws -> [(Int, UInt64, UInt64)] {
        let run = try shell("sfdisk --json '\(path)'", in: directory)
        let object = try JSONSerialization.jsonObject(with: Data(run.stdout)) as! [String: Any]
        let table = object["partitiontable"] as! [String: Any]
        return (table["partitions"] as! [[String: Any]]).map { p in
            let node = p["node"] as! String
            let number = Int(node.reversed().prefix { $0.isNumber }.reversed().map(String.init).joined())!
            return (number, UInt64(p["start"] as! Int), UInt64(p["size"] as! Int))
        }
    }

    @Test func mbrPrimaryExtendedAndLogicalPartitionsMatchSfdisk() throws {
        let dir = TemporaryDirectory()
        let path = try disk(dir, "dos.img", sfdisk: "label: dos\\nstart=2048, size=20480, type=83, bootable\\nstart=22528, size=10240, type=8e\\nstart=34816, type=5\\nstart=36864, size=4096, type=83\\nstart=43008, size=8192, type=82\\n")
        let result = try probe([path])
        #expect(result.problems.isEmpty)
        var expected: [String] = []
        for (n, start, size) in try sfdiskPartitions(path, in: dir) {
            // kpartx maps an extended partition as its first two sectors only.
            expected.append("dosp\(n): 0 \(n == 3 ? 2 : size) linear dos.img \(start)")
        }
        #expect(dumpLines(result, dir) == expected)
        #expect(expected.count == 5)
        let partitions = result.report["devices"].flatMap { if case .array(let a) = $0 { a[0]["partition_table"] } else { nil } }
        #expect(partitions?["scheme"] == "dos")
        #expect(try composedDigest(result.dump, top: "dosp5") == sha256(readRange(path, at: 36864 * 512, count: 4096 * 512)))
    }

    @Test func gptPartitionsMatchSfdiskWithNamesAndGUIDs() throws {
        let dir = TemporaryDirectory()
        let path = dir.sparseImage("gpt.img", sectors: 131072)
        patch(path, at: 0, Array(repeating: 0x55, count: 4096))  // sgdisk -o wants a file that is not all zeros
        #expect(try shell("sgdisk -o -n 1:2048:+10M -t 1:8300 -c 1:root -n 2:0:+5M -t 2:8e00 -c '2:my lvm' -n 4:0:+1M '\(path)' >/dev/null 2>&1") == 0)
        let result = try probe([path])
        #expect(result.problems.isEmpty)
        #expect(result.notes.isEmpty, "\(result.notes)")
        let expected = try sfdiskPartitions(path, in: dir).map { "gptp\($0.0): 0 \($0.2) linear gpt.img \($0.1)" }
        #expect(dumpLines(result, dir) == expected)
        #expect(expected.map { $0.prefix(5) } == ["gptp1", "gptp2", "gptp4"])
        let text = result.report.text()
        #expect(text.contains("\"name\":\"my lvm\""))
        #expect(text.contains("\"type\":\"E6D6D379-F507-44C2-A23C-238F2A3DF928\""))  // Linux LVM
        #expect(text.contains("\"header\":\"primary\""))
    }

    func gptDisk(_ dir: TemporaryDirectory) throws -> String {
        try disk(dir, "g.img", sfdisk: "label: gpt\\nstart=2048, size=4096, name=a\\nstart=8192, size=8192, name=b\\n")
    }

    @Test func corruptPrimaryGPTHeaderFallsBackToTheBackupAndSaysSo() throws {
        let dir = TemporaryDirectory()
        let path = try gptDisk(dir)
        let good = dumpLines(try probe([path]), dir)
        patch(path, at: 512 + 40, [0xff])  // first usable LBA: the header CRC no longer matches
        let result = try probe([path])
        #expect(dumpLines(result, dir) == good)
        #expect(result.problems.isEmpty)
        #expect(result.notes.count == 1)
        #expect(result.notes.first?.contains("the primary GPT is invalid (header CRC32 mismatch") == true)
        #expect(result.notes.first?.contains("the backup at LBA 131071 is used") == true)
    }

    @Test func primaryEntryArrayCRCMismatchFallsBackToTheBackup() throws {
        let dir = TemporaryDirectory()
        let path = try gptDisk(dir)
        let good = dumpLines(try probe([path]), dir)
        patch(path, at: 1024 + 32, [0x00, 0x01])  // entry 1's first LBA in the primary array
        let result = try probe([path])
        #expect(dumpLines(result, dir) == good)
        #expect(result.notes.first?.contains("entry array CRC32 mismatch at LBA 2") == true)
    }

    @Test func bothGPTHeadersCorruptIsAProblemAndMapsNothing() throws {
        let dir = TemporaryDirectory()
        let path = try gptDisk(dir)
        patch(path, at: 512 + 40, [0xff])
        patch(path, at: 131071 * 512 + 40, [0xff])
        let result = try probe([path])
        #expect(result.devices.isEmpty)
        #expect(result.problems.count == 1)
        let problem = (result.problems.first ?? "").replacingOccurrences(of: "0x[0-9a-f]{8}", with: "0x…", options: .regularExpression)
        #expect(problem == "\(path): GPT: both headers are invalid: primary: header CRC32 mismatch (stored 0x…, computed 0x…); backup at LBA 131071: header CRC32 mismatch (stored 0x…, computed 0x…)")
        #expect(result.problems.first?.contains("backup at LBA 131071: header CRC32 mismatch") == true)
    }

    @Test func logicalSectors4096AreFoundFromTheGPTAndCountedIn512ByteSectors() throws {
        let dir = TemporaryDirectory()
        let path = dir.sparseImage("g4k.img", sectors: 131072)
        #expect(try shell("printf 'g\\nn\\n1\\n256\\n+10M\\nn\\n2\\n\\n+4M\\nw\\n' | fdisk -b 4096 '\(path)' >/dev/null 2>&1") == 0)
        let result = try probe([path])
        // fdisk -b 4096 -l: g4k.img1 256..2815 (2560 sectors), g4k.img2 2816..3839 (1024).
        #expect(dumpLines(result, dir) == ["g4kp1: 0 20480 linear g4k.img 2048", "g4kp2: 0 8192 linear g4k.img 22528"])
        #expect(result.report.text().contains("\"sector_size\":4096"))
    }

    @Test func mbrWith4096ByteSectorsNeedsTheSectorSizeOption() throws {
        let dir = TemporaryDirectory()
        let path = dir.sparseImage("d4k.img", sectors: 131072)
        #expect(try shell("printf 'o\\nn\\np\\n1\\n256\\n+10M\\nn\\ne\\n2\\n\\n\\nn\\nl\\n\\n+2M\\nw\\n' | fdisk -b 4096 '\(path)' >/dev/null 2>&1") == 0)
        let result = try probe([path], sectorSize: 4096)
        // fdisk -b 4096 -l: d4k.img1 256 (2560), d4k.img2 2816 extended, d4k.img5 3072 (512).
        #expect(dumpLines(result, dir) == ["d4kp1: 0 20480 linear d4k.img 2048", "d4kp2: 0 16 linear d4k.img 22528",
                                           "d4kp5: 0 4096 linear d4k.img 24576"])
    }

    @Test func aLoopInTheExtendedChainIsCutAndReported() throws {
        let dir = TemporaryDirectory()
        let path = try disk(dir, "loop.img", sfdisk: "label: dos\\nstart=2048, type=5\\nstart=4096, size=2048\\nstart=8192, size=2048\\nstart=12288, size=2048\\n")
        let before = dumpLines(try probe([path]), dir)
        #expect(before.count == 4)
        // The second EBR (sector 6144+…): point its link back at the first EBR (relative 0).
        let ebrs = try sfdiskPartitions(path, in: dir).filter { $0.0 >= 5 }.map { $0.1 }
        let secondEBR = ebrs[1] - 2048  // sfdisk leaves 2048 sectors between an EBR and its partition
        let link = 446 + 16
        var entry = readRange(path, at: secondEBR * 512 + UInt64(link), count: 16)
        entry.replaceSubrange(8..<12, with: [0, 0, 0, 0])
        patch(path, at: secondEBR * 512 + UInt64(link), entry)
        let result = try probe([path])
        #expect(dumpLines(result, dir) == Array(before.prefix(3)))
        #expect(result.notes == ["\(path): dos: the extended partition chain loops: the EBR at sector 2048 is linked again; the chain is cut there"])
    }

    @Test func anEBRLinkPastTheExtendedPartitionEndsTheChain() throws {
        let dir = TemporaryDirectory()
        let path = try disk(dir, "far.img", sfdisk: "label: dos\\nstart=2048, size=20480, type=5\\nstart=4096, size=2048\\nstart=8192, size=2048\\n")
        patch(path, at: 2048 * 512 + 446 + 16 + 8, [0xff, 0xff, 0xff, 0x00])
        let result = try probe([path])
        #expect(dumpLines(result, dir).count == 2)
        #expect(result.notes.first?.contains("links to sector 16779263, outside the extended partition (sectors 2048+20480)") == true)
    }

    @Test func aTruncatedGPTDiskIsReportedNotCrashedOn() throws {
        let dir = TemporaryDirectory()
        let path = try gptDisk(dir)
        #expect(truncate(path, 1536) == 0)  // protective MBR and the primary header only
        let result = try probe([path])
        #expect(result.devices.isEmpty)
        #expect(result.problems.first?.contains("GPT: both headers are invalid") == true)
    }

    @Test func aFATBootSectorIsNotAPartitionTable() throws {
        let dir = TemporaryDirectory()
        let path = dir.sparseImage("fat.img", sectors: 2048)
        var sector = [UInt8](repeating: 0x41, count: 512)  // boot code where entries would be: flags not 0/0x80
        sector[510] = 0x55
        sector[511] = 0xaa
        patch(path, at: 0, sector)
        let result = try probe([path])
        #expect(result.devices.isEmpty)
        #expect(result.problems.isEmpty)
    }
}
