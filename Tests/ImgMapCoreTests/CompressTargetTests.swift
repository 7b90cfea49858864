import Foundation
import Testing

@testable import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

// The compress target end to end: `map` shows it, bounds are checked against the uncompressed size,
// bad BGZF files and indexes are refused with exit 65 (never a crash), scatter will not write through it,
// verify and manifest read through it, and compose gives the same bytes to a file, a stream and a pipe.

/// A folder with raw image A (256 sectors), C.gz (BGZF of golden image C, 512 sectors: four full
/// members and one of 1024 bytes) and its member index.
struct CompressFixture {
    let folder = TemporaryDirectory("imgmap-compress")
    let a: String
    let c: String
    let cBytes = GoldenImages.bytes("C", sectors: 512)
    /// C.gz's members after the first, as its `.gzi` lists them (no `.gzi` is written beside it).
    let cIndex: BGZFIndex

    init() throws {
        a = folder.file("a.img")
        try FileManager.default.copyItem(atPath: GoldenImages.path("A", sectors: 256), toPath: a)
        c = folder.file("c.img.gz")
        cIndex = try compressToFile(cBytes, path: c, level: 6)
    }

    var devs: [String] { ["--dev", "A=\(a)", "--dev", "C=\(c)"] }
    /// For tables that name only `C`: a `--dev` no table uses is a usage error.
    var devC: [String] { ["--dev", "C=\(c)"] }

    /// The bytes `table` composes to, in process (errors as zeros), with A and C bound as in `devs`.
    func expectedBytes(_ table: String, lower: [(String, String)] = []) throws -> [UInt8] {
        try readAll(SectorMap(top: try loadTables(table, lower: lower, devices: ["A": a, "C": c]).top))
    }

    /// A copy of C.gz with `edit` applied to its bytes, at `name` in the folder.
    func editedCopy(_ name: String, _ edit: (inout [UInt8]) -> Void) throws -> String {
        var bytes = try readFile(c)
        edit(&bytes)
        let path = folder.file(name)
        try writeFile(path, bytes)
        return path
    }

    /// Entries of the folder besides the ones named.
    func leftovers(besides names: [String]) -> [String] {
        folder.entries().filter { !(["a.img", "c.img.gz"] + names).contains($0) }
    }
}

/// Runs `imgmap arguments…` with stdout on a pipe (so compose takes its splice path), read to the end.
func imgmapToPipe(_ arguments: [String], in directory: TemporaryDirectory) throws -> Run {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: imgmapBinary)
    process.arguments = arguments
    process.currentDirectoryURL = directory.url
    let pipe = Pipe()
    let io = TemporaryDirectory("imgmap-cli-io")
    let errPath = io.file("stderr")
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    process.standardOutput = pipe
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
    try process.run()
    let bytes = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Run(status: process.terminationStatus, stdout: [UInt8](bytes), stderr: String(decoding: readBytes(errPath), as: UTF8.self))
}

/// One line of `map` columns, split on spaces.
func mapRows(_ run: Run) -> [[String]] {
    run.out.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
}

@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: imgmapBinary),
                "imgmap binary not found at .build/debug/imgmap: run `swift build` first"))
struct CompressTargetTests {
    // MARK: map

    @Test func mapColumnsShowTheCompressedFileAndTheUncompressedOffset() throws {
        let f = try CompressFixture()
        let table = f.folder.write("t.table", "0 64 linear A 8\n64 100 compress C 200\n")
        let run = try imgmap(["map", table] + f.devs, in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(mapRows(run) == [
            ["START", "LENGTH", "TARGET", "DEVICE", "OFFSET", "TABLE:LINE", "FILE"],
            ["0", "64", "linear", "A", "8", "\(table):1", f.a],
            ["64", "100", "compress", "C", "200", "\(table):2", f.c],
        ])
    }

    @Test func mapJSONShowsTheCompressedFileAndTheUncompressedOffset() throws {
        let f = try CompressFixture()
        let lower = f.folder.write("cc.table", "0 512 compress C 0\n")
        let table = f.folder.write("t.table", "0 100 compress C 300\n100 32 striped 2 8 A 0 Cc 16\n")
        let run = try imgmap(["map", table, "--json", "--table", "Cc=\(lower)"] + f.devs, in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        let objects = try run.out.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(objects.count == 5)
        #expect(objects[0]["target"] as? String == "compress")
        #expect(objects[0]["device"] as? String == "C")
        #expect(objects[0]["file"] as? String == f.c)
        #expect(objects[0]["offset"] as? Int == 300)
        #expect(objects[0]["line"] as? Int == 1)
        // The second stripe goes through the lower table's compress line: sectors 16..<24, then 24..<32.
        #expect(objects[2]["target"] as? String == "compress")
        #expect(objects[2]["file"] as? String == f.c)
        #expect(objects[2]["offset"] as? Int == 16)
        #expect(objects[2]["table"] as? String == lower)
        #expect(objects[4]["offset"] as? Int == 24)
    }

    // MARK: bounds

    @Test func offsetPastTheUncompressedEndIsTooSmallForTarget() throws {
        let f = try CompressFixture()
        let error = try #require(loadError("0 8 zero\n8 8 compress C 510\n", devices: ["C": f.c]))
        #expect(error.exitStatus == .dataError)
        #expect(error.description.hasPrefix("t.table:2: compress: too small for target"), "\(error)")
        #expect(error.description.contains("dev_size=512"), "\(error)")
        // The last whole sector is fine.
        #expect(try loadTables("0 8 compress C 504\n", devices: ["C": f.c]).top.size == Sector(8))

        let table = f.folder.write("t.table", "0 8 compress C 512\n")
        let run = try imgmap(["check", table] + f.devC, in: f.folder)
        #expect(run.status == 65)
        #expect(run.stderr.hasPrefix("imgmap: \(table):1: compress: too small for target"), "\(run.stderr)")
    }

    @Test func aPartialTailSectorOfTheContentIsNotPartOfTheDevice() throws {
        let f = try CompressFixture()
        let p = f.folder.file("p.img.gz")
        try compressToFile(GoldenImages.bytes("P", sectors: 100, extra: 300), path: p)
        let loaded = try loadTables("0 100 compress P 0\n", devices: ["P": p])
        #expect(try readAll(SectorMap(top: loaded.top)) == GoldenImages.bytes("P", sectors: 100))
        let error = try #require(loadError("0 101 compress P 0\n", devices: ["P": p]))
        #expect(error.description.hasPrefix("t.table:1: compress: too small for target"), "\(error)")
        #expect(error.description.contains("dev_size=100"), "\(error)")
    }

    // MARK: bad files, each refused with 65 through the CLI

    /// Composes `0 8 compress C 0` over `bad` (and checks it); both must exit 65 with `phrase` in the
    /// message, leave no output and no temporary, and leave `bad` unchanged.
    func expectRefused(_ f: CompressFixture, _ bad: String, sectors: Int = 8, _ phrases: [String], atLoad: Bool = true,
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
        let table = f.folder.write("t.table", "0 \(sectors) compress C 0\n")
        try expectUnchanged([bad], sourceLocation: sourceLocation) {
            for arguments in [["compose", table, "--dev", "C=\(bad)", "-o", "out.img"], ["compose", table, "--dev", "C=\(bad)", "-o", "-"]] {
                let run = try imgmap(arguments, in: f.folder)
                #expect(run.status == 65, "\(run.stderr)", sourceLocation: sourceLocation)
                #expect(run.stderr.hasPrefix(atLoad ? "imgmap: \(table):1: compress: Invalid BGZF image: " : "imgmap: "),
                        "\(run.stderr)", sourceLocation: sourceLocation)
                for phrase in phrases {
                    #expect(run.stderr.contains(phrase), "\(run.stderr)", sourceLocation: sourceLocation)
                }
                #expect(!run.stderr.contains("Fatal error") && !run.stderr.contains("crashed"), sourceLocation: sourceLocation)
                #expect(run.stderr.split(separator: "\n").count == 1, "\(run.stderr)", sourceLocation: sourceLocation)
            }
            let check = try imgmap(["check", table, "--dev", "C=\(bad)"], in: f.folder)
            #expect(check.status == (atLoad ? 65 : 0), "\(check.stderr)", sourceLocation: sourceLocation)
        }
        #expect(!fileExists(f.folder.file("out.img")), sourceLocation: sourceLocation)
        #expect(!f.folder.entries().contains { $0.contains(".tmp-") }, sourceLocation: sourceLocation)
    }

    @Test(.enabled(if: toolExists("gzip"), "gzip is not installed: test skipped"))
    func plainGzipIsRefusedWithAHintToConvertIt() throws {
        let f = try CompressFixture()
        let plain = f.folder.file("plain.gz")
        #expect(try shell("gzip -c '\(f.a)' > '\(plain)'") == 0)
        try expectRefused(f, plain, ["\(plain): is a gzip file but not BGZF", "imgmap compress"])
    }

    @Test func aFileThatIsNotGzipIsRefused() throws {
        let f = try CompressFixture()
        try expectRefused(f, f.a, ["\(f.a): not a gzip file"])
    }

    @Test func anEmptyFileIsRefused() throws {
        let f = try CompressFixture()
        try expectRefused(f, f.folder.write("empty.gz", ""), ["empty file"])
    }

    @Test func aFileCutInsideAMemberIsRefusedAsTruncated() throws {
        let f = try CompressFixture()
        let cut = Int(f.cIndex.entries[1].compressedOffset) + 100
        let bad = try f.editedCopy("cut.gz") { $0.removeSubrange(cut...) }
        try expectRefused(f, bad, ["offset \(f.cIndex.entries[1].compressedOffset): member of", "truncated"])
    }

    @Test func aFileWithoutTheEOFMemberIsRefused() throws {
        let f = try CompressFixture()
        let bad = try f.editedCopy("noeof.gz") { $0.removeLast(bgzfEOFMember.count) }
        try expectRefused(f, bad, ["no BGZF end-of-file member"])
    }

    @Test func aMemberDeclaringMoreThan64KiBIsRefused() throws {
        let f = try CompressFixture()
        let isize = Int(f.cIndex.entries[0].compressedOffset) - 4
        let bad = try f.editedCopy("big.gz") { bytes in
            bytes[isize + 2] = 0x01  // ISIZE 65280 + 0x10000
        }
        try expectRefused(f, bad, ["offset 0: member declares", "ISIZE"])
    }

    @Test func aFlippedByteIsACRCMismatchAtReadTimeNamingTheMember() throws {
        let f = try CompressFixture()
        // Stored members (level 0): a flipped data byte still inflates, so only the CRC32 catches it.
        let stored = f.folder.file("stored.gz")
        let index = try compressToFile(f.cBytes, path: stored, level: 0)
        let member = index.entries[1].compressedOffset
        let bad = try f.editedCopy("flipped.gz") { bytes in
            bytes = (try? readFile(stored)) ?? []
            bytes[Int(member) + 18 + 5 + 1000] ^= 0x20
        }
        // Opening walks headers only, so the table loads; reading the member fails.
        try expectRefused(f, bad, sectors: 512, ["\(bad): offset \(member): member's CRC32 mismatch"], atLoad: false)
        // Sectors before the bad member still read.
        let ok = f.folder.write("ok.table", "0 127 compress C 0\n")
        let run = try imgmap(["compose", ok, "--dev", "C=\(bad)", "-o", "ok.img"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(readBytes(f.folder.file("ok.img")) == Array(f.cBytes[..<(127 * 512)]))
    }

    @Test func aGziNamingAMemberThatIsNotThereIsRefusedAtLoad() throws {
        let f = try CompressFixture()
        var index = f.cIndex
        index.entries[3].compressedOffset += 1
        try writeFile(f.c + ".gzi", index.gziBytes())
        try expectRefused(f, f.c, ["\(f.c).gzi: says a BGZF member starts at offset \(index.entries[3].compressedOffset)", "delete it or rebuild it"])
    }

    @Test func aGziWithWrongUncompressedOffsetsIsRefusedAtReadTime() throws {
        let f = try CompressFixture()
        var index = f.cIndex
        index.entries[3].uncompressedOffset -= 512
        try writeFile(f.c + ".gzi", index.gziBytes())
        // The content now looks one sector shorter; member 3 then holds more than the index leaves it.
        try expectRefused(f, f.c, sectors: 511, ["\(f.c).gzi: disagrees with \(f.c): the member at offset \(index.entries[2].compressedOffset)"],
                          atLoad: false)
    }

    // MARK: scatter, verify, manifest

    @Test func scatterThroughACompressSegmentIsRefusedAndWritesNothing() throws {
        let f = try CompressFixture()
        try writeFile(f.c + ".gzi", f.cIndex.gziBytes())
        let table = f.folder.write("t.table", "0 64 linear A 0\n64 64 compress C 8\n")
        let payload = f.folder.file("payload.img")
        try writeFile(payload, [UInt8](repeating: 0x5a, count: 128 * 512))
        try expectUnchanged([f.a, f.c, f.c + ".gzi", payload]) {
            let run = try imgmap(["scatter", table] + f.devs + [payload], in: f.folder)
            #expect(run.status == 65, "\(run.stderr)")
            #expect(run.stderr.contains("sectors 64+64 (\(table):2 compress C) are read-only"), "\(run.stderr)")
            #expect(run.stderr.contains("read-only") && run.stderr.contains("nothing was written"), "\(run.stderr)")
            // A stream's length is unknown, so the whole rest of the device is checked first.
            let stream = try imgmap(["scatter", table] + f.devs + ["-", "--seek", "8"], stdinFile: payload, in: f.folder)
            #expect(stream.status == 65, "\(stream.stderr)")
            let dry = try imgmap(["scatter", table] + f.devs + [payload, "--dry-run"], in: f.folder)
            #expect(dry.status == 65, "\(dry.stderr)")
        }
        // Writing only the linear part is fine.
        let part = f.folder.file("part.img")
        try writeFile(part, [UInt8](repeating: 0x5a, count: 32 * 512))
        try expectUnchanged([f.c]) {
            let run = try imgmap(["scatter", table] + f.devs + [part], in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
        }
        #expect(Array(readBytes(f.a)[..<(32 * 512)]) == [UInt8](repeating: 0x5a, count: 32 * 512))
    }

    @Test func verifyReadsThroughCompressSegments() throws {
        let f = try CompressFixture()
        let text = "0 64 linear A 8\n64 300 compress C 100\n364 8 zero\n"
        let table = f.folder.write("t.table", text)
        let image = f.folder.file("image.img")
        var bytes = try f.expectedBytes(text)
        try writeFile(image, bytes)
        let same = try imgmap(["verify", table, image] + f.devs, in: f.folder)
        #expect(same.status == 0, "\(same.stderr)")
        #expect(same.out.hasPrefix("identical"), "\(same.out)")

        bytes[(64 + 10) * 512 + 7] ^= 1
        try writeFile(image, bytes)
        let different = try imgmap(["verify", table, image, "--json"] + f.devs, in: f.folder)
        #expect(different.status == 1, "\(different.stderr)")
        let first = try #require(try JSONSerialization.jsonObject(with: Data(different.out.split(separator: "\n")[0].utf8)) as? [String: Any])
        #expect(first["start"] as? Int == 74)
        #expect(first["file"] as? String == f.c)
        #expect(first["offset"] as? Int == 110, "\(first)")
    }

    @Test func manifestOverCompressEqualsTheManifestOverTheRawImage() throws {
        let f = try CompressFixture()
        let raw = f.folder.file("c.img")
        try writeFile(raw, f.cBytes)
        let compressed = f.folder.write("t.table", "0 64 linear A 8\n64 300 compress C 100\n364 8 zero\n")
        let plain = f.folder.write("r.table", "0 64 linear A 8\n64 300 linear R 100\n364 8 zero\n")
        let a = try imgmap(["manifest", compressed, "-o", "c.bmap"] + f.devs, in: f.folder)
        #expect(a.status == 0, "\(a.stderr)")
        let b = try imgmap(["manifest", plain, "-o", "r.bmap", "--dev", "A=\(f.a)", "--dev", "R=\(raw)"], in: f.folder)
        #expect(b.status == 0, "\(b.stderr)")
        #expect(readBytes(f.folder.file("c.bmap")) == readBytes(f.folder.file("r.bmap")))
        // And the composed image satisfies it.
        let compose = try imgmap(["compose", compressed, "-o", "out.img"] + f.devs, in: f.folder)
        #expect(compose.status == 0, "\(compose.stderr)")
        let verify = try imgmap(["verify", "--bmap", "c.bmap", "out.img"], in: f.folder)
        #expect(verify.status == 0, "\(verify.out)\(verify.stderr)")
    }

    // MARK: compose outputs

    @Test func composeToAFileAStreamAndAPipeGivesTheSameBytes() throws {
        let f = try CompressFixture()
        let lowerText = "0 512 compress C 0\n"
        let lower = f.folder.write("cc.table", lowerText)
        let text = "0 64 linear A 8\n64 16 zero\n80 16 error\n96 300 compress C 100\n396 64 striped 2 8 A 100 Cc 3\n"
        let table = f.folder.write("t.table", text)
        let common = ["compose", table, "--table", "Cc=\(lower)", "--on-error", "zero"] + f.devs
        let expected = try f.expectedBytes(text, lower: [("Cc", lowerText)])
        #expect(expected.count == 460 * 512)
        try expectUnchanged([f.a, f.c]) {
            let file = try imgmap(common + ["-o", "out.img"], in: f.folder)
            #expect(file.status == 0, "\(file.stderr)")
            #expect(readBytes(f.folder.file("out.img")) == expected)
            let stream = try imgmap(common + ["-o", "-"], in: f.folder)
            #expect(stream.status == 0, "\(stream.stderr)")
            #expect(stream.stdout == expected)
            let pipe = try imgmapToPipe(common + ["-o", "-"], in: f.folder)
            #expect(pipe.status == 0, "\(pipe.stderr)")
            #expect(pipe.stdout == expected)
            let digest = try imgmapToPipe(common + ["-o", "-", "--digest", "sha256"], in: f.folder)
            #expect(digest.stdout == expected)
            #expect(digest.stderr == "\(sha256(expected))  -\n")
        }
    }

    @Test func outputsOntoACompressImagesIndexAreRefused() throws {
        let f = try CompressFixture()
        let gzi = f.c + ".gzi"
        try writeFile(gzi, f.cIndex.gziBytes())
        let table = f.folder.write("t.table", "0 64 compress C 0\n")
        try expectUnchanged([f.c, gzi, table]) {
            for extra in [["-o", gzi], ["--compress", "-o", "out.gz", "--index", gzi], ["-o", "out.img", "--on-error", "zero", "--errors", gzi]] {
                let run = try imgmap(["compose", table] + f.devC + extra, in: f.folder)
                #expect(run.status == 64, "\(extra): \(run.stderr)")
                #expect(run.stderr.contains("the output is also an input"), "\(extra): \(run.stderr)")
            }
            let manifest = try imgmap(["manifest", table, "-o", gzi] + f.devC, in: f.folder)
            #expect(manifest.status == 64, "\(manifest.stderr)")
            let decompress = try imgmap(["decompress", f.c, "-o", gzi], in: f.folder)
            #expect(decompress.status == 64, "\(decompress.stderr)")
        }
        #expect(f.leftovers(besides: ["c.img.gz.gzi", "t.table"]) == [])
    }

    @Test func scatterCreateDoesNotMakeAMissingCompressImage() throws {
        let f = try CompressFixture()
        let missing = f.folder.file("missing.gz")
        let table = f.folder.write("t.table", "0 64 linear new.img 0\n64 64 compress \(missing) 0\n")
        let payload = f.folder.file("payload.img")
        try writeFile(payload, [UInt8](repeating: 0x5a, count: 32 * 512))
        let run = try imgmap(["scatter", table, "--create", payload], in: f.folder)
        #expect(run.status == 66, "\(run.stderr)")
        #expect(run.stderr.contains("\(missing): No such file or directory"), "\(run.stderr)")
        #expect(!fileExists(missing))
        #expect(!fileExists(f.folder.file("new.img")))
    }

    @Test func scatterErrorsFileOntoTheTableOrAnIndexIsRefused() throws {
        let f = try CompressFixture()
        let gzi = f.c + ".gzi"
        try writeFile(gzi, f.cIndex.gziBytes())
        let table = f.folder.write("t.table", "0 64 linear A 0\n64 64 compress C 0\n")
        let payload = f.folder.file("payload.img")
        try writeFile(payload, [UInt8](repeating: 0x5a, count: 32 * 512))
        try expectUnchanged([f.c, gzi, table]) {
            for errors in [table, gzi] {
                let run = try imgmap(["scatter", table] + f.devs + [payload, "--on-error", "skip", "--errors", errors], in: f.folder)
                #expect(run.status == 64, "\(run.stderr)")
                #expect(run.stderr.contains("the output is also an input"), "\(run.stderr)")
            }
        }
    }

    @Test func zerosInACompressedImageBecomeHolesInAComposedFile() throws {
        let f = try CompressFixture()
        let half = 1 << 20
        let content = GoldenImages.bytes("H", sectors: UInt64(half / 512)) + [UInt8](repeating: 0, count: half)
        let h = f.folder.file("h.img.gz")
        try compressToFile(content, path: h)
        let table = f.folder.write("t.table", "0 4096 compress H 0\n")
        let run = try imgmap(["compose", table, "--dev", "H=\(h)", "-o", "out.img"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        let out = f.folder.file("out.img")
        #expect(readBytes(out) == content)
        var st = stat()
        #expect(stat(out, &st) == 0)
        #expect(Int(st.st_blocks) * 512 <= half + 64 * 1024, "\(st.st_blocks) blocks allocated: the zero half is not a hole")
        let fd = open(out, O_RDONLY)
        defer { close(fd) }
        #expect(lseek(fd, off_t(half), 3 /* SEEK_DATA */) < 0, "data found in the zero half")
    }
}
