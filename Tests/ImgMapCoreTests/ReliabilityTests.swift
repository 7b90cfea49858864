import Foundation
import Testing

@testable import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

// Issue 19 through real runs of the binary: outputs that are one file, inputs that never end or are
// not files, limits on what a user may ask for, signals, long and odd names, stdout that cannot be
// written. Each run must end with its sysexits status and one clear line, and leave nothing behind.

@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: imgmapBinary),
                "imgmap binary not found at .build/debug/imgmap: run `swift build` first"))
struct ReliabilityTests {
    // MARK: outputs that are the same file

    static let collidingCompose: [[String]] = [
        ["-o", "d.out", "--digest", "sha256", "--digest-file", "d.out"],
        ["-o", "d.out", "--errors", "./d.out"],
        ["-o", "d.out", "--compress", "--index", "d.out"],
        ["-o", "d.out", "--digest", "sha256", "--digest-file", "e.out", "--errors", "e.out"],
        ["-o", "-", "--digest", "sha256", "--digest-file", "-"],
    ]

    @Test(arguments: collidingCompose)
    func composeRefusesTwoOutputsThatAreOneFile(_ outputs: [String]) throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", table] + f.devs + outputs, in: f.folder)
            #expect(run.status == 64, "\(run.stderr)")
            #expect(run.stderr.contains("name the same file"), "\(run.stderr)")
            #expect(run.stderr.split(separator: "\n").count == 1, "\(run.stderr)")
            #expect(run.stdout.isEmpty)
        }
        #expect(f.leftovers(besides: ["t.table"]) == [])
    }

    @Test func anExistingOutputReachedThroughASymlinkIsTheSameFile() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        _ = f.folder.write("d.out", "old\n")
        #expect(symlink("d.out", f.folder.file("link")) == 0)
        let run = try imgmap(["compose", table] + f.devs + ["-o", "d.out", "--errors", "link"], in: f.folder)
        #expect(run.status == 64, "\(run.stderr)")
        #expect(run.stderr == "imgmap: link: --errors and -o name the same file; give each output its own file\n")
        #expect(readBytes(f.folder.file("d.out")) == Array("old\n".utf8))
    }

    @Test func compressRefusesAnIndexThatIsItsOutput() throws {
        let f = CLIFixture()
        let run = try imgmap(["compress", f.a, "-o", "x.gz", "--index", "x.gz"], in: f.folder)
        #expect(run.status == 64, "\(run.stderr)")
        #expect(run.stderr == "imgmap: x.gz: --index and -o name the same file; give each output its own file\n")
        #expect(f.leftovers(besides: []) == [])
    }

    // MARK: inputs that never end, inputs that are not files

    @Test func verifyOfAnEndlessDeviceEndsAndSaysLonger() throws {
        let f = CLIFixture()
        let table = f.folder.write("z.table", "0 64 zero\n")
        for (arguments, stdin) in [(["/dev/zero"], nil), (["-"], "/dev/zero")] as [([String], String?)] {
            let run = try imgmap(["verify", table] + arguments, stdinFile: stdin, in: f.folder)
            #expect(run.status == 1, "\(run.stderr)")
            #expect(run.out == "different: the image is longer than the device (it goes on past byte 32768)\n", "\(run.out)")
        }
    }

    @Test func aGziIndexThatIsAFIFOOrADirectoryIsExit66AtOnce() throws {
        let f = CLIFixture()
        let gz = f.folder.file("a.img.gz")
        #expect(try imgmap(["compress", f.a, "-o", gz], in: f.folder).status == 0)
        let gzi = gz + ".gzi"
        #expect(mkfifo(gzi, 0o600) == 0)
        let fifo = try imgmap(["decompress", gz, "-o", "out.img"], in: f.folder)
        #expect(fifo.status == 66, "\(fifo.stderr)")
        #expect(fifo.stderr == "imgmap: \(gzi): open: Invalid argument (it is a FIFO; a regular file is needed here)\n")
        let table = f.folder.write("c.table", "0 256 compress \(gz) 0\n")
        let composed = try imgmap(["compose", table, "-o", "out.img"], in: f.folder)
        #expect(composed.status == 66, "\(composed.stderr)")
        #expect(composed.stderr.contains("it is a FIFO"), "\(composed.stderr)")
        unlink(gzi)
        try FileManager.default.createDirectory(atPath: gzi, withIntermediateDirectories: false)
        let directory = try imgmap(["decompress", gz, "-o", "out.img"], in: f.folder)
        #expect(directory.status == 66, "\(directory.stderr)")
        #expect(directory.stderr == "imgmap: \(gzi): open: Is a directory (it is a directory; a regular file is needed here)\n")
        #expect(!fileExists(f.folder.file("out.img")))
    }

    // MARK: a lying index

    @Test func aGziWhoseUncompressedOffsetsAreShiftedIsRefusedWith65() throws {
        let f = CLIFixture()
        let image = GoldenImages.path("A", sectors: 2048)
        #expect(try imgmap(["compress", image, "-o", "a.gz", "--index", "a.gz.gzi", "--level", "1"], in: f.folder).status == 0)
        let gzi = f.folder.file("a.gz.gzi")
        var bytes = readBytes(gzi)
        let count = Int(bytes[0..<8].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        #expect(count > 8)
        // Entries from the third on 512 bytes early: every gap still looks like a member's worth, so
        // only a walk of the ISIZEs before the member read shows the lie.
        for i in 2..<count {
            let at = 8 + 16 * i + 8
            var value = bytes[at..<at + 8].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } - 512
            withUnsafeBytes(of: &value) { bytes.replaceSubrange(at..<at + 8, with: $0) }
        }
        #expect(FileManager.default.createFile(atPath: gzi, contents: Data(bytes)))
        let run = try imgmap(["decompress", "a.gz", "-o", "-", "--offset", "500000", "--length", "1000"], in: f.folder)
        #expect(run.status == 65, "\(run.stderr)")
        #expect(run.stdout.isEmpty)
        #expect(run.stderr.hasPrefix("imgmap: a.gz.gzi: says member 2 of a.gz "), "\(run.stderr)")
        #expect(run.stderr.contains("the index belongs to another file"), "\(run.stderr)")
        // Without the index the same range is right.
        unlink(gzi)
        let good = try imgmap(["decompress", "a.gz", "-o", "-", "--offset", "500000", "--length", "1000"], in: f.folder)
        #expect(good.status == 0, "\(good.stderr)")
        #expect(good.stdout == Array(readBytes(image)[500000..<501000]))
    }

    // MARK: scatter says what it wrote

    @Test func aScatterStoppedByAShortWriteReportsTheSectorsItChanged() throws {
        guard let prlimit = toolPath("prlimit") else { try Test.cancel("prlimit(1) is not installed") }
        let f = FaultFixture()
        let table = f.wholeTable()
        let input = GoldenImages.path("B", sectors: FaultFixture.sectors)
        let run = try imgmap(["scatter", table, input, "--dev", "A=\(f.a)"], wrapper: [prlimit, "--fsize=1000000", "--"], in: f.folder)
        #expect(run.status == 74, "\(run.stderr)")
        // 1,000,000 bytes reached the member: sectors 0..<1954, the last one in part.
        #expect(run.stderr.hasSuffix("File too large; already written before the failure (device sectors start+length): 0+1954\n"), "\(run.stderr)")
        let after = readBytes(f.a)
        let new = readBytes(input)
        let old = readBytes(f.golden)
        #expect(after[0..<1_000_000] == new[0..<1_000_000])
        #expect(after[1_000_000...] == old[1_000_000...])
    }

    // MARK: bmap 1.x checksums

    @Test func verifyChecksTheSHA1OfEveryRangeOfABmap12File() throws {
        let f = CLIFixture()
        var image = [UInt8](repeating: 0, count: 8192)
        for i in 4096..<8192 { image[i] = UInt8(truncatingIfNeeded: i * 7) }
        let path = f.folder.file("i.img")
        #expect(FileManager.default.createFile(atPath: path, contents: Data(image)))
        var h = BmapHasher(.sha1)
        image[4096...].withUnsafeBytes { h.update($0) }
        let sha1 = h.finalizeHex()
        _ = f.folder.write("i.bmap", """
            <?xml version="1.0" ?>
            <bmap version="1.2">
                <ImageSize> 8192 </ImageSize>
                <BlockSize> 4096 </BlockSize>
                <BlocksCount> 2 </BlocksCount>
                <MappedBlocksCount> 1 </MappedBlocksCount>
                <BlockMap>
                    <Range sha1="\(sha1)"> 1 </Range>
                </BlockMap>
            </bmap>

            """)
        let good = try imgmap(["verify", "--bmap", "i.bmap", "i.img"], in: f.folder)
        #expect(good.status == 0, "\(good.stderr)")
        #expect(good.out == "identical: 1 ranges (1 blocks) match i.bmap\n")
        flipByte(path, at: 5000)
        let bad = try imgmap(["verify", "--bmap", "i.bmap", "i.img"], in: f.folder)
        #expect(bad.status == 1, "\(bad.stderr)")
        #expect(bad.out.hasPrefix("i.img: "), "\(bad.out)")
        #expect(bad.out.hasSuffix("different: 1 mismatch against i.bmap\n"), "\(bad.out)")
        // A 1.2 range without sha1= is not reported as checked.
        _ = f.folder.write("n.bmap", String(decoding: readBytes(f.folder.file("i.bmap")), as: UTF8.self)
            .replacingOccurrences(of: #"<Range sha1="\#(sha1)">"#, with: "<Range>"))
        let unchecked = try imgmap(["verify", "--bmap", "n.bmap", "i.img"], in: f.folder)
        #expect(unchecked.status == 0, "\(unchecked.stderr)")
        #expect(unchecked.out == "identical as far as checked: 0 of 1 ranges match n.bmap; 1 carry no checksum and were not checked\n")
    }

    // MARK: a table whose compress image is corrupt

    @Test func verifyOfATableWhoseCompressImageIsCorruptSaysItCannotBeRead() throws {
        let f = CLIFixture()
        #expect(try imgmap(["compress", f.a, "-o", "a.gz"], in: f.folder).status == 0)
        var bytes = readBytes(f.folder.file("a.gz"))
        bytes[100] ^= 0xff
        #expect(FileManager.default.createFile(atPath: f.folder.file("a.gz"), contents: Data(bytes)))
        let table = f.folder.write("c.table", "0 256 compress a.gz 0\n")
        let run = try imgmap(["verify", table, f.a], in: f.folder)
        #expect(run.status == 65, "\(run.stderr)")
        #expect(run.stderr.hasPrefix("imgmap: a.gz: offset 0: "), "\(run.stderr)")
        #expect(!run.out.contains("differ"), "\(run.out)")
    }

    // MARK: limits

    @Test(arguments: [["compress", "a.img", "-o", "x.gz"], ["decompress", "x.gz", "-o", "x.img"]])
    func threadsBeyondTheMachineAreAUsageError(_ command: [String]) throws {
        let f = CLIFixture()
        let run = try imgmap(command + ["--threads", "1000000"], in: f.folder)
        #expect(run.status == 64, "\(run.stderr)")
        #expect(run.stderr.contains("--threads 1000000: at most \(Limits.maximumThreads) on this machine"), "\(run.stderr)")
        #expect(!run.stderr.contains("Fatal error"))
        #expect(f.leftovers(besides: []) == [])
    }

    // MARK: names

    @Test func aTablePathHoldingANulIsRefusedWith65NamingTheLine() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 8 zero\n8 8 linear a.img\0junk 0\n")
        let run = try imgmap(["compose", table, "-o", "out.img"], in: f.folder)
        #expect(run.status == 65, "\(run.stderr)")
        #expect(run.stderr.hasPrefix("imgmap: \(table):2: Invalid format: a NUL byte at byte 25"), "\(run.stderr)")
        #expect(f.leftovers(besides: ["t.table"]) == [])
    }

    /// The kernel's `isspace` counts byte 0xA0, so a UTF-8 no-break space (C2 A0) does split an
    /// argument. Asked of the kernel (dm-oracle, Linux 6.1): `0 8 linear A 0\u{a0}x` is
    /// "linear: Invalid argument count" (three arguments: `A`, `0\xc2`, `x`), not "Invalid device sector".
    @Test func aNoBreakSpaceSplitsArgumentsAsInTheKernel() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 8 linear A 0\u{a0}x\n")
        let run = try imgmap(["check", table] + f.devA, in: f.folder)
        #expect(run.status == 65, "\(run.stderr)")
        #expect(run.stderr.contains("\(table):1: linear: Invalid argument count"), "\(run.stderr)")
    }

    @Test func anOutputNamed250BytesLongIsWritten() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let name = String(repeating: "n", count: 246) + ".img"
        let run = try imgmap(["compose", table] + f.devs + ["-o", name], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(readBytes(f.folder.file(name)) == (try f.expectedBytes(CLIFixture.cleanTable)))
        #expect(f.leftovers(besides: ["t.table", name]) == [])
    }

    // MARK: digest lines

    @Test func aCompressedComposesDigestLineIsAcceptedBySha256sum() throws {
        guard toolPath("sha256sum") != nil else { try Test.cancel("sha256sum(1) is not installed") }
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let run = try imgmap(["compose", table] + f.devs + ["--compress", "-o", "d.gz", "--digest", "sha256", "--digest-file", "d.sha"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        let line = String(decoding: readBytes(f.folder.file("d.sha")), as: UTF8.self)
        #expect(line == sha256(try f.expectedBytes(CLIFixture.cleanTable)) + "  -\n")
        #expect(run.out == line)
        let check = try shell("\"$IMGMAP\" decompress d.gz -o - | sha256sum -c d.sha", in: f.folder)
        #expect(check.status == 0, "\(check.out) \(check.stderr)")
        // The plain image's line names the file itself.
        _ = try imgmap(["compose", table] + f.devs + ["-o", "d.img", "--digest", "sha256", "--digest-file", "d2.sha"], in: f.folder)
        #expect(try shell("sha256sum -c d2.sha", in: f.folder).status == 0)
    }

    // MARK: stdout

    @Test func aStdoutThatCannotBeWrittenIsExit74() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        for command in [["check", table], ["map", table]] {
            let run = try imgmap(command + f.devs, stdoutTo: "/dev/full", in: f.folder)
            #expect(run.status == 74, "\(command): \(run.stderr)")
            #expect(run.stderr == "imgmap: <stdout>: write: No space left on device\n", "\(run.stderr)")
        }
    }

    // MARK: durability

    @Test func composeSyncsTheFileBeforeTheRenameAndTheDirectoryAfter() throws {
        guard let strace = toolPath("strace") else { try Test.cancel("strace(1) is not installed") }
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let log = f.folder.file("strace.log")
        let run = try imgmap(["compose", table] + f.devs + ["-o", "out.img"],
                             wrapper: [strace, "-f", "-qq", "-o", log, "-e", "trace=fsync,fdatasync,rename,renameat,renameat2"], in: f.folder)
        guard run.status == 0 else { try Test.cancel("strace cannot trace here: \(run.stderr)") }
        let calls = String(decoding: readBytes(log), as: UTF8.self).split(separator: "\n")
            .compactMap { line in ["fsync", "rename"].first { line.contains(" \($0)(") || line.contains(" \($0)at") || line.contains(" \($0)at2(") } }
        #expect(calls == ["fsync", "rename", "fsync"], "\(calls)")
    }

    // MARK: signals

    @Test(arguments: [SIGINT, SIGTERM, SIGUSR1, SIGALRM])
    func signalWhileCompressingFromAPipeRemovesTheTemporary(_ signal: Int32) throws {
        let f = CLIFixture()
        // The child reads stdin from a FIFO no one writes: it holds its output open and waits there.
        let input = FifoReader(f.folder.file("in.fifo"))
        let child = try Child(["compress", "-", "-o", "out.gz"], stdin: input.path,
                              stdout: .init("/dev/null"), stderr: .init(f.folder.file("stderr")), in: f.folder.path)
        waitUntil("compress holds its output") { holdsOutput(child.pid, in: f.folder.path, named: "out.gz") || !child.isRunning }
        child.send(signal)
        #expect(child.wait().status == 128 + signal)
        #expect(f.leftovers(besides: ["in.fifo", "stderr"]) == [])
    }
}

// MARK: file names that are not UTF-8

struct PathBytesTests {
    @Test func everyByteStringRoundTrips() {
        var rng = SplitMix64(seed: 8)
        var samples: [[UInt8]] = [[0x61, 0xFF, 0x2E], [0xF4, 0x8F, 0xBF, 0xBF], [0xED, 0xA0, 0x80], [0xC0, 0xAF], Array("é/ü".utf8)]
        for _ in 0..<2000 { samples.append(rng.bytes(Int.random(in: 0...12, using: &rng))) }
        for bytes in samples {
            #expect(PathBytes.bytes(PathBytes.string(bytes)) == bytes, "\(bytes)")
        }
        // Valid UTF-8 decodes as itself; only the bytes that are not UTF-8 are escaped.
        #expect(PathBytes.string(Array("disk é.img".utf8)) == "disk é.img")
        #expect(escapedForMessage(PathBytes.string([0x61, 0xFF, 0x2E, 0x69])) == "a\\xFF.i")
        #expect(jsonString(PathBytes.string([0x61, 0xFF])) == "\"a\\udcff\"")
    }
}

extension ReliabilityTests {
    /// `a\xff.img` named in a table and by `--dev`, composed to `o\xfe.img`; map prints the name's bytes,
    /// and `--json` writes them as surrogate escapes. The arguments go through a shell, since a Swift
    /// string cannot carry the raw bytes into argv.
    @Test func fileNamesThatAreNotUTF8AreKept() throws {
        let f = CLIFixture()
        let image = f.folder.path + "/" + PathBytes.string([0x61, 0xFF, 0x2E, 0x69, 0x6D, 0x67])
        let fd = PathCalls.open(image, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        #expect(fd >= 0)
        let content = GoldenImages.bytes("A", sectors: 16)
        _ = content.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        close(fd)
        var table = Array("0 16 linear ".utf8) + [0x61, 0xFF] + Array(".img 0\n".utf8)
        _ = FileManager.default.createFile(atPath: f.folder.file("t.table"), contents: Data(table))
        table = Array("0 16 linear X 0\n".utf8)
        _ = FileManager.default.createFile(atPath: f.folder.file("u.table"), contents: Data(table))

        let compose = try imgmap([], wrapper: ["/bin/sh", "-c", #"exec "$0" compose t.table -o "$(printf 'o\376.img')""#], in: f.folder)
        #expect(compose.status == 0, "\(compose.stderr)")
        let output = f.folder.path + "/" + PathBytes.string([0x6F, 0xFE, 0x2E, 0x69, 0x6D, 0x67])
        var st = stat()
        #expect(PathCalls.stat(output, &st) == 0 && st.st_size == 16 * 512)
        let bound = try imgmap([], wrapper: ["/bin/sh", "-c", #"exec "$0" compose u.table --dev "X=$(printf 'a\377.img')" -o - --force"#], in: f.folder)
        #expect(bound.status == 0, "\(bound.stderr)")
        #expect(bound.stdout == content)

        let map = try imgmap(["map", "t.table"], in: f.folder)
        #expect(map.stdout.firstRange(of: [0x61, 0xFF, 0x2E, 0x69]) != nil, "\(map.stdout)")
        let json = try imgmap(["map", "t.table", "--json"], in: f.folder)
        #expect(json.out.contains(#""file":"a\udcff.img""#), "\(json.out)")
        // A missing one is named with its bytes.
        let missing = try imgmap([], wrapper: ["/bin/sh", "-c", #"exec "$0" check "$(printf 'n\377.table')""#], in: f.folder)
        #expect(missing.status == 66)
        // (stderr is read back as UTF-8 here, so the byte 0xFF shows as U+FFFD.)
        #expect(missing.stderr.hasPrefix("imgmap: n\u{FFFD}.table: open: No such file or directory"), "\(missing.stderr)")
    }
}

extension ReliabilityTests {
    /// `decompress <(cat x.gz)`: a FIFO is read as a stream (spooled), not taken for an empty file.
    @Test func decompressReadsAFIFOAsAStream() throws {
        let f = CLIFixture()
        let compress = try imgmap(["compress", f.a, "-o", "a.gz"], in: f.folder)
        #expect(compress.status == 0, "\(compress.stderr)")
        let fifo = f.folder.file("a.fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        let run = try imgmap([], wrapper: ["/bin/sh", "-c", #"cat a.gz > a.fifo & exec "$0" decompress a.fifo -o out.img"#], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(readBytes(f.folder.file("out.img")) == readBytes(f.a))
    }
}
