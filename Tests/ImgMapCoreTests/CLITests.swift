import Foundation
import Testing

@testable import ImgMapCore

// The `imgmap` executable run as a subprocess: exit statuses (sysexits), messages, outputs that appear
// whole or not at all, and inputs left untouched. Uses the binary `swift build` leaves in .build/debug.

/// `.build/debug/imgmap` under the package root.
let imgmapBinary = packageRootURL.appendingPathComponent(".build/debug/imgmap").path

/// What a run of the binary did.
struct Run {
    var status: Int32
    var stdout: [UInt8]
    var stderr: String
    var out: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs `imgmap arguments…` with stdout and stderr collected in files (no pipe can fill up), stdin
/// from `stdin` (or /dev/null), in `directory`. With `stdoutTo`, stdout is that existing file instead,
/// opened for writing without truncation (as `>>` would). `stdinFile` feeds an existing file (binary)
/// instead of `stdin`; `environment` entries are added to (or replace) the inherited environment.
func imgmap(_ arguments: [String], stdin: String? = nil, stdinFile: String? = nil, stdoutTo: String? = nil,
            environment: [String: String] = [:], in directory: TemporaryDirectory) throws -> Run {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: imgmapBinary)
    process.arguments = arguments
    process.currentDirectoryURL = directory.url
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let io = TemporaryDirectory("imgmap-cli-io")
    let outPath = io.file("stdout")
    let errPath = io.file("stderr")
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: stdoutTo ?? outPath))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    if let stdinFile {
        process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: stdinFile))
    } else if let stdin {
        process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: io.write("stdin", stdin)))
    } else {
        process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
    }
    try process.run()
    process.waitUntilExit()
    return Run(status: process.terminationStatus, stdout: readBytes(outPath), stderr: String(decoding: readBytes(errPath), as: UTF8.self))
}

/// Runs `command` with /bin/sh in `directory` (for pipelines), stdout and stderr collected in files.
/// `$IMGMAP` in the command is the binary under test.
func shell(_ command: String, in directory: TemporaryDirectory) throws -> Run {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    process.currentDirectoryURL = directory.url
    process.environment = ProcessInfo.processInfo.environment.merging(["IMGMAP": imgmapBinary]) { $1 }
    let io = TemporaryDirectory("imgmap-cli-io")
    let outPath = io.file("stdout")
    let errPath = io.file("stderr")
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
    try process.run()
    process.waitUntilExit()
    return Run(status: process.terminationStatus, stdout: readBytes(outPath), stderr: String(decoding: readBytes(errPath), as: UTF8.self))
}

/// Runs `body` and checks that none of `paths` changed (SHA-256 before and after).
func expectUnchanged(_ paths: [String], sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) rethrows {
    let before = paths.map { sha256(file: $0) }
    try body()
    let after = paths.map { sha256(file: $0) }
    #expect(before == after, "an input changed", sourceLocation: sourceLocation)
    #expect(!before.contains(nil), "an input is missing", sourceLocation: sourceLocation)
}

/// A folder with images A (256 sectors) and B (128 sectors) and a table over them.
struct CLIFixture {
    let folder = TemporaryDirectory("imgmap-cli")
    let a: String
    let b: String
    /// 0..<64 linear A 8, 64..<80 zero, 80..<96 error, 96..<160 striped over A and B.
    static let mixedTable = "0 64 linear A 8\n64 16 zero\n80 16 error\n96 64 striped 2 8 A 100 B 0\n"
    static let cleanTable = "0 64 linear A 8\n64 16 zero\n80 64 striped 2 8 A 100 B 0\n"

    init() {
        a = folder.file("a.img")
        b = folder.file("b.img")
        try! FileManager.default.copyItem(atPath: GoldenImages.path("A", sectors: 256), toPath: a)
        try! FileManager.default.copyItem(atPath: GoldenImages.path("B", sectors: 128), toPath: b)
    }

    var devs: [String] { ["--dev", "A=\(a)", "--dev", "B=\(b)"] }
    var images: [String] { [a, b] }

    /// The bytes the table must compose to, from the in-process engine (errors as zeros).
    func expectedBytes(_ table: String) throws -> [UInt8] {
        try readAll(SectorMap(top: try loadTables(table, devices: ["A": a, "B": b]).top))
    }

    /// Entries of the folder other than the images and tables it was given.
    func leftovers(besides names: [String]) -> [String] {
        folder.entries().filter { !(["a.img", "b.img"] + names).contains($0) }
    }
}

@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: imgmapBinary),
                "imgmap binary not found at .build/debug/imgmap: run `swift build` first"))
struct CLITests {
    // MARK: exit statuses

    @Test func validComposeExitsZeroAndWritesTheDevice() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", table] + f.devs + ["-o", f.folder.file("out.img")], in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stderr == "")
            #expect(readBytes(f.folder.file("out.img")) == (try f.expectedBytes(CLIFixture.cleanTable)))
        }
        #expect(f.leftovers(besides: ["t.table", "out.img"]) == [])
    }

    @Test func unknownOptionExits64() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let run = try imgmap(["compose", table, "--bogus", "-o", "out.img"] + f.devs, in: f.folder)
        #expect(run.status == 64)
        #expect(run.stderr.contains("--bogus"))
        #expect(!fileExists(f.folder.file("out.img")))
    }

    @Test func missingOutputOptionExits64() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        #expect(try imgmap(["compose", table] + f.devs, in: f.folder).status == 64)
    }

    @Test func malformedDevBindingExits64() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let run = try imgmap(["check", table, "--dev", "A"], in: f.folder)
        #expect(run.status == 64)
        #expect(run.stderr == "imgmap: --dev A: expected NAME=VALUE\n")
    }

    @Test func badTableExits65NamingFileAndLine() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 64 linear A 8\n64 16 Bogus\n")
        try expectUnchanged(f.images + [table]) {
            let compose = try imgmap(["compose", table] + f.devs + ["-o", "out.img"], in: f.folder)
            #expect(compose.status == 65)
            #expect(compose.stderr.hasPrefix("imgmap: \(table):2: unknown target type: `Bogus`"), "\(compose.stderr)")
            let check = try imgmap(["check", table] + f.devs, in: f.folder)
            #expect(check.status == 65)
            #expect(check.stderr.contains("\(table):2: "))
        }
        #expect(f.leftovers(besides: ["t.table"]) == [])
    }

    @Test func missingImageExits66() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let missing = f.folder.file("missing.img")
        let run = try imgmap(["compose", table, "--dev", "A=\(missing)", "--dev", "B=\(f.b)", "-o", "out.img"], in: f.folder)
        #expect(run.status == 66)
        #expect(run.stderr.contains("\(missing): No such file or directory"), "\(run.stderr)")
        #expect(f.leftovers(besides: ["t.table"]) == [])
    }

    @Test func missingTableExits66() throws {
        let f = CLIFixture()
        let run = try imgmap(["check", f.folder.file("nothing.table")], in: f.folder)
        #expect(run.status == 66)
        #expect(run.stderr.contains("nothing.table: open: No such file or directory"))
    }

    @Test func outputInAMissingDirectoryExits73() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let out = f.folder.file("no/such/dir/out.img")
        let run = try imgmap(["compose", table] + f.devs + ["-o", out], in: f.folder)
        #expect(run.status == 73)
        #expect(run.stderr.contains("the directory \(f.folder.path)/no/such/dir does not exist"), "\(run.stderr)")
    }

    @Test func errorExtentWithoutOnErrorZeroExits74AndLeavesNoOutput() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", table] + f.devs + ["-o", "out.img", "--errors", "errors.txt"], in: f.folder)
            #expect(run.status == 74)
            #expect(run.stderr.contains("sectors 80+16 (\(table):3 error): Input/output error"), "\(run.stderr)")
        }
        #expect(!fileExists(f.folder.file("out.img")))
        #expect(!f.folder.entries().contains { $0.hasPrefix("out.img.tmp-") })
        // The errors file still lists the ranges, so the failure can be looked into.
        #expect(String(decoding: readBytes(f.folder.file("errors.txt")), as: UTF8.self) == "80 16\n")
    }

    @Test func failedComposeKeepsAnExistingOutput() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        let old = f.folder.write("out.img", "previous contents")
        let run = try imgmap(["compose", table] + f.devs + ["-o", old], in: f.folder)
        #expect(run.status == 74)
        #expect(String(decoding: readBytes(old), as: UTF8.self) == "previous contents")
    }

    // MARK: outputs that are inputs

    @Test func outputThatIsAnImageIsRefused() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", table] + f.devs + ["-o", f.a], in: f.folder)
            #expect(run.status == 64)
            #expect(run.stderr.contains("the output is also an input"), "\(run.stderr)")
        }
        #expect(f.leftovers(besides: ["t.table"]) == [])
    }

    @Test func outputThatIsTheTableIsRefused() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", "t.table"] + f.devs + ["-o", table], in: f.folder)
            #expect(run.status == 64)
        }
    }

    @Test func outputThatIsTheDmsetupLsFileIsRefused() throws {
        let f = CLIFixture()
        let dump = f.folder.write("dump.txt", "lv: 0 8 linear 253:0 0\npool: 0 32 linear 8:16 0\n")
        let ls = f.folder.write("ls.txt", "pool\t(253:0)\n")
        try expectUnchanged(f.images + [dump, ls]) {
            let run = try imgmap(["compose", dump, "--dmsetup-ls", ls, "--dev", "8:16=\(f.a)", "-o", ls], in: f.folder)
            #expect(run.status == 64)
            #expect(run.stderr.contains("the output is also an input"), "\(run.stderr)")
        }
    }

    @Test func outputThatIsAHardLinkToAnImageIsRefused() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let link = f.folder.file("link.img")
        try FileManager.default.linkItem(atPath: f.a, toPath: link)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", table] + f.devs + ["-o", link], in: f.folder)
            #expect(run.status == 64)
        }
    }

    @Test func stdoutThatIsAnImageIsRefused() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", table] + f.devs + ["-o", "-"], stdoutTo: f.b, in: f.folder)
            #expect(run.status == 64)
            #expect(run.stderr.contains("standard output is the input \(f.b)"), "\(run.stderr)")
        }
    }

    // MARK: stdin and stdout

    @Test func tableFromStdinComposesTheSameDevice() throws {
        let f = CLIFixture()
        try expectUnchanged(f.images) {
            let run = try imgmap(["compose", "-"] + f.devs + ["-o", "out.img"], stdin: CLIFixture.cleanTable, in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(readBytes(f.folder.file("out.img")) == (try f.expectedBytes(CLIFixture.cleanTable)))
        }
    }

    @Test func badTableFromStdinIsNamedStdin() throws {
        let f = CLIFixture()
        let run = try imgmap(["check", "-"], stdin: "0 8 zero\n9 8 zero\n", in: f.folder)
        #expect(run.status == 65)
        #expect(run.stderr.hasPrefix("imgmap: <stdin>:2: Gap in table"), "\(run.stderr)")
    }

    @Test func streamingToStdoutGivesTheFilesBytes() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        try expectUnchanged(f.images + [table]) {
            let file = try imgmap(["compose", table] + f.devs + ["-o", "out.img", "--on-error", "zero"], in: f.folder)
            #expect(file.status == 0, "\(file.stderr)")
            let stream = try imgmap(["compose", table] + f.devs + ["-o", "-", "--on-error", "zero"], in: f.folder)
            #expect(stream.status == 0, "\(stream.stderr)")
            #expect(stream.stdout.count == 160 * 512)
            #expect(stream.stdout == readBytes(f.folder.file("out.img")))
            #expect(stream.stdout == (try f.expectedBytes(CLIFixture.mixedTable)))
        }
    }

    // MARK: --errors

    @Test func errorsFileListsMergedRanges() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 8 error\n8 8 error\n16 8 zero\n24 1 error\n25 7 linear A 0\n")
        let run = try imgmap(["compose", table] + f.devs + ["-o", "out.img", "--on-error", "zero", "--errors", "errors.txt"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(String(decoding: readBytes(f.folder.file("errors.txt")), as: UTF8.self) == "0 16\n24 1\n")
    }

    @Test func errorsFileIsEmptyWhenThereAreNone() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let run = try imgmap(["compose", table] + f.devs + ["-o", "out.img", "--on-error", "zero", "--errors", "errors.txt"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(fileExists(f.folder.file("errors.txt")))
        #expect(fileSize(f.folder.file("errors.txt")) == 0)
    }

    @Test func errorsFileIsReplacedOnARerun() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        f.folder.write("errors.txt", "stale\n")
        let run = try imgmap(["compose", table] + f.devs + ["-o", "out.img", "--on-error", "zero", "--errors", "errors.txt"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(String(decoding: readBytes(f.folder.file("errors.txt")), as: UTF8.self) == "80 16\n")
    }

    @Test func errorsFileThatIsAnImageIsRefused() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", table] + f.devs + ["-o", "out.img", "--on-error", "zero", "--errors", f.b], in: f.folder)
            #expect(run.status == 64)
        }
        #expect(f.leftovers(besides: ["t.table"]) == [])
    }

    // MARK: map and check

    @Test func mapJSONLinesCarryTheDocumentedKeys() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        let run = try imgmap(["map", table, "--json"] + f.devs, in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        let lines = run.out.split(separator: "\n")
        #expect(lines.count == 11)  // linear, zero, error, then one extent per chunk of the striped segment
        var position = 0
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let keys = Set(object.keys)
            #expect(keys.isSuperset(of: ["start", "length", "target", "device", "file", "offset", "table", "line"]), "\(line)")
            #expect(object["start"] as? Int == position)
            position += object["length"] as? Int ?? 0
            #expect(object["table"] as? String == table)
        }
        #expect(position == 160)
        let first = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(first["target"] as? String == "linear")
        #expect(first["device"] as? String == "A")
        #expect(first["file"] as? String == f.a)
        #expect(first["offset"] as? Int == 8)
        #expect(first["line"] as? Int == 1)
        let error = try #require(try JSONSerialization.jsonObject(with: Data(lines[2].utf8)) as? [String: Any])
        #expect(error["error"] as? Bool == true)
        #expect(error["file"] is NSNull)
        #expect(error["offset"] is NSNull)
    }

    @Test func mapColumnsHaveAHeaderAndOneLinePerExtent() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 64 linear A 8\n64 16 zero\n")
        let run = try imgmap(["map", table] + f.devs, in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        let lines = run.out.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(lines == [
            ["START", "LENGTH", "TARGET", "DEVICE", "OFFSET", "TABLE:LINE", "FILE"],
            ["0", "64", "linear", "A", "8", "\(table):1", f.a],
            ["64", "16", "zero", "-", "-", "\(table):2", "-"],
        ])
    }

    @Test func checkPrintsTheSize() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        let run = try imgmap(["check", table] + f.devs, in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.out == "160 sectors (81920 bytes, 80.0 KiB): 4 segments in 1 table\n")
    }

    @Test func checkJSONPrintsTheSize() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        let run = try imgmap(["check", table, "--json"] + f.devs, in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.out == "{\"device\":\"top\",\"sectors\":160,\"bytes\":81920,\"segments\":4,\"tables\":1}\n")
    }

    @Test func checkWithoutDevNotesUncheckedImages() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 8 linear /nonexistent/imgmap/a.img 0\n")
        let run = try imgmap(["check", table], in: f.folder)
        #expect(run.status == 0)
        #expect(run.stderr.contains("/nonexistent/imgmap/a.img: no such image here, so its size was not checked"))
    }

    @Test func stackedTablesAndDumpBindingsWorkFromTheCommandLine() throws {
        let f = CLIFixture()
        let lower = f.folder.write("pv.table", "0 200 linear A 50\n")
        let dump = f.folder.write("dump.txt", "lv: 0 16 linear 253:0 4\npool: 0 32 linear 8:16 0\n")
        let ls = f.folder.write("ls.txt", "pool\t(253:0)\n")
        let stacked = try imgmap(["check", "-", "--table", "pv=\(lower)", "--dev", "A=\(f.a)"], stdin: "0 100 linear pv 10\n", in: f.folder)
        #expect(stacked.status == 0, "\(stacked.stderr)")
        #expect(stacked.out.hasPrefix("100 sectors"))
        let dumped = try imgmap(["check", dump, "--dmsetup-ls", ls, "--dev", "8:16=\(f.a)"], in: f.folder)
        #expect(dumped.status == 0, "\(dumped.stderr)")
        #expect(dumped.out.hasPrefix("16 sectors"))
    }
}
