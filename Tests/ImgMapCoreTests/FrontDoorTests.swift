import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import ImgMapCore

// The front door through the real binary: typos answered with the nearest name, one `imgmap:` prefix,
// usage errors on stderr with 64, stdin for decompress, binary refused on a terminal, the shared
// progress lines of every long command, and `map` columns that line up.

@Suite struct FrontDoorTests {
    /// A 64-sector image of text and a table mapping it whole; `imageName` can be long.
    struct Fixture {
        let folder = TemporaryDirectory("imgmap-frontdoor")
        let image: String
        let table: String
        let imageName: String

        init(imageName: String = "a.img") {
            self.imageName = imageName
            var bytes = [UInt8]()
            for i in 0..<(64 * 512) { bytes.append(UInt8(truncatingIfNeeded: i &* 7 &+ i / 512)) }
            image = folder.file(imageName)
            FileManager.default.createFile(atPath: image, contents: Data(bytes))
            table = folder.write("t.table", "0 64 linear \(imageName) 0\n")
        }
    }

    func firstLine(_ text: String) -> String { String(text.split(separator: "\n", omittingEmptySubsequences: false)[0]) }

    @Test func mistypedCommandIsNamedWithTheNearestCommand() throws {
        let f = Fixture()
        for (typo, meant) in [("compse", "compose"), ("mpa", "map"), ("verfiy", "verify"), ("decompres", "decompress")] {
            let run = try imgmap([typo, "t.table", "-o", "out.img"], in: f.folder)
            #expect(run.status == 64)
            #expect(firstLine(run.stderr) == "imgmap: '\(typo)' is not an imgmap command; did you mean \(meant)?")
            #expect(run.stdout.isEmpty)
        }
        #expect(!fileExists(f.folder.file("out.img")))
    }

    @Test func unknownCommandFarFromAnyListsTheCommands() throws {
        let f = Fixture()
        let run = try imgmap(["xyzzy"], in: f.folder)
        #expect(run.status == 64)
        #expect(firstLine(run.stderr).hasPrefix("imgmap: 'xyzzy' is not an imgmap command (commands: compose, map, check,"))
    }

    @Test func mistypedLongOptionGetsADidYouMeanEvenWhenARequiredOptionIsMissing() throws {
        let f = Fixture()
        let run = try imgmap(["compose", "t.table", "--ouput", "out.img"], in: f.folder)
        #expect(run.status == 64)
        #expect(firstLine(run.stderr) == "imgmap: unknown option '--ouput'; did you mean '--output'?")
        #expect(run.stderr.contains("Usage: imgmap compose"))
        let sparse = try imgmap(["compose", "t.table", "-o", "out.img", "--sprase=always"], in: f.folder)
        #expect(sparse.status == 64)
        #expect(firstLine(sparse.stderr) == "imgmap: unknown option '--sprase'; did you mean '--sparse'?")
        let far = try imgmap(["map", "t.table", "--bogus"], in: f.folder)
        #expect(far.status == 64)
        #expect(firstLine(far.stderr) == "imgmap: unknown option '--bogus'")
    }

    @Test func argumentParserErrorsCarryTheImgmapPrefix() throws {
        let f = Fixture()
        let run = try imgmap(["compose", "t.table"], in: f.folder)
        #expect(run.status == 64)
        #expect(firstLine(run.stderr) == "imgmap: Missing expected argument '--output <OUT>'")
        let validation = try imgmap(["compress", "a.img", "-o", "x.gz", "--level", "12"], in: f.folder)
        #expect(validation.status == 64)
        #expect(firstLine(validation.stderr) == "imgmap: --level 12: give 0 to 9")
        #expect(!run.stderr.contains("Error:") && !validation.stderr.contains("Error:"))
    }

    @Test func noCommandAndHelpForAnUnknownCommandPrintUsageOnStderrAndExit64() throws {
        let f = Fixture()
        let none = try imgmap([], in: f.folder)
        #expect(none.status == 64)
        #expect(none.stdout.isEmpty)
        #expect(firstLine(none.stderr) == "imgmap: no command given")
        #expect(none.stderr.contains("Usage: imgmap <command>"))
        let help = try imgmap(["help", "nosuch"], in: f.folder)
        #expect(help.status == 64)
        #expect(help.stdout.isEmpty)
        #expect(firstLine(help.stderr).hasPrefix("imgmap: help: 'nosuch' is not an imgmap command"))
        let real = try imgmap(["help", "compose"], in: f.folder)
        #expect(real.status == 0)
        #expect(real.out.contains("OVERVIEW: Write the mapped device"))
    }

    @Test func decompressReadsStdinFromAPipeAndFromARedirectedFile() throws {
        let f = Fixture()
        #expect(try imgmap(["compress", "a.img", "-o", "a.img.gz"], in: f.folder).status == 0)
        let piped = try shell("cat a.img.gz | \"$IMGMAP\" decompress - -o piped.img", in: f.folder)
        #expect(piped.status == 0, "\(piped.stderr)")
        #expect(readBytes(f.folder.file("piped.img")) == readBytes(f.image))
        let redirected = try imgmap(["decompress", "-", "-o", "-", "--offset", "1000", "--length", "3000"],
                                    stdinFile: f.folder.file("a.img.gz"), in: f.folder)
        #expect(redirected.status == 0, "\(redirected.stderr)")
        #expect(redirected.stdout == Array(readBytes(f.image)[1000..<4000]))
        let range = try shell("cat a.img.gz | \"$IMGMAP\" decompress - -o - --offset 512 --length 10 | od -An -tu1", in: f.folder)
        #expect(range.out.split(separator: " ").compactMap { UInt8($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            == Array(readBytes(f.image)[512..<522]))
    }

    /// `script` gives the command a pseudo-terminal as stdin, stdout and stderr.
    func underTerminal(_ command: String, in folder: TemporaryDirectory) throws -> Run? {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else { return nil }
        return try shell("/usr/bin/script -qec '\(command); echo \"status=$?\"' /dev/null", in: folder)
    }

    @Test func binaryOutputToATerminalIsRefusedUnlessForced() throws {
        let f = Fixture()
        #expect(try imgmap(["compress", "a.img", "-o", "a.img.gz"], in: f.folder).status == 0)
        for command in ["compose t.table -o -", "compress a.img -o -", "decompress a.img.gz -o -"] {
            guard let run = try underTerminal("\"$IMGMAP\" \(command)", in: f.folder) else {
                print("skip: no /usr/bin/script for the terminal test")
                return
            }
            #expect(run.out.contains("imgmap: standard output is a terminal: refusing to write binary data to it (redirect it, e.g. `> out.img`, or pass --force)"), "\(command): \(run.out)")
            #expect(run.out.contains("status=64"), "\(command): \(run.out)")
            let forced = try underTerminal("\"$IMGMAP\" \(command) --force --progress never | wc -c", in: f.folder)!
            #expect(forced.out.contains("status=0"), "\(command): \(forced.out)")
        }
        // A terminal stdout with -o FILE is fine; a pipe with -o - is fine.
        let file = try underTerminal("\"$IMGMAP\" compose t.table -o out.img --progress never", in: f.folder)!
        #expect(file.out.contains("status=0"), "\(file.out)")
        #expect(try imgmap(["compose", "t.table", "-o", "-"], in: f.folder).status == 0)
    }

    @Test func terminalProgressShowsRateAndElapsedTime() throws {
        let f = Fixture()
        guard let run = try underTerminal("\"$IMGMAP\" compose t.table -o out.img", in: f.folder) else { return }
        #expect(run.out.contains("\rcompose: 32.0 KiB of 32.0 KiB (100%), "), "\(run.out)")
        #expect(run.out.contains("/s, 0:00 elapsed"), "\(run.out)")
    }

    /// The `--progress json` lines of one run, parsed; the test fails on any other stderr line.
    func progressLines(_ arguments: [String], stdin: String? = nil, in f: Fixture,
                       sourceLocation: SourceLocation = #_sourceLocation) throws -> [[String: Any]] {
        let run = try imgmap(arguments + ["--progress", "json"], stdinFile: stdin, in: f.folder)
        #expect(run.status == 0, "\(arguments): \(run.stderr)", sourceLocation: sourceLocation)
        return run.stderr.split(separator: "\n").map { line in
            let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            #expect(object != nil, "not JSON: \(line)", sourceLocation: sourceLocation)
            return object ?? [:]
        }
    }

    @Test func everyLongCommandWritesTheSameJSONProgressLines() throws {
        let f = Fixture()
        #expect(try imgmap(["compress", "a.img", "-o", "a.img.gz"], in: f.folder).status == 0)
        let bytes = 64 * 512
        let runs: [(String, [String])] = [
            ("compose", ["compose", "t.table", "-o", "out.img"]),
            ("compress", ["compress", "a.img", "-o", "b.img.gz"]),
            ("decompress", ["decompress", "a.img.gz", "-o", "c.img"]),
            ("verify", ["verify", "t.table", "a.img"]),
            ("manifest", ["manifest", "t.table", "-o", "t.bmap"]),
            ("manifest", ["manifest", "--image", "a.img", "-o", "a.bmap"]),
            ("scatter", ["scatter", "t.table", "out.img"]),
        ]
        for (name, arguments) in runs {
            let lines = try progressLines(arguments, in: f)
            #expect(!lines.isEmpty, "\(name): no progress")
            for line in lines {
                #expect(line["command"] as? String == name, "\(line)")
                #expect(line["total"] as? Int == bytes, "\(name): \(line)")
                #expect(line["done"] is Int && line["rate"] is Int, "\(name): \(line)")
                #expect((line["elapsed"] as? Double).map { $0 >= 0 } == true, "\(name): \(line)")
            }
            #expect(lines.last?["done"] as? Int == bytes, "\(name): \(lines)")
        }
        // From a pipe the total is unknown: null, and the last line has every byte.
        let piped = try progressLines(["compress", "-", "-o", "d.img.gz"], stdin: f.image, in: f)
        // A file on stdin is read as a file, so its size is known.
        #expect(piped.last?["done"] as? Int == bytes)
        let stream = try shell("cat a.img | \"$IMGMAP\" compress - -o e.img.gz --progress json", in: f.folder)
        let last = stream.stderr.split(separator: "\n").last.flatMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
        #expect(last?["total"] is NSNull, "\(stream.stderr)")
        #expect(last?["done"] as? Int == bytes, "\(stream.stderr)")
    }

    @Test func progressAutoWritesNothingWhenStderrIsNotATerminal() throws {
        let f = Fixture()
        for arguments in [["compose", "t.table", "-o", "out.img"], ["compress", "a.img", "-o", "a.gz"], ["verify", "t.table", "a.img"]] {
            let run = try imgmap(arguments, in: f.folder)
            #expect(run.status == 0 && run.stderr == "", "\(arguments): \(run.stderr)")
        }
    }

    @Test func mapColumnsStayAlignedWithLongPaths() throws {
        let f = Fixture(imageName: "a-rather-long-image-file-name-for-the-first-partition.img")
        let table = f.folder.write("a-long-table-name-too.table",
                                   "0 8 linear \(f.imageName) 0\n8 16 zero\n24 40 linear \(f.imageName) 24\n")
        let run = try imgmap(["map", table], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        let lines = run.out.split(separator: "\n").map(String.init)
        #expect(lines.count == 4)
        let header = lines[0]
        // Every column starts where its header starts, with a space before it.
        for column in ["OFFSET", "TABLE:LINE", "FILE"] {
            let headerRange = header.range(of: column)!
            let at = header.distance(from: header.startIndex, to: headerRange.lowerBound)
            for line in lines.dropFirst() {
                let chars = Array(line)
                #expect(chars.count > at && chars[at - 1] == " ", "\(column): \(line)")
            }
        }
        let fileAt = header.distance(from: header.startIndex, to: header.range(of: "FILE")!.lowerBound)
        let tableAt = header.distance(from: header.startIndex, to: header.range(of: "TABLE:LINE")!.lowerBound)
        for line in lines.dropFirst() {
            let chars = Array(line)
            #expect(String(chars[fileAt...]) == f.imageName || String(chars[fileAt...]) == "-", "\(line)")
            #expect(String(chars[tableAt...]).hasPrefix(table), "\(line)")
        }
        let offsetEnd = header.distance(from: header.startIndex, to: header.range(of: "OFFSET")!.upperBound)
        #expect(Array(lines[3])[offsetEnd - 2..<offsetEnd] == ["2", "4"], "\(lines[3])")
    }

    @Test func outputInADirectoryThatRefusesNewFilesSaysWhatTheSystemSaid() throws {
        let f = Fixture()
        let run = try imgmap(["compose", "t.table", "-o", "/proc/out.img"], in: f.folder)
        #expect(run.status == 73)
        #expect(!run.stderr.contains("/proc does not exist"), "\(run.stderr)")
        #expect(run.stderr.hasPrefix("imgmap: /proc/out.img: create /proc/out.img.tmp-"), "\(run.stderr)")
    }
}
