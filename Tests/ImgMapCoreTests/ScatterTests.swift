import Foundation
import Testing

@testable import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

// The write path: golden write vectors (what the kernel left in each image), a round trip through
// random tables (scatter then compose gives the input back), and the rules of `scatter`: refusals
// before the first write, read-modify-write of a partial sector, zero extents, --seek, stdin,
// --dry-run, --create, --sparse, --errors.

/// Scatters the file `input` through `map` as the CLI does: checked first, every member the write
/// touches opened read-write before the first byte is written. With `stream`, the file is read in order
/// with read(2) and its size is not known up front, as for stdin.
func scatterFile(_ map: SectorMap, input: String, _ options: Scatter.Options = .init(), stream: Bool = false) throws -> Scatter.Report {
    let scatter = Scatter(map: map, options: options)
    let file = try ImageFile(openForReading: input)
    let bytes = stream ? nil : try file.byteSize()
    let range = try scatter.check(inputBytes: bytes)
    var writers: [ObjectIdentifier: ImageFile] = [:]
    for leaf in scatter.leavesWritten(in: range) {
        writers[ObjectIdentifier(leaf)] = try ImageFile(openForReading: leaf.path, writable: true)
    }
    return try scatter.run(input: file, inputIsStream: stream, inputBytes: bytes, writers: writers)
}

/// Random valid tables of linear and striped segments whose device areas never overlap (so a write
/// through them is reversible), optionally stacked one level over a lower table `L`.
struct RandomTables {
    static let members = ["M0", "M1", "M2"]
    static let memberSectors: UInt64 = 1024

    var rng: SplitMix64
    /// Next free sector and size of each device a table may name.
    var cursor: [String: UInt64] = [:]
    var limit: [String: UInt64] = [:]

    init(seed: UInt64) {
        rng = SplitMix64(seed: seed)
        for name in Self.members {
            cursor[name] = 0
            limit[name] = Self.memberSectors
        }
    }

    /// Lower tables (name, text) and the top table's text.
    mutating func make() -> (lower: [(String, String)], top: String) {
        var lower: [(String, String)] = []
        if Bool.random(using: &rng) {
            let (text, size) = table(over: Self.members)
            lower.append(("L", text))
            cursor["L"] = 0
            limit["L"] = size
        }
        let (top, _) = table(over: Self.members + lower.map(\.0))
        return (lower, top)
    }

    /// A table of 1–4 segments over `devices`; the first is always a linear segment that fits.
    mutating func table(over devices: [String]) -> (String, UInt64) {
        var text = ""
        var start: UInt64 = 0
        for index in 0..<Int.random(in: 1...4, using: &rng) {
            if index == 0 || Bool.random(using: &rng) {
                let length = UInt64.random(in: 1...200, using: &rng)
                guard let (device, offset) = allocate(length, on: devices) else { continue }
                text += "\(start) \(length) linear \(device) \(offset)\n"
                start += length
            } else {
                let stripes = UInt64.random(in: 1...4, using: &rng)
                let chunk = 2 * UInt64.random(in: 0...15, using: &rng) + 1
                let width = chunk * UInt64.random(in: 1...6, using: &rng)
                var destinations: [String] = []
                for _ in 0..<stripes {
                    guard let (device, offset) = allocate(width, on: devices) else { break }
                    destinations.append("\(device) \(offset)")
                }
                guard destinations.count == Int(stripes) else { continue }
                text += "\(start) \(stripes * width) striped \(stripes) \(chunk) \(destinations.joined(separator: " "))\n"
                start += stripes * width
            }
        }
        return (text, start)
    }

    /// `length` free sectors after a random gap on a random device with room, marked used.
    mutating func allocate(_ length: UInt64, on devices: [String]) -> (String, UInt64)? {
        let gap = UInt64.random(in: 0...16, using: &rng)
        let fitting = devices.filter { cursor[$0]! + gap + length <= limit[$0]! }
        guard let device = fitting.randomElement(using: &rng) else { return nil }
        let offset = cursor[device]! + gap
        cursor[device] = offset + length
        return (device, offset)
    }
}

struct ScatterTests {
    // MARK: golden write vectors

    static let writeCases = GoldenCase.names(mode: "write")

    @Test(arguments: writeCases)
    func writeCaseLeavesTheKernelsImages(_ name: String) throws {
        let golden = try GoldenCase.named(name)
        let folder = TemporaryDirectory()
        var copies: [String: String] = [:]
        for (device, path) in golden.generatedImages {
            copies[device] = folder.file("\(device).img")
            try FileManager.default.copyItem(atPath: path, toPath: copies[device]!)
        }
        let (bindings, _) = golden.bindings(case: name, images: copies)
        let loaded = try TableLoader(bindings: bindings).load()
        let payloadSectors = try #require(golden.payload?.sectors)
        let payload = GoldenImages.path("W", sectors: payloadSectors)
        let expectedAfter = try #require(golden.devices_after)
        try expectUnchanged([payload]) {
            let report = try scatterFile(SectorMap(top: loaded.top), input: payload,
                                         .init(seek: Sector(golden.seek ?? 0), onError: .skip))
            for (device, hash) in expectedAfter {
                #expect(sha256(file: copies[device]!) == hash, "\(name): image \(device)")
            }
            let expectedErrors = (golden.write_errors ?? []).map { SectorRange(start: $0[0], length: $0[1]) }
            #expect(report.skipped.ranges == expectedErrors)
            #expect(report.bytes == payloadSectors * 512)
        }
    }

    // MARK: round trip

    @Test(arguments: 0..<50)
    func scatterThenComposeGivesTheInputBack(_ seed: Int) throws {
        var tables = RandomTables(seed: UInt64(seed) &* 7919 &+ 1)
        let (lower, top) = tables.make()
        let folder = TemporaryDirectory()
        var devices: [String: String] = [:]
        for name in RandomTables.members {
            devices[name] = folder.file("\(name).img")
            try FileManager.default.copyItem(atPath: GoldenImages.path(name, sectors: RandomTables.memberSectors), toPath: devices[name]!)
        }
        var context = "seed \(seed):\n\(lower.map { "\($0.0).table:\n\($0.1)" }.joined())t.table:\n\(top)"
        let loaded = try loadTables(top, lower: lower, devices: devices)
        let map = SectorMap(top: loaded.top)
        let before = try readAll(map)

        var rng = tables.rng
        let seek = UInt64.random(in: 0..<map.size.value, using: &rng)
        let count = Int.random(in: 1...Int((map.size.value - seek) * 512), using: &rng)
        let input = rng.bytes(count)
        let inputPath = folder.file("input.img")
        try Data(input).write(to: URL(fileURLWithPath: inputPath))

        // Odd seeds read the input as a stream through a small buffer, so chunks end inside extents.
        var options = Scatter.Options(seek: Sector(seek))
        let stream = seed % 2 == 1
        if stream { options.bufferSize = 512 * Int.random(in: 1...24, using: &rng) }
        context += "\nseek \(seek), \(count) bytes, " + (stream ? "stream, buffer \(options.bufferSize)" : "file")
        try expectUnchanged([inputPath]) {
            let report = try scatterFile(map, input: inputPath, options, stream: stream)
            #expect(report.bytes == UInt64(count), "\(context)")
            #expect(report.skipped.isEmpty && report.dropped.isEmpty, "\(context)")
        }
        let outPath = folder.file("out.img")
        let out = try OutputFile(path: outPath, inputs: loaded.leaves.map(\.image))
        _ = try Compose(map: map, options: .init()).run(to: out)
        try out.commit()
        var expected = before
        expected.replaceSubrange(Int(seek * 512)..<Int(seek * 512) + count, with: input)
        expectSameBytes(readBytes(outPath), expected, "\(context)")
    }

    @Test func randomTablesUseEveryShapeTheyPromise() {
        // The generator itself: over the 50 seeds, stacking, striped sets of 1 and 4 stripes, and
        // a member named twice in one striped line all occur.
        var sawStack = false, sawOne = false, sawFour = false, sawRepeat = false
        for seed in 0..<50 {
            var tables = RandomTables(seed: UInt64(seed) &* 7919 &+ 1)
            let (lower, top) = tables.make()
            sawStack = sawStack || !lower.isEmpty
            for line in (lower.map(\.1) + [top]).joined().split(separator: "\n") {
                let fields = line.split(separator: " ")
                guard fields[2] == "striped" else { continue }
                sawOne = sawOne || fields[3] == "1"
                sawFour = sawFour || fields[3] == "4"
                let names = stride(from: 5, to: fields.count, by: 2).map { fields[$0] }
                sawRepeat = sawRepeat || Set(names).count < names.count
            }
        }
        #expect(sawStack && sawOne && sawFour && sawRepeat)
    }

    // MARK: rules (in-process)

    @Test func failPolicyRefusesAWriteOntoAnErrorExtentBeforeWritingAnything() throws {
        let f = CLIFixture()
        let loaded = try loadTables(CLIFixture.mixedTable, devices: ["A": f.a, "B": f.b])
        let input = f.folder.write("in.img", String(repeating: "x", count: 120 * 512))
        expectUnchanged(f.images + [input]) {
            let error = failure { _ = try scatterFile(SectorMap(top: loaded.top), input: input) }
            #expect(error?.description == "sectors 80+16 (t.table:3 error) would fail with EIO as the kernel's write does: "
                + "refused before anything was written (use --on-error skip to write the rest and list the skipped ranges)")
            #expect(error?.exitStatus == .ioError)
        }
    }

    @Test func inputLongerThanTheDeviceIsRefusedBeforeWriting() throws {
        let f = CLIFixture()
        let loaded = try loadTables(CLIFixture.cleanTable, devices: ["A": f.a, "B": f.b])
        let input = f.folder.write("in.img", String(repeating: "x", count: 50000))
        expectUnchanged(f.images + [input]) {
            let error = failure { _ = try scatterFile(SectorMap(top: loaded.top), input: input, .init(seek: Sector(80))) }
            #expect(error?.description == "the input (50000 bytes, 98 sectors) does not fit: the device has 64 sectors from sector 80")
            #expect(error?.exitStatus == .dataError)
        }
    }

    @Test func seekPastTheEndIsBadDataForTheDevice() throws {
        let f = CLIFixture()
        let loaded = try loadTables(CLIFixture.cleanTable, devices: ["A": f.a, "B": f.b])
        let input = f.folder.write("in.img", "x")
        expectUnchanged(f.images) {
            let error = failure { _ = try scatterFile(SectorMap(top: loaded.top), input: input, .init(seek: Sector(145))) }
            #expect(error?.description == "--seek 145 lies past the end of the device (144 sectors)")
            #expect(error?.exitStatus == .dataError)
        }
    }

    @Test func partialLastSectorIsMergedWithTheSectorsContent() throws {
        let f = CLIFixture()
        let loaded = try loadTables("0 64 linear A 8\n", devices: ["A": f.a])
        let input = [UInt8](repeating: 0xee, count: 1000)
        let inputPath = f.folder.file("in.img")
        try Data(input).write(to: URL(fileURLWithPath: inputPath))
        let report = try scatterFile(SectorMap(top: loaded.top), input: inputPath, .init(seek: Sector(3)))
        #expect(report.written.ranges == [SectorRange(start: 3, length: 2)])
        var expected = GoldenImages.bytes("A", sectors: 256)
        expected.replaceSubrange((11 * 512)..<(11 * 512 + 1000), with: input)
        let after = readBytes(f.a)
        expectSameBytes(after, expected)
        // The 24 bytes after the input in sector 12 of A are A's own.
        #expect(Array(after[(11 * 512 + 1000)..<(13 * 512)]) == Array(GoldenImages.sector("A", 12)[488...]))
    }

    @Test func zeroExtentsDropTheirPartOfTheWrite() throws {
        let f = CLIFixture()
        let table = "0 16 linear A 0\n16 16 zero\n32 16 linear A 16\n"
        let loaded = try loadTables(table, devices: ["A": f.a])
        var rng = SplitMix64(seed: 42)
        let input = rng.bytes(48 * 512)
        let inputPath = f.folder.file("in.img")
        try Data(input).write(to: URL(fileURLWithPath: inputPath))
        let report = try scatterFile(SectorMap(top: loaded.top), input: inputPath)
        #expect(report.dropped.ranges == [SectorRange(start: 16, length: 16)])
        #expect(report.written.ranges == [SectorRange(start: 0, length: 16), SectorRange(start: 32, length: 16)])
        var expected = GoldenImages.bytes("A", sectors: 256)
        expected.replaceSubrange(0..<(16 * 512), with: input[0..<(16 * 512)])
        expected.replaceSubrange((16 * 512)..<(32 * 512), with: input[(32 * 512)...])
        expectSameBytes(readBytes(f.a), expected)
    }

    @Test func skipPolicyWritesAroundErrorExtentsAndListsThem() throws {
        let f = CLIFixture()
        let loaded = try loadTables(CLIFixture.mixedTable, devices: ["A": f.a, "B": f.b])
        let map = SectorMap(top: loaded.top)
        var rng = SplitMix64(seed: 7)
        let input = rng.bytes(160 * 512)
        let inputPath = f.folder.file("in.img")
        try Data(input).write(to: URL(fileURLWithPath: inputPath))
        let report = try scatterFile(map, input: inputPath, .init(onError: .skip))
        #expect(report.skipped.ranges == [SectorRange(start: 80, length: 16)])
        #expect(report.dropped.ranges == [SectorRange(start: 64, length: 16)])
        let after = try readAll(map)
        expectSameBytes(Array(after[0..<(64 * 512)]), Array(input[0..<(64 * 512)]))
        #expect(after[(64 * 512)..<(96 * 512)].allSatisfy { $0 == 0 })
        expectSameBytes(Array(after[(96 * 512)...]), Array(input[(96 * 512)...]))
    }

    @Test func streamRefusedPartWaySaysWhichRangesWereWritten() throws {
        let f = CLIFixture()
        let loaded = try loadTables(CLIFixture.mixedTable, devices: ["A": f.a, "B": f.b])
        var rng = SplitMix64(seed: 21)
        let input = rng.bytes(100 * 512)
        let inputPath = f.folder.file("in.img")
        try Data(input).write(to: URL(fileURLWithPath: inputPath))
        // A stream's length is unknown, so the error extent is met only when the chunk reaching it is read
        // (chunks of 16 sectors here: the sixth one holds the whole error extent).
        var options = Scatter.Options()
        options.bufferSize = 8192
        let error = failure { _ = try scatterFile(SectorMap(top: loaded.top), input: inputPath, options, stream: true) }
        #expect(error?.description == "sectors 80+16 (t.table:3 error) would fail with EIO as the kernel's write does "
            + "(use --on-error skip to write the rest and list the skipped ranges); already written before the failure (device sectors start+length): 0+64")
        #expect(error?.exitStatus == .ioError)
        expectSameBytes(Array(readBytes(f.a)[(8 * 512)..<(72 * 512)]), Array(input[0..<(64 * 512)]))
    }

    @Test func streamLongerThanTheDeviceSaysWhichRangesWereWritten() throws {
        let f = CLIFixture()
        let loaded = try loadTables(CLIFixture.cleanTable, devices: ["A": f.a, "B": f.b])
        let inputPath = f.folder.write("in.img", String(repeating: "y", count: 145 * 512))
        var options = Scatter.Options()
        options.bufferSize = 4096
        let error = failure { _ = try scatterFile(SectorMap(top: loaded.top), input: inputPath, options, stream: true) }
        #expect(error?.description == "the input is longer than the device from sector 0 (73728 bytes); "
            + "already written before the failure (device sectors start+length): 0+64, 80+64")
        #expect(error?.exitStatus == .dataError)
    }

    @Test func oneImageStripedTwiceTakesBothStripes() throws {
        let f = CLIFixture()
        let loaded = try loadTables("0 64 striped 2 8 A 0 A 100\n", devices: ["A": f.a])
        #expect(loaded.leaves.count == 1)
        let map = SectorMap(top: loaded.top)
        var rng = SplitMix64(seed: 3)
        let input = rng.bytes(64 * 512)
        let inputPath = f.folder.file("in.img")
        try Data(input).write(to: URL(fileURLWithPath: inputPath))
        _ = try scatterFile(map, input: inputPath)
        expectSameBytes(try readAll(map), input)
        // Stripe 0 lands in A 0..<32, stripe 1 in A 100..<132; A between them is untouched.
        expectSameBytes(Array(readBytes(f.a)[(32 * 512)..<(100 * 512)]), Array(GoldenImages.bytes("A", sectors: 256)[(32 * 512)..<(100 * 512)]))
    }

    @Test func oneFileUnderTwoPathsTakesBothStripes() throws {
        let f = CLIFixture()
        let link = f.folder.file("link.img")
        try FileManager.default.linkItem(atPath: f.a, toPath: link)
        let loaded = try loadTables("0 64 striped 2 8 A 0 L 100\n", devices: ["A": f.a, "L": link])
        #expect(loaded.leaves.count == 2)
        let map = SectorMap(top: loaded.top)
        var rng = SplitMix64(seed: 4)
        let input = rng.bytes(64 * 512)
        let inputPath = f.folder.file("in.img")
        try Data(input).write(to: URL(fileURLWithPath: inputPath))
        _ = try scatterFile(map, input: inputPath)
        expectSameBytes(try readAll(map), input)
    }

    @Test func sparseInputSkipsItsHolesAndTheDefaultWritesZerosThere() throws {
        let f = CLIFixture()
        let table = "0 64 linear A 8\n"
        // Data in sectors 0..<8 and 40..<48 (whole 4 KiB blocks); holes elsewhere, up to sector 64.
        let inputPath = f.folder.sparseImage("in.img", sectors: 64)
        var rng = SplitMix64(seed: 5)
        let data = rng.bytes(8 * 512)
        let fd = open(inputPath, O_WRONLY)
        for sector in [0, 40] { _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, off_t(sector * 512)) } }
        close(fd)
        let input = readBytes(inputPath)
        let original = GoldenImages.bytes("A", sectors: 256)

        let sparse = try loadTables(table, devices: ["A": f.a])
        try expectUnchanged([inputPath]) {
            _ = try scatterFile(SectorMap(top: sparse.top), input: inputPath, .init(sparse: true))
        }
        var expected = original
        expected.replaceSubrange((8 * 512)..<(16 * 512), with: data)
        expected.replaceSubrange((48 * 512)..<(56 * 512), with: data)
        expectSameBytes(readBytes(f.a), expected)

        let b = f.folder.file("a2.img")
        try FileManager.default.copyItem(atPath: GoldenImages.path("A", sectors: 256), toPath: b)
        let dense = try loadTables(table, devices: ["A": b])
        _ = try scatterFile(SectorMap(top: dense.top), input: inputPath)
        expected = original
        expected.replaceSubrange((8 * 512)..<(72 * 512), with: input)
        expectSameBytes(readBytes(b), expected)
    }

    @Test func sparseInputWithAPartialTailWritesTheTail() throws {
        let f = CLIFixture()
        let inputPath = f.folder.sparseImage("in.img", sectors: 16, extraBytes: 100)
        let fd = open(inputPath, O_WRONLY)
        _ = [UInt8](repeating: 0x5a, count: 100).withUnsafeBytes { pwrite(fd, $0.baseAddress!, 100, 16 * 512) }
        close(fd)
        let loaded = try loadTables("0 64 linear A 0\n", devices: ["A": f.a])
        let report = try scatterFile(SectorMap(top: loaded.top), input: inputPath, .init(sparse: true))
        #expect(report.written.ranges == [SectorRange(start: 16, length: 1)])
        var expected = GoldenImages.bytes("A", sectors: 256)
        expected.replaceSubrange((16 * 512)..<(16 * 512 + 100), with: [UInt8](repeating: 0x5a, count: 100))
        expectSameBytes(readBytes(f.a), expected)
    }
}

// MARK: - The command line

@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: imgmapBinary),
                "imgmap binary not found at .build/debug/imgmap: run `swift build` first"))
struct ScatterCommandTests {
    @Test func scatterThenComposeRoundTripsThroughTheCommandLine() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        var rng = SplitMix64(seed: 11)
        let input = rng.bytes(144 * 512)
        let inputPath = f.folder.file("in.img")
        try Data(input).write(to: URL(fileURLWithPath: inputPath))
        try expectUnchanged([inputPath, table]) {
            let run = try imgmap(["scatter", table] + f.devs + [inputPath], in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stderr == "" && run.out == "")
        }
        let composed = try imgmap(["compose", table] + f.devs + ["-o", "-"], in: f.folder)
        var expected = input
        expected.replaceSubrange((64 * 512)..<(80 * 512), with: [UInt8](repeating: 0, count: 16 * 512))
        expectSameBytes(composed.stdout, expected)
    }

    @Test func errorExtentWithFailExits74AndWritesNothing() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        let input = f.folder.write("in.img", String(repeating: "x", count: 100 * 512))
        try expectUnchanged(f.images + [input]) {
            let run = try imgmap(["scatter", table] + f.devs + [input, "--errors", "errors.txt"], in: f.folder)
            #expect(run.status == 74)
            #expect(run.stderr == "imgmap: sectors 80+16 (\(table):3 error) would fail with EIO as the kernel's write does: "
                + "refused before anything was written (use --on-error skip to write the rest and list the skipped ranges)\n")
        }
        #expect(!fileExists(f.folder.file("errors.txt")))
    }

    @Test func inputLongerThanTheDeviceExits65() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        let input = f.folder.write("in.img", String(repeating: "x", count: 50000))
        try expectUnchanged(f.images + [input]) {
            let run = try imgmap(["scatter", table] + f.devs + [input, "--seek", "80"], in: f.folder)
            #expect(run.status == 65)
            #expect(run.stderr == "imgmap: the input (50000 bytes, 98 sectors) does not fit: the device has 80 sectors from sector 80\n")
        }
    }

    @Test func seekWritesFromThatSector() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 200 linear A 20\n")
        let input = f.folder.write("in.img", String(repeating: "s", count: 3 * 512))
        let run = try imgmap(["scatter", table] + f.devA + [input, "--seek", "100"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        var expected = GoldenImages.bytes("A", sectors: 256)
        expected.replaceSubrange((120 * 512)..<(123 * 512), with: readBytes(input))
        expectSameBytes(readBytes(f.a), expected)
    }

    @Test func stdinIsStreamedThroughTheMap() throws {
        let f = CLIFixture()
        _ = f.folder.write("t.table", CLIFixture.mixedTable)
        var rng = SplitMix64(seed: 12)
        let input = rng.bytes(70 * 512 + 100)
        let inputPath = f.folder.file("in.img")
        try Data(input).write(to: URL(fileURLWithPath: inputPath))
        var expected = try f.expectedBytes(CLIFixture.mixedTable)
        let run = try shell("cat in.img | \"$IMGMAP\" scatter t.table --dev A=a.img --dev B=b.img - --seek 2", in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        // Sectors 2..<64 take the input; 64..<72 are a zero extent; the 100 bytes land in sector 72, also zero.
        expected.replaceSubrange((2 * 512)..<(64 * 512), with: input[0..<(62 * 512)])
        expectSameBytes(try f.expectedBytes(CLIFixture.mixedTable), expected)
    }

    @Test func stdinOntoAnErrorExtentWithFailSaysNothingWasWritten() throws {
        let f = CLIFixture()
        _ = f.folder.write("t.table", CLIFixture.mixedTable)
        let input = f.folder.write("in.img", String(repeating: "x", count: 100 * 512))
        try expectUnchanged(f.images + [input]) {
            let run = try shell("cat in.img | \"$IMGMAP\" scatter t.table --dev A=a.img --dev B=b.img -", in: f.folder)
            #expect(run.status == 74)
            #expect(run.stderr == "imgmap: sectors 80+16 (t.table:3 error) would fail with EIO as the kernel's write does "
                + "(use --on-error skip to write the rest and list the skipped ranges); nothing was written\n")
        }
    }

    @Test func stdinLongerThanTheDeviceIsRefused() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let input = f.folder.write("in.img", String(repeating: "x", count: 144 * 512 + 1))
        try expectUnchanged(f.images + [input, table]) {
            let run = try shell("cat in.img | \"$IMGMAP\" scatter t.table --dev A=a.img --dev B=b.img -", in: f.folder)
            #expect(run.status == 65)
            #expect(run.stderr == "imgmap: the input is longer than the device from sector 0 (73728 bytes); nothing was written\n")
        }
    }

    @Test func dryRunPrintsThePlanAndWritesNothing() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        let input = f.folder.write("in.img", String(repeating: "x", count: 50 * 512))
        try expectUnchanged(f.images + [input]) {
            let run = try imgmap(["scatter", table] + f.devs + [input, "--seek", "60", "--on-error", "skip", "--dry-run",
                                  "--errors", "errors.txt"], in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.out == """
                sectors 60+4: write 2048 bytes to \(f.a) at byte 34816 (sector 68)  [\(table):1 linear A]
                sectors 64+16: drop (zero target)  [\(table):2 zero]
                sectors 80+16: skip: EIO (error target), listed in --errors  [\(table):3 error]
                sectors 96+8: write 4096 bytes to \(f.a) at byte 51200 (sector 100)  [\(table):4 striped A]
                sectors 104+6: write 3072 bytes to \(f.b) at byte 0 (sector 0)  [\(table):4 striped B]
                total: 6144 bytes to \(f.a)
                total: 3072 bytes to \(f.b)

                """)
        }
        #expect(f.leftovers(besides: ["t.table", "in.img"]) == [])
    }

    @Test func dryRunWithFailStopsAtAnErrorExtentLikeTheRealRun() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 8 error\n8 8 zero\n")
        let input = f.folder.write("in.img", String(repeating: "x", count: 16 * 512))
        // The plan is only printed for what can be done; with fail the error extent stops it first.
        let run = try imgmap(["scatter", table, input, "--dry-run"], in: f.folder)
        #expect(run.status == 74)
        #expect(run.out == "")
    }

    @Test func createMakesMissingMembersSparseWithTheSizeTheTablesNeed() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 64 linear A 8\n64 32 linear C 16\n")
        var rng = SplitMix64(seed: 13)
        let input = rng.bytes(80 * 512)
        let inputPath = f.folder.file("in.img")
        try Data(input).write(to: URL(fileURLWithPath: inputPath))
        let c = f.folder.file("c.img")
        let run = try imgmap(["scatter", table, "--dev", "A=\(f.a)", "--dev", "C=\(c)", inputPath, "--create"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(fileSize(c) == 48 * 512)
        var st = stat()
        stat(c, &st)
        #expect(st.st_blocks * 512 < 48 * 512, "c.img should be sparse: \(st.st_blocks) blocks")
        var expected = [UInt8](repeating: 0, count: 48 * 512)
        expected.replaceSubrange((16 * 512)..<(32 * 512), with: input[(64 * 512)...])
        expectSameBytes(readBytes(c), expected)
    }

    @Test func dryRunWithCreateCreatesNothing() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 64 linear A 8\n64 32 linear C 16\n")
        let input = f.folder.write("in.img", String(repeating: "x", count: 70 * 512))
        let c = f.folder.file("c.img")
        try expectUnchanged(f.images) {
            let run = try imgmap(["scatter", table, "--dev", "A=\(f.a)", "--dev", "C=\(c)", input, "--create", "--dry-run"], in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.out == """
                create \(c): 48 sectors (24576 bytes, sparse)
                sectors 0+64: write 32768 bytes to \(f.a) at byte 4096 (sector 8)  [\(table):1 linear A]
                sectors 64+6: write 3072 bytes to \(c) at byte 8192 (sector 16)  [\(table):2 linear C]
                total: 32768 bytes to \(f.a)
                total: 3072 bytes to \(c)

                """)
        }
        #expect(!fileExists(c))
        #expect(f.leftovers(besides: ["t.table", "in.img"]) == [])
    }

    @Test func createNeverReplacesAnExistingMember() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 64 linear A 8\n")
        let input = f.folder.write("in.img", "hello")
        let run = try imgmap(["scatter", table] + f.devA + [input, "--create"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(fileSize(f.a) == 256 * 512)
        #expect(Array(readBytes(f.a)[(8 * 512)..<(8 * 512 + 5)]) == Array("hello".utf8))
    }

    @Test func inputThatIsAMemberIsRefused() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 64 linear A 8\n64 64 linear B 0\n")
        try expectUnchanged(f.images) {
            let run = try imgmap(["scatter", table] + f.devs + [f.b], in: f.folder)
            #expect(run.status == 64)
            #expect(run.stderr == "imgmap: \(f.b) is also the member image \(f.b): scatter cannot read and write the same file\n")
        }
    }

    @Test func inputThatIsAHardLinkToAMemberIsRefused() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 64 linear A 8\n")
        let link = f.folder.file("link.img")
        try FileManager.default.linkItem(atPath: f.a, toPath: link)
        try expectUnchanged(f.images) {
            let run = try imgmap(["scatter", table] + f.devA + [link], in: f.folder)
            #expect(run.status == 64)
            #expect(run.stderr.contains("is also the member image \(f.a)"), "\(run.stderr)")
        }
    }

    @Test func errorsFileListsTheSkippedRanges() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 8 error\n8 8 error\n16 8 linear A 0\n24 1 error\n25 7 linear A 8\n")
        let input = f.folder.write("in.img", String(repeating: "e", count: 32 * 512))
        let run = try imgmap(["scatter", table] + f.devA + [input, "--on-error", "skip", "--errors", "errors.txt"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(String(decoding: readBytes(f.folder.file("errors.txt")), as: UTF8.self) == "0 16\n24 1\n")
        #expect(readBytes(f.a)[0..<(15 * 512)].allSatisfy { $0 == UInt8(ascii: "e") })
    }

    @Test func errorsFileThatIsAMemberIsRefusedBeforeWriting() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        let input = f.folder.write("in.img", String(repeating: "x", count: 100 * 512))
        try expectUnchanged(f.images + [input]) {
            let run = try imgmap(["scatter", table] + f.devs + [input, "--on-error", "skip", "--errors", f.b], in: f.folder)
            #expect(run.status == 64)
            #expect(run.stderr == "imgmap: \(f.b): the output is also an input (\(f.b)); write to another file\n")
        }
        #expect(f.leftovers(besides: ["t.table", "in.img"]) == [])
    }

    @Test func errorsFileInAMissingDirectoryIsRefusedBeforeWriting() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        let input = f.folder.write("in.img", String(repeating: "x", count: 100 * 512))
        try expectUnchanged(f.images + [input]) {
            let run = try imgmap(["scatter", table] + f.devs + [input, "--on-error", "skip", "--errors", "no/such/dir/errors.txt"], in: f.folder)
            #expect(run.status == 73)
            #expect(run.stderr.contains("(the directory no/such/dir does not exist)"), "\(run.stderr)")
        }
    }

    @Test func dryRunWritesNoErrorsFile() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        let input = f.folder.write("in.img", String(repeating: "x", count: 100 * 512))
        let run = try imgmap(["scatter", table] + f.devs + [input, "--on-error", "skip", "--errors", "errors.txt", "--dry-run"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(f.leftovers(besides: ["t.table", "in.img"]) == [])
    }

    @Test func errorsFileIsEmptyWhenNothingWasSkipped() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let input = f.folder.write("in.img", "abc")
        f.folder.write("errors.txt", "stale\n")
        let run = try imgmap(["scatter", table] + f.devs + [input, "--on-error", "skip", "--errors", "errors.txt"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(fileSize(f.folder.file("errors.txt")) == 0)
    }
}
