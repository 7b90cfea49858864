import Foundation
import Testing

@testable import ImgMapCore

// `imgmap compress`, `imgmap decompress` and `imgmap compose --compress` as a user runs them: output
// that gzip and bgzip read (and bgzip seeks with our .gzi), stdin/stdout, levels, ranges, exit statuses,
// outputs that are inputs, and both deflate backends chosen by IMGMAP_DEFLATE.

let gzipMissing = "gzip is not installed: interop test skipped"

/// A folder with `in.img`: 300 001 bytes of mixed data (five members and a bit, an odd size).
struct CompressCLIFixture {
    let folder = TemporaryDirectory("imgmap-compress-cli")
    let input: String
    let bytes = DataKind.mixed.bytes(300_001, seed: 7)

    init() throws {
        input = folder.file("in.img")
        try writeFile(input, bytes)
    }

    /// `command` run by /bin/sh in the folder, its stdout collected into `name` and returned.
    func shellOutput(_ command: String, to name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8] {
        let path = folder.file(name)
        let status = try shell("cd '\(folder.path)' && \(command) > '\(path)'")
        #expect(status == 0, "`\(command)` exited \(status)", sourceLocation: sourceLocation)
        return readBytes(path)
    }

    /// The uncompressed content of the BGZF file `path`, through BGZFReader (which checks every CRC).
    func content(_ path: String) throws -> [UInt8] {
        try decompressFile(path, index: .walkHeaders)
    }
}

@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: imgmapBinary),
                "imgmap binary not found at .build/debug/imgmap: run `swift build` first"))
struct CompressCLITests {
    // MARK: compress

    @Test(.enabled(if: toolExists("gzip"), Comment(rawValue: gzipMissing)))
    func compressedOutputIsWhatGzipDecompresses() throws {
        let f = try CompressCLIFixture()
        try expectUnchanged([f.input]) {
            let run = try imgmap(["compress", f.input, "-o", "out.gz", "--index", "out.gz.gzi"], in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stderr == "")
        }
        #expect(try f.shellOutput("gzip -dc out.gz", to: "gunzip.img") == f.bytes)
        #expect(try f.content(f.folder.file("out.gz")) == f.bytes)
        let index = try BGZFIndex.read(from: try ImageFile(openForReading: f.folder.file("out.gz.gzi")))
        #expect(index.entries.count == 300_001 / bgzfMaxInputPerBlock)
        #expect(index.entries.map(\.uncompressedOffset) == (1...4).map { UInt64($0 * bgzfMaxInputPerBlock) })
    }

    @Test(.enabled(if: toolExists("bgzip"), Comment(rawValue: bgzipMissing)))
    func bgzipDecompressesAndSeeksWithOurIndex() throws {
        let f = try CompressCLIFixture()
        let run = try imgmap(["compress", f.input, "-o", "out.gz", "--index", "out.gz.gzi"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(try f.shellOutput("bgzip -dc out.gz", to: "bgunzip.img") == f.bytes)
        let n = f.bytes.count
        for (offset, size) in [(0, 10), (bgzfMaxInputPerBlock - 1, 2), (100_000, 70_000), (4 * bgzfMaxInputPerBlock, 100), (n - 5, 5)] {
            let got = try f.shellOutput("bgzip -b \(offset) -s \(size) out.gz", to: "range.bin")
            #expect(got == Array(f.bytes[offset..<offset + size]), "bgzip -b \(offset) -s \(size)")
        }
    }

    @Test func compressFromStdinToStdoutGivesTheSameFile() throws {
        let f = try CompressCLIFixture()
        let file = try imgmap(["compress", f.input, "-o", "out.gz", "--threads", "2"], in: f.folder)
        #expect(file.status == 0, "\(file.stderr)")
        try expectUnchanged([f.input]) {
            let stream = try imgmap(["compress", "-", "-o", "-", "--threads", "2"], stdinFile: f.input, in: f.folder)
            #expect(stream.status == 0, "\(stream.stderr)")
            // Members are cut at the same places and written in order, whatever the input kind.
            #expect(stream.stdout == readBytes(f.folder.file("out.gz")))
            try writeFile(f.folder.file("stream.gz"), stream.stdout)
        }
        #expect(try f.content(f.folder.file("stream.gz")) == f.bytes)
        #expect(f.folder.entries() == ["in.img", "out.gz", "stream.gz"])
    }

    @Test(arguments: [["--level", "0"], ["--level", "9"], ["--threads", "1"], ["--level", "1", "--threads", "3"]])
    func everyLevelAndThreadCountRoundTrips(_ options: [String]) throws {
        let f = try CompressCLIFixture()
        try expectUnchanged([f.input]) {
            let run = try imgmap(["compress", f.input, "-o", "out.gz"] + options, in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
        }
        #expect(try f.content(f.folder.file("out.gz")) == f.bytes)
        if options == ["--level", "0"] {
            // Stored: the data plus per-member overhead.
            #expect(fileSize(f.folder.file("out.gz")) > UInt64(f.bytes.count))
        }
    }

    @Test(arguments: [["--level", "10"], ["--level", "-1"], ["--threads", "0"]])
    func badCompressionOptionsExit64(_ options: [String]) throws {
        let f = try CompressCLIFixture()
        let run = try imgmap(["compress", f.input, "-o", "out.gz"] + options, in: f.folder)
        #expect(run.status == 64, "\(run.stderr)")
        #expect(run.stderr.contains(options[0]), "\(run.stderr)")
        #expect(f.folder.entries() == ["in.img"])
    }

    @Test func compressOutputThatIsTheInputIsRefused() throws {
        let f = try CompressCLIFixture()
        try expectUnchanged([f.input]) {
            let run = try imgmap(["compress", f.input, "-o", f.input], in: f.folder)
            #expect(run.status == 64, "\(run.stderr)")
            #expect(run.stderr.contains("the output is also an input"), "\(run.stderr)")
            let index = try imgmap(["compress", f.input, "-o", "out.gz", "--index", f.input], in: f.folder)
            #expect(index.status == 64, "\(index.stderr)")
            let stdout = try imgmap(["compress", f.input, "-o", "-"], stdoutTo: f.input, in: f.folder)
            #expect(stdout.status == 64, "\(stdout.stderr)")
        }
        #expect(f.folder.entries() == ["in.img"])
    }

    // MARK: decompress

    @Test func decompressGivesTheWholeImage() throws {
        let f = try CompressCLIFixture()
        #expect(try imgmap(["compress", f.input, "-o", "out.gz"], in: f.folder).status == 0)
        try expectUnchanged([f.folder.file("out.gz")]) {
            let run = try imgmap(["decompress", "out.gz", "-o", "back.img"], in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(readBytes(f.folder.file("back.img")) == f.bytes)
            let stream = try imgmap(["decompress", "out.gz", "-o", "-", "--threads", "1"], in: f.folder)
            #expect(stream.status == 0, "\(stream.stderr)")
            #expect(stream.stdout == f.bytes)
        }
    }

    @Test func decompressRangesGiveThoseBytes() throws {
        let f = try CompressCLIFixture()
        #expect(try imgmap(["compress", f.input, "-o", "out.gz", "--index", "out.gz.gzi"], in: f.folder).status == 0)
        let n = f.bytes.count
        let ranges: [(offset: Int, length: Int?)] = [
            (0, 0), (1234, 0), (n, 0), (n, nil), (0, 1), (65_000, 1_000), (bgzfMaxInputPerBlock, bgzfMaxInputPerBlock),
            (1000, nil), (n - 1, nil), (0, n),
        ]
        for (offset, length) in ranges {
            let run = try imgmap(["decompress", "out.gz", "-o", "-", "--offset", "\(offset)"] + (length.map { ["--length", "\($0)"] } ?? []),
                                 in: f.folder)
            #expect(run.status == 0, "\(offset)+\(length.map(String.init) ?? "end"): \(run.stderr)")
            #expect(run.stdout == Array(f.bytes[offset..<(length.map { offset + $0 } ?? n)]), "\(offset)+\(length.map(String.init) ?? "end")")
        }
    }

    @Test func decompressRangePastTheEndExits64() throws {
        let f = try CompressCLIFixture()
        #expect(try imgmap(["compress", f.input, "-o", "out.gz"], in: f.folder).status == 0)
        let n = f.bytes.count
        for options in [["--offset", "\(n + 1)"], ["--offset", "\(n)", "--length", "1"], ["--offset", "10", "--length", "\(n)"],
                        ["--length", "\(n + 1)"], ["--offset", "\(UInt64.max)", "--length", "2"]] {
            let run = try imgmap(["decompress", "out.gz", "-o", "back.img"] + options, in: f.folder)
            #expect(run.status == 64, "\(options): \(run.stderr)")
            #expect(run.stderr.contains("beyond the uncompressed size (\(n) bytes)"), "\(options): \(run.stderr)")
            #expect(!fileExists(f.folder.file("back.img")))
        }
    }

    @Test func decompressOfAFileThatIsNotBGZFExits65() throws {
        let f = try CompressCLIFixture()
        try expectUnchanged([f.input]) {
            let run = try imgmap(["decompress", f.input, "-o", "back.img"], in: f.folder)
            #expect(run.status == 65, "\(run.stderr)")
            #expect(run.stderr == "imgmap: \(f.input): not a gzip file (it does not start with 1f 8b 08), so not BGZF\n")
        }
        #expect(f.folder.entries() == ["in.img"])
    }

    // MARK: compose --compress

    @Test(.enabled(if: toolExists("gzip"), Comment(rawValue: gzipMissing)))
    func composeCompressWritesBGZFOfThePlainComposeThatWorksAsACompressDevice() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        try expectUnchanged(f.images + [table]) {
            let plain = try imgmap(["compose", table] + f.devs + ["-o", "plain.img"], in: f.folder)
            #expect(plain.status == 0, "\(plain.stderr)")
            let run = try imgmap(["compose", table] + f.devs + ["--compress", "--level", "9", "--threads", "2", "-o", "out.gz", "--index", "out.gz.gzi"],
                                 in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
            let stream = try imgmap(["compose", table] + f.devs + ["--compress", "-o", "-"], in: f.folder)
            #expect(stream.status == 0, "\(stream.stderr)")
            try writeFile(f.folder.file("stream.gz"), stream.stdout)
        }
        let plain = readBytes(f.folder.file("plain.img"))
        #expect(plain.count == 144 * 512)
        #expect(try shell("cd '\(f.folder.path)' && gzip -dc out.gz > gunzip.img && gzip -dc stream.gz > gunzip2.img") == 0)
        #expect(readBytes(f.folder.file("gunzip.img")) == plain)
        #expect(readBytes(f.folder.file("gunzip2.img")) == plain)
        #expect(fileSize(f.folder.file("out.gz.gzi")) == 24)  // 72 KiB: two members, one entry
        // The output, with its index beside it, is a compress device.
        let again = f.folder.write("again.table", "0 144 compress O 0\n")
        let back = try imgmap(["compose", again, "--dev", "O=out.gz", "-o", "-"], in: f.folder)
        #expect(back.status == 0, "\(back.stderr)")
        #expect(back.stdout == plain)
    }

    @Test func composeCompressOntoAnInputIsRefused() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", table] + f.devs + ["--compress", "-o", f.a], in: f.folder)
            #expect(run.status == 64, "\(run.stderr)")
            let index = try imgmap(["compose", table] + f.devs + ["--compress", "-o", "out.gz", "--index", f.b], in: f.folder)
            #expect(index.status == 64, "\(index.stderr)")
            let level = try imgmap(["compose", table] + f.devs + ["--level", "3", "-o", "out.img"], in: f.folder)
            #expect(level.status == 64, "\(level.stderr)")
            #expect(level.stderr.contains("need --compress"), "\(level.stderr)")
        }
        #expect(f.leftovers(besides: ["t.table"]) == [])
    }

    @Test func composeCompressOverACompressDeviceRoundTrips() throws {
        let f = try CompressCLIFixture()
        let padded = f.bytes + [UInt8](repeating: 0, count: 512 - f.bytes.count % 512)
        try writeFile(f.input, padded)
        #expect(try imgmap(["compress", f.input, "-o", "c.gz"], in: f.folder).status == 0)
        let sectors = padded.count / 512
        let table = f.folder.write("t.table", "0 \(sectors) compress C 0\n")
        try expectUnchanged([f.folder.file("c.gz")]) {
            let run = try imgmap(["compose", table, "--dev", "C=c.gz", "--compress", "-o", "again.gz"], in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
        }
        #expect(try f.content(f.folder.file("again.gz")) == padded)
    }

    // MARK: IMGMAP_DEFLATE

    @Test(.enabled(if: DeflateLibrary.isLibDeflateAvailable, "libdeflate.so.0 cannot be loaded here: backend comparison skipped"))
    func bothDeflateBackendsWriteFilesThatDecompressIdentically() throws {
        let f = try CompressCLIFixture()
        for library in availableLibraries {
            let env = ["IMGMAP_DEFLATE": library.rawValue]
            let run = try imgmap(["compress", f.input, "-o", "\(library.rawValue).gz", "--index", "\(library.rawValue).gz.gzi"],
                                 environment: env, in: f.folder)
            #expect(run.status == 0, "\(library): \(run.stderr)")
        }
        // Each file decompressed by each backend, through the CLI and the target.
        for made in availableLibraries {
            for reading in availableLibraries {
                let env = ["IMGMAP_DEFLATE": reading.rawValue]
                let run = try imgmap(["decompress", "\(made.rawValue).gz", "-o", "-"], environment: env, in: f.folder)
                #expect(run.status == 0, "\(made) read by \(reading): \(run.stderr)")
                #expect(run.stdout == f.bytes, "\(made) read by \(reading)")
            }
        }
    }

    @Test func anUnknownDeflateBackendExits64() throws {
        let f = try CompressCLIFixture()
        #expect(try imgmap(["compress", f.input, "-o", "ok.gz"], in: f.folder).status == 0)
        let table = f.folder.write("t.table", "0 8 compress C 0\n")
        let env = ["IMGMAP_DEFLATE": "bogus"]
        for arguments in [["compress", f.input, "-o", "out.gz"], ["decompress", "ok.gz", "-o", "out.img"],
                          ["compose", table, "--dev", "C=ok.gz", "-o", "out.img"]] {
            let run = try imgmap(arguments, environment: env, in: f.folder)
            #expect(run.status == 64, "\(arguments[0]): \(run.stderr)")
            #expect(run.stderr.contains("IMGMAP_DEFLATE=bogus: unknown deflate library"), "\(arguments[0]): \(run.stderr)")
        }
        #expect(f.folder.entries() == ["in.img", "ok.gz", "t.table"])
    }
}
