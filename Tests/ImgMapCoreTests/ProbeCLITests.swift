import Foundation
import Testing

@testable import ImgMapCore

// `imgmap probe` as a user runs it: the dump goes to a file that `imgmap compose` takes as it is from
// the same directory (relative image paths), the images are never written, `-o` refuses an image,
// problems make exit status 65 with the sound part still printed.

@Suite struct ProbeCLITests {
    @Test func probeThenComposeFromTheSameDirectoryGivesTheKernelsLV() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("lvm", into: dir)
        try expectUnchanged(images.values.sorted()) {
            let probe = try imgmap(["probe", "mda.img", "mdb.img", "pva.img", "pvb.img", "-o", "layout.txt"], in: dir)
            #expect(probe.status == 0, "\(probe.stderr)")
            #expect(probe.stdout.isEmpty)
            let compose = try imgmap(["compose", "layout.txt", "--top", "vg0-root", "-o", "root.img"], in: dir)
            #expect(compose.status == 0, "\(compose.stderr)")
        }
        #expect(sha256(file: dir.file("root.img")) == kernelResult("lvm", "vg0_root.sha256"))
        let layout = String(decoding: readBytes(dir.file("layout.txt")), as: UTF8.self)
        #expect(layout.hasPrefix("nas: 0 30720 linear mda.img 2048\n"))
    }

    @Test func jsonReportsArraysAndVolumeGroups() throws {
        let dir = TemporaryDirectory()
        _ = try unpackProbeFixtures("lvm", into: dir)
        let run = try imgmap(["probe", "--json", "mda.img", "mdb.img"], in: dir)
        #expect(run.status == 0, "\(run.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(run.stdout)) as! [String: Any]
        let md = (object["md"] as! [[String: Any]]).first!
        #expect(md["level"] as? String == "raid1")
        #expect(md["array_name"] as? String == "dm-oracle:nas")
        let vg = (object["lvm"] as! [[String: Any]]).first!
        #expect(vg["name"] as? String == "nas-vg")
        #expect((object["tables"] as! [[String: Any]]).map { $0["name"] as! String } == ["nas", "nas--vg-data"])
    }

    @Test func theOutputMayNotBeAnImage() throws {
        let dir = TemporaryDirectory()
        _ = try unpackProbeFixtures("lvm", into: dir)
        try expectUnchanged([dir.file("pva.img")]) {
            let run = try imgmap(["probe", "pva.img", "pvb.img", "-o", "pva.img"], in: dir)
            #expect(run.status == 64)
            #expect(run.stderr == "imgmap: pva.img: the output is also an input (pva.img); write to another file\n")
        }
    }

    @Test func problemsExitWith65AndTheSoundPartIsStillPrinted() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("md", into: dir)
        patch(images["r0a"]!, at: 4096 + 40, [0x58])
        let run = try imgmap(["probe", "r0a.img", "r0b.img", "r1a.img", "r1b.img"], in: dir)
        #expect(run.status == 65)
        #expect(run.out == "r1: 0 14336 linear r1a.img 2048\n")
        #expect(run.stderr.contains("imgmap: probe: r0a.img: md 1.2 superblock at sector 8: checksum mismatch"))
    }

    @Test func anImageThatCannotBeOpenedIsExit66() throws {
        let dir = TemporaryDirectory()
        let run = try imgmap(["probe", "missing.img"], in: dir)
        #expect(run.status == 66)
        #expect(run.stderr == "imgmap: missing.img: open: No such file or directory\n")
    }

    @Test func nothingRecognisedIsSaidOnStderr() throws {
        let dir = TemporaryDirectory()
        dir.sparseImage("blank.img", sectors: 2048)
        let run = try imgmap(["probe", "blank.img"], in: dir)
        #expect(run.status == 0)
        #expect(run.stdout.isEmpty)
        #expect(run.stderr == "imgmap: probe: nothing found (no partition table, md superblock, LVM label or LUKS header)\n")
    }
}

@Suite struct ProbeArgumentTests {
    @Test func anImagePathWithWhitespaceIsAUsageError() throws {
        let dir = TemporaryDirectory()
        dir.sparseImage("a b.img", sectors: 2048)
        let run = try imgmap(["probe", "a b.img"], in: dir)
        #expect(run.status == 64)
        #expect(run.stderr == "imgmap: a b.img: a table cannot name an image whose path is empty or contains whitespace; rename or link it\n")
    }

    @Test func anImageNamedTwiceIsAUsageError() throws {
        let dir = TemporaryDirectory()
        dir.sparseImage("a.img", sectors: 2048)
        let run = try imgmap(["probe", "a.img", "a.img"], in: dir)
        #expect(run.status == 64)
        #expect(run.stderr == "imgmap: a.img: named twice\n")
    }
}
