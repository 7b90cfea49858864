import Foundation
import Testing

@testable import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

// verify: an image compared with the mapped device. Every differing range is reported once, merged,
// with the table line and image sector its expected bytes come from; truncated, longer and streamed
// images; error extents; holes on both sides.

/// Runs `Verify` over the image at `path`; returns the report and the mismatches in order.
func verifyImage(_ map: SectorMap, _ path: String, onError: ErrorPolicy = .fail, stream: Bool = false,
                 bufferSize: Int? = nil) throws -> (report: Verify.Report, mismatches: [Verify.Mismatch]) {
    var mismatches: [Verify.Mismatch] = []
    var options = Verify.Options(onError: onError)
    if let bufferSize { options.bufferSize = bufferSize }
    let report = try Verify(map: map, options: options).run(image: ImageFile(openForReading: path), isStream: stream) {
        mismatches.append($0)
    }
    return (report, mismatches)
}

/// XORs the byte at `offset` of the file at `path` with 0x5a.
func flipByte(_ path: String, at offset: UInt64) {
    let fd = open(path, O_RDWR)
    precondition(fd >= 0)
    defer { close(fd) }
    var byte: UInt8 = 0
    precondition(pread(fd, &byte, 1, off_t(offset)) == 1)
    byte ^= 0x5a
    precondition(pwrite(fd, &byte, 1, off_t(offset)) == 1)
}

/// A composed image of `table` (errors as zeros) written to `name` in the fixture's folder.
func composedImage(_ f: CLIFixture, _ table: String, lower: [(String, String)] = [], name: String = "out.img") throws -> (SectorMap, String) {
    let loaded = try loadTables(table, lower: lower, devices: ["A": f.a, "B": f.b])
    let map = SectorMap(top: loaded.top)
    let path = f.folder.file(name)
    let out = try OutputFile(path: path, inputs: loaded.leaves.map(\.image))
    _ = try Compose(map: map, options: .init(onError: .zero)).run(to: out)
    try out.commit()
    return (map, path)
}

struct VerifyTests {
    @Test(arguments: GoldenCase.names(mode: "read"))
    func goldenReadCaseVerifiesAgainstItsComposedImage(_ name: String) throws {
        let (golden, map, folder) = try composeGoldenReadCase(name)
        let path = folder.file("out.img")
        #expect(try verifyImage(map, path, onError: .zero).report.identical)
        // Under fail, exactly the kernel's error ranges are unverifiable (each extent reported apart).
        let strict = try verifyImage(map, path).mismatches
        #expect(strict.allSatisfy { $0.kind == .unverifiable })
        var merged = SectorRangeList()
        for mismatch in strict { merged.append(start: mismatch.range.start, length: mismatch.range.length) }
        #expect(merged.ranges.map { [$0.start, $0.length] } == (golden.errors ?? []))
    }

    @Test func composedImageIsIdentical() throws {
        let f = CLIFixture()
        let (map, image) = try composedImage(f, CLIFixture.cleanTable)
        try expectUnchanged(f.images + [image]) {
            let (report, mismatches) = try verifyImage(map, image)
            #expect(mismatches.isEmpty)
            #expect(report.identical)
            #expect(report.summary == "identical: 73728 bytes (144 sectors)")
            #expect(report.json == "{\"identical\":true,\"ranges\":0,\"sectors\":0,\"device_bytes\":73728,\"image_bytes\":73728}")
        }
    }

    @Test func flippedByteInALinearExtentIsThatSectorWithItsImageSector() throws {
        let f = CLIFixture()
        let (map, image) = try composedImage(f, CLIFixture.cleanTable)
        flipByte(image, at: 10 * 512 + 100)
        let (report, mismatches) = try verifyImage(map, image)
        #expect(mismatches.map(\.description) == ["sectors 10+1 differ — t.table:1 linear A (\(f.a)) sector 18"])
        #expect(mismatches.map(\.json) == [
            "{\"kind\":\"differs\",\"start\":10,\"length\":1,\"table\":\"t.table\",\"line\":1,\"target\":\"linear\",\"device\":\"A\",\"file\":\"\(f.a)\",\"offset\":18}",
        ])
        #expect(report.summary == "different: 1 range (1 sector) differs")
        #expect(report.json == "{\"identical\":false,\"ranges\":1,\"sectors\":1,\"device_bytes\":73728,\"image_bytes\":73728}")
    }

    @Test func flippedByteInAStripedChunkNamesTheStripesImage() throws {
        let f = CLIFixture()
        let (map, image) = try composedImage(f, CLIFixture.cleanTable)
        // Device sector 80 + 8 + 3: chunk 1 of the striped segment, on B at sector 3.
        flipByte(image, at: 91 * 512 + 511)
        let (_, mismatches) = try verifyImage(map, image)
        #expect(mismatches.map(\.description) == ["sectors 91+1 differ — t.table:3 striped B (\(f.b)) sector 3"])
        #expect(mismatches.first?.file == f.b && mismatches.first?.fileSector == 3)
    }

    @Test func nonZeroByteInAZeroExtentExpectsZeros() throws {
        let f = CLIFixture()
        let (map, image) = try composedImage(f, CLIFixture.cleanTable)
        flipByte(image, at: 70 * 512)
        let (_, mismatches) = try verifyImage(map, image)
        #expect(mismatches.map(\.description) == ["sectors 70+1 differ — t.table:2 zero (expected zeros)"])
        #expect(mismatches.map(\.json) == [
            "{\"kind\":\"differs\",\"start\":70,\"length\":1,\"table\":\"t.table\",\"line\":2,\"target\":\"zero\",\"device\":null,\"file\":null,\"offset\":null}",
        ])
    }

    @Test func flipInAStackedLayerNamesTheLowerTablesLine() throws {
        let f = CLIFixture()
        let lower = [("S", "0 64 striped 2 8 A 0 B 0\n")]
        let (map, image) = try composedImage(f, "0 32 linear S 16\n32 8 zero\n", lower: lower)
        // Top sector 3 is S sector 19: chunk 2 of S, the second chunk on A, at A sector 8 + 3.
        flipByte(image, at: 3 * 512 + 42)
        let (_, mismatches) = try verifyImage(map, image)
        #expect(mismatches.map(\.description) == ["sectors 3+1 differ — S.table:1 striped A (\(f.a)) sector 11"])
    }

    @Test func separateFlipsAreSeparateRangesAndAdjacentOnesMerge() throws {
        let f = CLIFixture()
        let (map, image) = try composedImage(f, CLIFixture.cleanTable)
        for sector: UInt64 in [5, 6, 7, 20, 40] { flipByte(image, at: sector * 512 + 17) }
        let (report, mismatches) = try verifyImage(map, image)
        #expect(mismatches.map(\.description) == [
            "sectors 5+3 differ — t.table:1 linear A (\(f.a)) sector 13",
            "sectors 20+1 differ — t.table:1 linear A (\(f.a)) sector 28",
            "sectors 40+1 differ — t.table:1 linear A (\(f.a)) sector 48",
        ])
        #expect(report.ranges == 3 && report.sectors == 5)
    }

    @Test func adjacentFlipsInDifferentExtentsStaySeparate() throws {
        let f = CLIFixture()
        let (map, image) = try composedImage(f, CLIFixture.cleanTable)
        // The last sector of the linear segment and the first of the zero segment: each range keeps
        // its own source, so they are not merged.
        for sector: UInt64 in [63, 64] { flipByte(image, at: sector * 512) }
        let (_, mismatches) = try verifyImage(map, image)
        #expect(mismatches.map(\.description) == [
            "sectors 63+1 differ — t.table:1 linear A (\(f.a)) sector 71",
            "sectors 64+1 differ — t.table:2 zero (expected zeros)",
        ])
    }

    @Test func flipsAcrossBufferWindowsMergeIntoOneRange() throws {
        let f = CLIFixture()
        let (map, image) = try composedImage(f, "0 200 linear A 50\n")
        for sector: UInt64 in 30..<42 { flipByte(image, at: sector * 512 + 1) }
        let (_, mismatches) = try verifyImage(map, image, bufferSize: 4096)
        #expect(mismatches.map(\.description) == ["sectors 30+12 differ — t.table:1 linear A (\(f.a)) sector 80"])
    }

    @Test func truncatedImageReportsTheMissingRangesAndTheShortfall() throws {
        let f = CLIFixture()
        let (map, image) = try composedImage(f, "0 64 linear A 8\n64 16 zero\n")
        #expect(truncate(image, 20000) == 0)
        let (report, mismatches) = try verifyImage(map, image)
        #expect(mismatches.map(\.description) == [
            "sectors 39+25 missing — t.table:1 linear A",
            "sectors 64+16 missing — t.table:2 zero (expected zeros)",
        ])
        #expect(mismatches.first?.json == "{\"kind\":\"missing\",\"start\":39,\"length\":25,\"table\":\"t.table\",\"line\":1,\"target\":\"linear\",\"device\":\"A\",\"file\":null,\"offset\":null}")
        #expect(report.summary == "different: 2 ranges (41 sectors) differ; the image is 20960 bytes shorter than the device (20000 < 40960)")
    }

    @Test func truncatedImageWithADifferenceBeforeTheEndReportsBoth() throws {
        let f = CLIFixture()
        let (map, image) = try composedImage(f, "0 64 linear A 8\n")
        flipByte(image, at: 2 * 512)
        #expect(truncate(image, 10 * 512) == 0)
        let (_, mismatches) = try verifyImage(map, image)
        #expect(mismatches.map(\.description) == [
            "sectors 2+1 differ — t.table:1 linear A (\(f.a)) sector 10",
            "sectors 10+54 missing — t.table:1 linear A",
        ])
    }

    @Test func longerImageIsDifferentWithNoRanges() throws {
        let f = CLIFixture()
        let (map, image) = try composedImage(f, "0 64 linear A 8\n64 16 zero\n")
        #expect(truncate(image, 40960 + 100) == 0)
        let (report, mismatches) = try verifyImage(map, image)
        #expect(mismatches.isEmpty)
        #expect(!report.identical)
        #expect(report.summary == "different: the image is 100 bytes longer than the device (41060 > 40960)")
    }

    @Test func streamedImageGivesTheSameReportAsTheFile() throws {
        let f = CLIFixture()
        let (map, image) = try composedImage(f, CLIFixture.mixedTable)
        for sector: UInt64 in [5, 6, 70, 100, 159] { flipByte(image, at: sector * 512 + 3) }
        for onError in [ErrorPolicy.fail, .zero] {
            let file = try verifyImage(map, image, onError: onError)
            let stream = try verifyImage(map, image, onError: onError, stream: true, bufferSize: 4096)
            #expect(stream.mismatches == file.mismatches)
            #expect(stream.report.summary == file.report.summary)
            #expect(file.mismatches.count == (onError == .fail ? 5 : 4))
        }
    }

    @Test func streamedShortAndLongImagesAreMeasured() throws {
        let f = CLIFixture()
        let (map, image) = try composedImage(f, "0 64 linear A 8\n64 16 zero\n")
        #expect(truncate(image, 20000) == 0)
        let short = try verifyImage(map, image, stream: true)
        #expect(short.report.summary == "different: 2 ranges (41 sectors) differ; the image is 20960 bytes shorter than the device (20000 < 40960)")
        #expect(truncate(image, 50000) == 0)
        let long = try verifyImage(map, image, stream: true)
        // A stream is read one byte past the device's end, no further (an endless one must end).
        #expect(long.report.summary == "different: 1 range (25 sectors) differs; the image is longer than the device (it goes on past byte 40960)")
        #expect(long.report.imageBytes == 40961 && long.report.imageBytesAtLeast)
    }

    @Test func errorExtentsAreUnverifiableByDefault() throws {
        let f = CLIFixture()
        let (map, image) = try composedImage(f, CLIFixture.mixedTable)
        let (report, mismatches) = try verifyImage(map, image)
        #expect(mismatches.map(\.description) == [
            "sectors 80+16 unverifiable — t.table:3 error (reads fail with EIO; --on-error zero expects zeros there)",
        ])
        #expect(mismatches.first?.kind == .unverifiable)
        #expect(!report.identical)
    }

    @Test func errorExtentsWithOnErrorZeroExpectZeros() throws {
        let f = CLIFixture()
        let (map, image) = try composedImage(f, CLIFixture.mixedTable)
        #expect(try verifyImage(map, image, onError: .zero).report.identical)
        flipByte(image, at: 90 * 512)
        #expect(try verifyImage(map, image, onError: .zero).mismatches.map(\.description) == [
            "sectors 90+1 differ — t.table:3 error (expected zeros)",
        ])
    }

    @Test func holesOnBothSidesAreIdentical() throws {
        let f = CLIFixture()
        // S: 4096 sectors, data only in 0..<16 and 2048..<2064 (whole 4 KiB blocks), holes elsewhere.
        let s = f.folder.sparseImage("s.img", sectors: 4096)
        let fd = open(s, O_WRONLY)
        for start in [0, 2048] {
            var bytes = [UInt8](repeating: 0, count: 16 * 512)
            for k in 0..<16 { GoldenImages.fillSector("S", UInt64(start + k), into: &bytes, at: k * 512) }
            _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, off_t(start * 512)) }
        }
        close(fd)
        let table = "0 1024 linear S 0\n1024 4096 zero\n5120 2048 linear S 2048\n"
        let loaded = try loadTables(table, devices: ["S": s])
        let map = SectorMap(top: loaded.top)
        let image = f.folder.file("out.img")
        let out = try OutputFile(path: image, inputs: loaded.leaves.map(\.image))
        _ = try Compose(map: map, options: .init()).run(to: out)
        try out.commit()
        var st = stat()
        stat(image, &st)
        #expect(st.st_blocks * 512 <= 64 * 512, "the composed image should be sparse: \(st.st_blocks) blocks")
        #expect(try verifyImage(map, image).report.identical)

        // The same bytes fully allocated, and data written into one of its holes.
        let dense = f.folder.file("dense.img")
        try Data(readBytes(image)).write(to: URL(fileURLWithPath: dense))
        #expect(try verifyImage(map, dense).report.identical)
        flipByte(image, at: 3000 * 512)
        flipByte(image, at: 6000 * 512)
        #expect(try verifyImage(map, image).mismatches.map(\.description) == [
            "sectors 3000+1 differ — t.table:2 zero (expected zeros)",
            "sectors 6000+1 differ — t.table:3 linear S (\(s)) sector 2928",
        ])
    }

    @Test func holeInTheImageWhereTheTableHasDataDiffers() throws {
        let f = CLIFixture()
        let (map, composed) = try composedImage(f, "0 64 linear A 8\n")
        // The composed bytes, but sectors 8..<24 (two 4 KiB blocks) left as a hole.
        let bytes = readBytes(composed)
        let image = f.folder.sparseImage("holey.img", sectors: 64)
        let fd = open(image, O_WRONLY)
        for range in [0..<(8 * 512), (24 * 512)..<(64 * 512)] {
            _ = Array(bytes[range]).withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, off_t(range.lowerBound)) }
        }
        close(fd)
        let (_, mismatches) = try verifyImage(map, image)
        #expect(mismatches.map(\.description) == ["sectors 8+16 differ — t.table:1 linear A (\(f.a)) sector 16"])
    }
}

// MARK: - The command line

@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: imgmapBinary),
                "imgmap binary not found at .build/debug/imgmap: run `swift build` first"))
struct VerifyCommandTests {
    @Test func identicalImageExitsZero() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let (_, image) = try composedImage(f, CLIFixture.cleanTable)
        try expectUnchanged(f.images + [image, table]) {
            let run = try imgmap(["verify", table] + f.devs + [image], in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.out == "identical: 73728 bytes (144 sectors)\n")
            #expect(run.stderr == "")
        }
    }

    @Test func differentImageExitsOneWithRangesThenSummary() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let (_, image) = try composedImage(f, CLIFixture.cleanTable)
        flipByte(image, at: 10 * 512)
        let run = try imgmap(["verify", "t.table", "--dev", "A=a.img", "--dev", "B=b.img", "out.img"], in: f.folder)
        #expect(run.status == 1)
        #expect(run.out == "sectors 10+1 differ — t.table:1 linear A (a.img) sector 18\ndifferent: 1 range (1 sector) differs\n")
        let json = try imgmap(["verify", table] + f.devs + [image, "--json"], in: f.folder)
        #expect(json.status == 1)
        #expect(json.out == "{\"kind\":\"differs\",\"start\":10,\"length\":1,\"table\":\"\(table)\",\"line\":1,\"target\":\"linear\",\"device\":\"A\",\"file\":\"\(f.a)\",\"offset\":18}\n"
            + "{\"identical\":false,\"ranges\":1,\"sectors\":1,\"device_bytes\":73728,\"image_bytes\":73728}\n")
    }

    @Test func imageFromStdinIsVerified() throws {
        let f = CLIFixture()
        f.folder.write("t.table", CLIFixture.mixedTable)
        let (_, image) = try composedImage(f, CLIFixture.mixedTable)
        let same = try shell("cat out.img | \"$IMGMAP\" verify t.table --dev A=a.img --dev B=b.img - --on-error zero", in: f.folder)
        #expect(same.status == 0, "\(same.stderr)")
        #expect(same.out == "identical: 81920 bytes (160 sectors)\n")
        flipByte(image, at: 100 * 512)
        #expect(truncate(image, 150 * 512) == 0)
        let different = try shell("cat out.img | \"$IMGMAP\" verify t.table --dev A=a.img --dev B=b.img - --on-error zero", in: f.folder)
        #expect(different.status == 1)
        #expect(different.out == """
            sectors 100+1 differ — t.table:4 striped A (a.img) sector 104
            sectors 150+2 missing — t.table:4 striped A
            sectors 152+8 missing — t.table:4 striped B
            different: 3 ranges (11 sectors) differ; the image is 5120 bytes shorter than the device (76800 < 81920)

            """)
    }

    @Test func errorExtentsMakeTheAnswerNoUnlessOnErrorZero() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        let (_, image) = try composedImage(f, CLIFixture.mixedTable)
        let strict = try imgmap(["verify", table] + f.devs + [image], in: f.folder)
        #expect(strict.status == 1)
        #expect(strict.out.hasPrefix("sectors 80+16 unverifiable — \(table):3 error"))
        let zero = try imgmap(["verify", table] + f.devs + [image, "--on-error", "zero"], in: f.folder)
        #expect(zero.status == 0, "\(zero.out)\(zero.stderr)")
    }

    @Test func usageErrorsExit64() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let one = try imgmap(["verify", table] + f.devs, in: f.folder)
        #expect(one.status == 64)
        #expect(one.stderr.contains("give the table and the image: imgmap verify TABLE IMAGE"), "\(one.stderr)")
        let both = try imgmap(["verify", "-", "-"] + f.devs, in: f.folder)
        #expect(both.status == 64)
        #expect(both.stderr.contains("the table and the image cannot both come from stdin"), "\(both.stderr)")
    }

    @Test func badTableExits65() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 64 linear A 8\n65 8 zero\n")
        let (_, image) = try composedImage(f, "0 64 linear A 8\n")
        let run = try imgmap(["verify", table] + f.devA + [image], in: f.folder)
        #expect(run.status == 65)
        #expect(run.stderr.hasPrefix("imgmap: \(table):2: Gap in table"), "\(run.stderr)")
        #expect(run.out == "")
    }

    @Test func missingImageExits66() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let missing = f.folder.file("missing.img")
        let run = try imgmap(["verify", table] + f.devs + [missing], in: f.folder)
        #expect(run.status == 66)
        #expect(run.stderr == "imgmap: \(missing): open: No such file or directory\n")
    }
}
