import Foundation
import Testing

@testable import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

// compose's outputs: --digest (sha256, sha512) over a file and over stdout, --digest-file in sha256sum
// format, --sparse always/never, stdout through a real pipe (the splice/vmsplice path), and a reader
// that goes away early.

/// Runs `imgmap arguments…` with stdout a pipe (read to the end while it runs), stderr in a file.
func imgmapThroughPipe(_ arguments: [String], in directory: TemporaryDirectory) throws -> Run {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: imgmapBinary)
    process.arguments = arguments
    process.currentDirectoryURL = directory.url
    let io = TemporaryDirectory("imgmap-cli-io")
    let errPath = io.file("stderr")
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Run(status: process.terminationStatus, stdout: [UInt8](data), stderr: String(decoding: readBytes(errPath), as: UTF8.self))
}

func sha512(_ bytes: [UInt8]) -> String { MessageDigest.hash(.sha512, bytes).map { String(format: "%02x", $0) }.joined() }

func allocatedBytes(_ path: String) -> Int64 {
    var st = stat()
    precondition(stat(path, &st) == 0)
    return Int64(st.st_blocks) * 512
}

/// Images A and B of 4096 sectors and a 7.5 MiB table over them with every kind of extent, larger
/// than a pipe's buffer.
struct StreamFixture {
    let folder = TemporaryDirectory("imgmap-compose-out")
    let a: String
    let b: String
    static let table = "0 4096 linear A 0\n4096 2048 zero\n6144 1024 error\n7168 8192 striped 2 64 A 0 B 0\n"

    init() {
        a = folder.file("a.img")
        b = folder.file("b.img")
        try! FileManager.default.copyItem(atPath: GoldenImages.path("A", sectors: 4096), toPath: a)
        try! FileManager.default.copyItem(atPath: GoldenImages.path("B", sectors: 4096), toPath: b)
        folder.write("t.table", Self.table)
    }

    var devs: [String] { ["--dev", "A=a.img", "--dev", "B=b.img"] }

    func expectedBytes() throws -> [UInt8] {
        try readAll(SectorMap(top: try loadTables(Self.table, devices: ["A": a, "B": b]).top))
    }
}

struct ComposeOutputTests {
    @Test(arguments: DigestAlgorithm.allCases)
    func digestInTheReportIsTheHashOfTheComposedFile(_ algorithm: DigestAlgorithm) throws {
        let f = CLIFixture()
        let loaded = try loadTables(CLIFixture.mixedTable, devices: ["A": f.a, "B": f.b])
        let path = f.folder.file("out.img")
        let out = try OutputFile(path: path, inputs: loaded.leaves.map(\.image))
        let report = try Compose(map: SectorMap(top: loaded.top), options: .init(onError: .zero, digest: algorithm)).run(to: out)
        try out.commit()
        let bytes = readBytes(path)
        #expect(report.digest == (algorithm == .sha256 ? sha256(bytes) : sha512(bytes)))
    }

    @Test(arguments: [Compose.Sparse.auto, .always, .never])
    func everySparseModeGivesTheSameBytes(_ sparse: Compose.Sparse) throws {
        let f = CLIFixture()
        let z = zeroHeavyImage(f.folder)
        let table = "0 2048 linear Z 0\n2048 2048 zero\n4096 64 linear A 0\n"
        let loaded = try loadTables(table, devices: ["Z": z, "A": f.a])
        let map = SectorMap(top: loaded.top)
        let path = f.folder.file("out-\(sparse).img")
        let out = try OutputFile(path: path, inputs: loaded.leaves.map(\.image))
        _ = try Compose(map: map, options: .init(sparse: sparse)).run(to: out)
        try out.commit()
        expectSameBytes(readBytes(path), try readAll(map))
    }

    @Test func sparseAlwaysLeavesZeroBlocksUnallocatedAndNeverAllocatesAll() throws {
        let f = CLIFixture()
        let z = zeroHeavyImage(f.folder)
        let table = "0 2048 linear Z 0\n2048 2048 zero\n4096 64 linear A 0\n"
        let loaded = try loadTables(table, devices: ["Z": z, "A": f.a])
        let map = SectorMap(top: loaded.top)
        var allocated: [Compose.Sparse: Int64] = [:]
        for sparse in Compose.Sparse.allCases {
            let path = f.folder.file("out-\(sparse).img")
            let out = try OutputFile(path: path, inputs: loaded.leaves.map(\.image))
            _ = try Compose(map: map, options: .init(sparse: sparse)).run(to: out)
            try out.commit()
            allocated[sparse] = allocatedBytes(path)
        }
        let size = Int64(map.size.bytes)
        // never: every byte allocated; auto: Z's written zeros copied, the zero extent a hole; always:
        // only the 8 KiB of data in Z and A's 32 KiB.
        #expect(allocated[.never]! >= size)
        #expect(allocated[.auto]! >= 2048 * 512 && allocated[.auto]! < size)
        #expect(allocated[.always]! < allocated[.auto]!)
        #expect(allocated[.always]! <= 64 * 1024)
    }

    @Test(arguments: [Compose.Sparse.auto, .always])
    func manyShortExtentsFromTwoImagesKeepEveryByte(_ sparse: Compose.Sparse) throws {
        // Hundreds of short extents taken alternately from A and B (as a snapshot's chunks or a thin
        // pool's blocks come), lengths not multiples of the 4 KiB zero-detection block nor of the
        // 64 KiB buffer, broken by a zero segment, an error segment read as zeros and a window of Z's
        // zeros.
        let f = StreamFixture()
        let z = zeroHeavyImage(f.folder)
        var table = ""
        var at: UInt64 = 0
        for i in 0..<300 {
            let length = UInt64(1 + (i * 7) % 17)
            let line: String
            switch i {
            case 100: line = "zero"
            case 200: line = "error"
            case 250: line = "linear Z 0"
            default: line = "linear \(i % 2 == 0 ? "A" : "B") \((UInt64(i) * 37) % 4000)"
            }
            table += "\(at) \(length) \(line)\n"
            at += length
        }
        let loaded = try loadTables(table, devices: ["A": f.a, "B": f.b, "Z": z])
        let map = SectorMap(top: loaded.top)
        let path = f.folder.file("out-\(sparse).img")
        let out = try OutputFile(path: path, inputs: loaded.leaves.map(\.image))
        var options = Compose.Options(onError: .zero, sparse: sparse)
        options.bufferSize = 64 << 10
        let report = try Compose(map: map, options: options).run(to: out)
        try out.commit()
        expectSameBytes(readBytes(path), try readAll(map))
        #expect(report.errors.ranges.count == 1)
    }

    /// Z: 2048 sectors, fully written: zeros except 8 KiB of data at 512 KiB.
    func zeroHeavyImage(_ folder: TemporaryDirectory) -> String {
        var bytes = [UInt8](repeating: 0, count: 2048 * 512)
        for k in 0..<16 { GoldenImages.fillSector("Z", UInt64(1024 + k), into: &bytes, at: (1024 + k) * 512) }
        let path = folder.file("z.img")
        try! Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }
}

// MARK: - The command line

@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: imgmapBinary),
                "imgmap binary not found at .build/debug/imgmap: run `swift build` first"))
struct ComposeOutputCommandTests {
    @Test func digestSHA256IsPrintedForTheFileAndEqualsItsHash() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", "t.table"] + f.devs + ["-o", "out.img", "--on-error", "zero", "--digest", "sha256"], in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
            let hash = try #require(sha256(file: f.folder.file("out.img")))
            #expect(run.out == "\(hash)  out.img\n")
            #expect(run.stderr == "")
        }
    }

    @Test func digestSHA512IsPrintedForTheFileAndEqualsItsHash() throws {
        let f = CLIFixture()
        f.folder.write("t.table", CLIFixture.mixedTable)
        let run = try imgmap(["compose", "t.table"] + f.devs + ["-o", "out.img", "--on-error", "zero", "--digest", "sha512"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.out == "\(sha512(readBytes(f.folder.file("out.img"))))  out.img\n")
    }

    @Test(arguments: ["sha256", "sha512"])
    func digestOfStdoutGoesToStderrAndEqualsTheStreamsHash(_ algorithm: String) throws {
        let f = CLIFixture()
        f.folder.write("t.table", CLIFixture.mixedTable)
        let run = try imgmap(["compose", "t.table"] + f.devs + ["-o", "-", "--on-error", "zero", "--digest", algorithm], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        expectSameBytes(run.stdout, try f.expectedBytes(CLIFixture.mixedTable))
        let hash = algorithm == "sha256" ? sha256(run.stdout) : sha512(run.stdout)
        #expect(run.stderr == "\(hash)  -\n")
    }

    @Test func digestFileIsInSha256sumCheckFormat() throws {
        let f = CLIFixture()
        f.folder.write("t.table", CLIFixture.cleanTable)
        let run = try imgmap(["compose", "t.table"] + f.devs + ["-o", "out.img", "--digest", "sha256", "--digest-file", "out.img.sha256"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        let hash = try #require(sha256(file: f.folder.file("out.img")))
        #expect(String(decoding: readBytes(f.folder.file("out.img.sha256")), as: UTF8.self) == "\(hash)  out.img\n")
        if toolPath("sha256sum") != nil {
            let check = try shell("sha256sum -c out.img.sha256", in: f.folder)
            #expect(check.status == 0, "\(check.out)\(check.stderr)")
            #expect(check.out == "out.img: OK\n")
        }
    }

    @Test func digestFileInAMissingDirectoryIsRefusedBeforeTheOutputAppears() throws {
        let f = CLIFixture()
        f.folder.write("t.table", CLIFixture.cleanTable)
        let run = try imgmap(["compose", "t.table"] + f.devs + ["-o", "out.img", "--digest", "sha256", "--digest-file", "no/such/dir/out.sha"], in: f.folder)
        #expect(run.status == 73)
        #expect(run.stderr.contains("(the directory no/such/dir does not exist)"), "\(run.stderr)")
        #expect(run.out == "")
        #expect(f.leftovers(besides: ["t.table"]) == [])
    }

    @Test func digestFileThatIsAnImageIsRefusedBeforeTheOutputAppears() throws {
        let f = CLIFixture()
        f.folder.write("t.table", CLIFixture.cleanTable)
        try expectUnchanged(f.images) {
            let run = try imgmap(["compose", "t.table"] + f.devs + ["-o", "out.img", "--digest", "sha256", "--digest-file", f.a], in: f.folder)
            #expect(run.status == 64)
            #expect(run.stderr == "imgmap: \(f.a): the output is also an input (\(f.a)); write to another file\n")
            #expect(run.out == "")
        }
        #expect(f.leftovers(besides: ["t.table"]) == [])
    }

    @Test func digestFileWithoutDigestIsAUsageError() throws {
        let f = CLIFixture()
        f.folder.write("t.table", CLIFixture.cleanTable)
        let run = try imgmap(["compose", "t.table"] + f.devs + ["-o", "out.img", "--digest-file", "out.sha"], in: f.folder)
        #expect(run.status == 64)
        #expect(run.stderr.contains("--digest-file needs --digest sha256 (or sha512)"), "\(run.stderr)")
        #expect(f.leftovers(besides: ["t.table"]) == [])
    }

    @Test func sparseAlwaysFromTheCommandLineKeepsTheBytes() throws {
        let f = CLIFixture()
        f.folder.write("t.table", CLIFixture.mixedTable)
        for mode in ["always", "never"] {
            let run = try imgmap(["compose", "t.table"] + f.devs + ["-o", "\(mode).img", "--on-error", "zero", "--sparse", mode], in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
            expectSameBytes(readBytes(f.folder.file("\(mode).img")), try f.expectedBytes(CLIFixture.mixedTable))
        }
        #expect(allocatedBytes(f.folder.file("never.img")) >= 160 * 512)
        #expect(allocatedBytes(f.folder.file("always.img")) < allocatedBytes(f.folder.file("never.img")))
    }

    @Test func streamThroughAPipeEqualsTheFile() throws {
        let f = StreamFixture()
        try expectUnchanged([f.a, f.b]) {
            let file = try imgmap(["compose", "t.table"] + f.devs + ["-o", "out.img", "--on-error", "zero"], in: f.folder)
            #expect(file.status == 0, "\(file.stderr)")
            let piped = try imgmapThroughPipe(["compose", "t.table"] + f.devs + ["-o", "-", "--on-error", "zero"], in: f.folder)
            #expect(piped.status == 0, "\(piped.stderr)")
            #expect(piped.stderr == "")
            #expect(piped.stdout.count == 15360 * 512)
            expectSameBytes(piped.stdout, readBytes(f.folder.file("out.img")))
            expectSameBytes(piped.stdout, try f.expectedBytes())
        }
    }

    @Test func streamThroughAPipeWithADigestEqualsTheFile() throws {
        let f = StreamFixture()
        let piped = try imgmapThroughPipe(["compose", "t.table"] + f.devs + ["-o", "-", "--on-error", "zero", "--digest", "sha256"], in: f.folder)
        #expect(piped.status == 0, "\(piped.stderr)")
        expectSameBytes(piped.stdout, try f.expectedBytes())
        #expect(piped.stderr == "\(sha256(piped.stdout))  -\n")
    }

    @Test func errorsFileListsTheRangesOfAPipedStream() throws {
        let f = StreamFixture()
        let piped = try imgmapThroughPipe(["compose", "t.table"] + f.devs + ["-o", "-", "--on-error", "zero", "--errors", "errors.txt"], in: f.folder)
        #expect(piped.status == 0, "\(piped.stderr)")
        #expect(String(decoding: readBytes(f.folder.file("errors.txt")), as: UTF8.self) == "6144 1024\n")
    }

    /// Devices of 72 MiB (zeros around data, and data first) read only 1000 bytes into `head`: far more
    /// than any pipe buffer, so imgmap is still writing when the reader goes away.
    @Test(arguments: [[], ["--digest", "sha256"]])
    func readerClosingEarlyExits141Quietly(_ extra: [String]) throws {
        let f = StreamFixture()
        f.folder.write("big.table", "0 131072 zero\n131072 8192 striped 2 64 A 0 B 0\n139264 8192 zero\n")
        f.folder.write("data-first.table", "0 4096 linear A 0\n4096 4096 linear B 0\n8192 139264 zero\n")
        for table in ["big.table", "data-first.table"] {
            let command = "(\"$IMGMAP\" compose \(table) --dev A=a.img --dev B=b.img -o - \(extra.joined(separator: " ")) 2>err.txt; "
                + "echo $? > status.txt) | head -c 1000 > head.out"
            let run = try shell(command, in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(String(decoding: readBytes(f.folder.file("status.txt")), as: UTF8.self) == "141\n", "\(table) \(extra)")
            #expect(readBytes(f.folder.file("err.txt")).isEmpty, "\(table) \(extra): \(String(decoding: readBytes(f.folder.file("err.txt")), as: UTF8.self))")
            #expect(fileSize(f.folder.file("head.out")) == 1000)
        }
    }
}
