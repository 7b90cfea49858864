import Foundation
import Testing

@testable import ImgMapCore

/// A relative path (from the current directory) to the absolute `path`: `../../tmp/…`.
private func relativeFromCurrentDirectory(_ path: String) -> String {
    let depth = FileManager.default.currentDirectoryPath.split(separator: "/").count
    return String(repeating: "../", count: depth) + path.drop(while: { $0 == "/" })
}

struct TableLoaderTests {
    // MARK: segment checks, in the kernel's order

    @Test func zeroLengthIsCheckedFirst() {
        #expect(loadError("0 8 zero\n8 0 Bogus")?.description == "t.table:2: zero-length target")
    }

    @Test func sizeLimitIsCheckedBeforeTheTargetType() {
        #expect(loadError("0 18014398509481984 Bogus")?.description.hasPrefix("t.table:1: too large device") == true)
    }

    @Test func targetTypeIsCheckedBeforeContiguity() {
        #expect(loadError("5 8 Bogus")?.description.hasPrefix("t.table:1: unknown target type: `Bogus`") == true)
    }

    @Test func contiguityIsCheckedBeforeTheConstructor() {
        #expect(loadError("0 8 zero\n9 8 linear")?.description.hasPrefix("t.table:2: Gap in table") == true)
    }

    @Test func firstSegmentMustStartAtZero() {
        #expect(loadError("8 8 zero")?.description
            == "t.table:1: Gap in table: segment starts at 8, the previous one ends at 0 (sectors 0+8 are unmapped)")
    }

    @Test func gapIsRefused() {
        #expect(loadError("0 8 zero\n10 8 zero")?.description
            == "t.table:2: Gap in table: segment starts at 10, the previous one ends at 8 (sectors 8+2 are unmapped)")
    }

    @Test func overlapAndDisorderAreGapsInTheTable() {
        #expect(loadError("0 8 zero\n4 8 zero")?.description
            == "t.table:2: Gap in table: segment starts at 4, inside or before the previous one, which ends at 8")
        #expect(loadError("8 8 zero\n0 8 zero")?.description.hasPrefix("t.table:1: Gap in table") == true)
    }

    @Test func largestDeviceEndIs2To54Minus1() throws {
        let loaded = try loadTables("0 18014398509481983 zero")
        #expect(loaded.top.size == Sector(maxDeviceSectors))
        #expect(maxDeviceSectors == (1 << 54) - 1)
        #expect(loadError("0 18014398509481982 zero\n18014398509481982 2 zero")?.description.hasPrefix("t.table:2: too large device") == true)
    }

    // MARK: huge numbers never trap

    @Test func hugeLinearOffsetIsTooSmallForTarget() throws {
        let folder = TemporaryDirectory()
        let a = folder.sparseImage("a.img", sectors: 64)
        let error = loadError("0 8 linear A 18446744073709551615", devices: ["A": a])
        #expect(error?.description.hasPrefix("t.table:1: linear: too small for target: A (\(a)): start=18446744073709551615, len=8") == true)
        let wrapped = loadError("0 18014398509481983 linear A 18446744073709551615", devices: ["A": a])
        #expect(wrapped?.description.contains("too small for target") == true)
    }

    @Test func hugeStripedOffsetIsTooSmallForTarget() throws {
        let folder = TemporaryDirectory()
        let devices = ["A": folder.sparseImage("a.img", sectors: 64), "B": folder.sparseImage("b.img", sectors: 64)]
        let error = loadError("0 16 striped 2 8 A 0 B 18446744073709551615", devices: devices)
        #expect(error?.description.contains("too small for target") == true)
        #expect(error?.description.contains("start=18446744073709551615, len=8") == true)
    }

    @Test func hugeOffsetsOnAnUncheckedImageMapToErrors() throws {
        // `check` without --dev: a missing image has an unknown size; mapping past its end must not trap.
        let table = "0 18014398509481975 linear /nonexistent/imgmap/a.img 18446744073709551615\n"
            + "18014398509481975 8 striped 2 4 /nonexistent/imgmap/a.img 18446744073709551615 /nonexistent/imgmap/b.img 18446744073709551612"
        let loaded = try loadTables(table, strictness: .lenient)
        #expect(loaded.unopened == ["/nonexistent/imgmap/a.img", "/nonexistent/imgmap/b.img"])
        let map = SectorMap(top: loaded.top)
        #expect(map.size == Sector(maxDeviceSectors))
        #expect(extents(map).map(summary) == ["0 18014398509481975 error", "18014398509481975 4 error", "18014398509481979 4 error"])
        #expect(map.errorRanges().ranges == [SectorRange(start: 0, length: maxDeviceSectors)])
    }

    @Test func hugeZeroDeviceMapsAndReadsNearItsEnd() throws {
        let map = SectorMap(top: try loadTables("0 18014398509481983 zero").top)
        #expect(extents(map).map(summary) == ["0 18014398509481983 zero"])
        #expect(map.size.bytes == 18014398509481983 * 512)
        var buffer = [UInt8](repeating: 0xff, count: 1024)
        try buffer.withUnsafeMutableBytes { try MapReader(map: map, onError: .fail).read(into: $0, at: Sector(maxDeviceSectors - 2)) }
        #expect(buffer == [UInt8](repeating: 0, count: 1024))
    }

    @Test func extentAtASectorOutsideTheDeviceIsNil() throws {
        let map = SectorMap(top: try loadTables("0 8 zero\n8 8 error").top)
        #expect(map.extent(at: Sector(16)) == nil)
        #expect(map.extent(at: Sector(UInt64.max)) == nil)
    }

    @Test func extentAtASectorRunsToTheEndOfItsExtent() throws {
        let map = SectorMap(top: try loadTables("0 8 zero\n8 8 error").top)
        #expect(map.extent(at: Sector(3)).map(summary) == "3 5 zero")
        #expect(map.extent(at: Sector(15)).map(summary) == "15 1 error")
    }

    // MARK: stacking

    @Test func stackingThreeDeepResolvesToTheImage() throws {
        let a = GoldenImages.path("A", sectors: 64)
        let loaded = try loadTables("0 8 linear M 4", lower: [("L", "0 32 linear A 16"), ("M", "0 16 linear L 8")], devices: ["A": a])
        let map = SectorMap(top: loaded.top)
        let found = extents(map)
        #expect(found.map(summary) == ["0 8 data A-64+0.img 28"])
        #expect(found.first?.origin == Origin(table: "L.table", line: 1, target: "linear", device: "A"))
        let image = GoldenImages.bytes("A", sectors: 64)
        #expect(try readAll(map) == Array(image[28 * 512..<36 * 512]))
        #expect(loaded.devices.keys.sorted() == ["L", "M", "top"])
    }

    @Test func adjacentPiecesFromTheSameDeepestLineMerge() throws {
        let folder = TemporaryDirectory()
        let loaded = try loadTables("0 8 linear L 0\n8 8 linear L 8", lower: [("L", "0 16 linear A 0")],
                                    devices: ["A": folder.sparseImage("a.img", sectors: 16)])
        #expect(extents(SectorMap(top: loaded.top)).map(summary) == ["0 16 data a.img 0"])
    }

    @Test func adjacentLinesKeepTheirOwnOrigin() throws {
        let folder = TemporaryDirectory()
        let loaded = try loadTables("0 8 linear A 0\n8 8 linear A 8\n16 4 zero\n20 4 zero",
                                    devices: ["A": folder.sparseImage("a.img", sectors: 16)])
        let found = extents(SectorMap(top: loaded.top))
        #expect(found.map(summary) == ["0 8 data a.img 0", "8 8 data a.img 8", "16 4 zero", "20 4 zero"])
        #expect(found.map(\.origin.line) == [1, 2, 3, 4])
    }

    @Test func lowerDeviceTooSmallIsTooSmallForTarget() {
        let error = loadError("0 20 linear L 0", lower: [("L", "0 16 zero")])
        #expect(error?.description.hasPrefix("t.table:1: linear: too small for target: device L: start=0, len=20, dev_size=16") == true)
    }

    @Test func tableUsingItselfIsACycle() {
        let error = loadError("0 8 linear A 0", lower: [("A", "0 8 linear A 0")])
        #expect(error?.description == "A.table: Device lookup failed: device `A` uses itself: A → A (a table cannot map onto its own device)")
        #expect(error?.exitStatus == .dataError)
    }

    @Test func twoTablesUsingEachOtherAreACycle() {
        let error = loadError("0 8 linear A 0", lower: [("A", "0 8 linear B 0"), ("B", "0 8 linear A 0")])
        #expect(error?.description.contains("device `A` uses itself: A → B → A") == true)
        #expect(error?.description.contains("Device lookup failed") == true)
    }

    @Test func topTableUsingItselfIsACycle() {
        #expect(loadError("0 8 linear top 0")?.description.contains("device `top` uses itself: top → top") == true)
    }

    @Test func cycleThroughAStripeIsReported() {
        let error = loadError("0 8 linear A 0", lower: [("A", "0 16 striped 2 4 B 0 B 4"), ("B", "0 8 linear A 0")])
        #expect(error?.description.contains("A → B → A") == true)
    }

    @Test func deviceDefinedTwiceIsRefused() {
        let error = loadError("0 8 zero", lower: [("A", "0 8 zero"), ("A", "0 8 zero")], exactBindings: true)
        #expect(error?.description == "A.table: device `A` is defined twice")
        #expect(error?.exitStatus == .usage)
    }

    // MARK: device tokens

    @Test func unboundTokenIsAPathRelativeToTheCurrentDirectory() throws {
        let folder = TemporaryDirectory()
        let absolute = folder.sparseImage("a.img", sectors: 16)
        let relative = relativeFromCurrentDirectory(absolute)
        #expect(!relative.hasPrefix("/"))
        let loaded = try loadTables("0 16 linear \(relative) 0")
        #expect(loaded.leaves.map(\.path) == [relative])
        #expect(loaded.leaves.map(\.size) == [Sector(16)])
    }

    @Test func bindingAndATableOfTheSameNameAreRefused() throws {
        let folder = TemporaryDirectory()
        let a = folder.sparseImage("a.img", sectors: 16)
        let error = loadError("0 16 linear L 0", lower: [("L", "0 8 zero")], devices: ["L": a])
        #expect(error?.exitStatus == .usage)
        #expect(error?.description.hasPrefix("`L` is bound twice: --dev L=") == true)
    }

    @Test func imageNamedTwiceIsOpenedOnce() throws {
        let folder = TemporaryDirectory()
        let a = folder.sparseImage("a.img", sectors: 16)
        let loaded = try loadTables("0 8 linear A 0\n8 8 linear A 8\n16 16 striped 2 8 A 0 A 8", devices: ["A": a])
        #expect(loaded.leaves.count == 1)
    }

    @Test func devBindingToAtNameUsesTheNamedDevice() throws {
        let folder = TemporaryDirectory()
        let a = folder.sparseImage("a.img", sectors: 64)
        let loaded = try loadTables("0 8 linear 253:0 8", lower: [("vg-lv", "0 32 linear A 16")],
                                    devices: ["253:0": "@vg-lv", "A": a])
        #expect(extents(SectorMap(top: loaded.top)).map(summary) == ["0 8 data a.img 24"])
    }

    @Test func devBindingToAnUnknownAtNameIsAUsageError() {
        let error = loadError("0 8 linear 253:0 0", devices: ["253:0": "@nothing"])
        #expect(error?.exitStatus == .usage)
        #expect(error?.description == "t.table:1: linear: Device lookup failed: `253:0` is bound to @nothing, but no table defines device nothing")
    }

    @Test func assignmentNeedsANameAndAValue() throws {
        #expect(try Bindings.splitAssignment("A=/x/a.img", option: "--dev") == ("A", "/x/a.img"))
        #expect(try Bindings.splitAssignment("8:16=a=b", option: "--dev") == ("8:16", "a=b"))
        for bad in ["A", "=a.img", "A="] {
            #expect(throws: PlainFailure("--dev \(bad): expected NAME=VALUE", .usage)) {
                try Bindings.splitAssignment(bad, option: "--dev")
            }
        }
    }

    // MARK: dmsetup ls and dumps

    @Test func dmsetupLsBindsDeviceNumbersToNames() throws {
        let text = "vg-root\t(253:1)\nvg-swap\t(253, 2)\n\nlvm--pool-tdata   (253:10)\n"
        let parsed = try Bindings.parseDmsetupLs(text, path: "ls.txt")
        #expect(parsed.map(\.token) == ["253:1", "253:2", "253:10"])
        #expect(parsed.map(\.target) == ["@vg-root", "@vg-swap", "@lvm--pool-tdata"])
    }

    @Test func dmsetupLsWithNoDevicesIsEmpty() throws {
        #expect(try Bindings.parseDmsetupLs("No devices found\n", path: "ls.txt").isEmpty)
    }

    @Test func dmsetupLsRefusesOtherLines() {
        #expect(throws: PlainFailure("ls.txt:2: expected `NAME (MAJOR:MINOR)` as `dmsetup ls` prints it, not `b 253:1`", .dataError)) {
            try Bindings.parseDmsetupLs("a\t(253:0)\nb 253:1\n", path: "ls.txt")
        }
        #expect(throws: PlainFailure.self) { try Bindings.parseDmsetupLs("a\t(253:x)\n", path: "ls.txt") }
        #expect(throws: PlainFailure.self) { try Bindings.parseDmsetupLs("(253:0)\n", path: "ls.txt") }
    }

    @Test func dumpTopIsTheDeviceNoOtherUses() throws {
        let folder = TemporaryDirectory()
        let dump = "data: 0 16 linear 253:1 0\nroot: 0 32 linear 8:16 0\n"
        let loaded = try loadTables(dump, devices: ["253:1": "@root", "8:16": folder.sparseImage("sdb.img", sectors: 32)])
        #expect(loaded.top.name == "data")
        #expect(loaded.top.size == Sector(16))
    }

    @Test func dumpWithSeveralUnusedDevicesAsksForTop() {
        let error = loadError("a: 0 16 zero\nb: 0 32 zero\n")
        #expect(error?.exitStatus == .usage)
        #expect(error?.description == "the dump defines several devices that no other uses (a, b): choose one with --top NAME")
    }

    @Test func topChoosesADumpDevice() throws {
        #expect(try loadTables("a: 0 16 zero\nb: 0 32 zero\n", top: "b").top.size == Sector(32))
        let error = loadError("a: 0 16 zero\nb: 0 32 zero\n", topName: "c")
        #expect(error?.exitStatus == .usage)
        #expect(error?.description == "--top c: no table defines a device of that name (known: a, b)")
    }

    @Test func dumpDeviceNumbersResolveThroughDmsetupLs() throws {
        let folder = TemporaryDirectory()
        let ls = try Bindings.parseDmsetupLs("vg-pool\t(253:0)\n", path: "ls.txt")
        let dump = "vg-lv: 0 8 linear 253:0 8\nvg-pool: 0 64 linear 8:16 0\n"
        let bindings = Bindings(tables: [.init(name: nil, path: "dump.txt")],
                                devices: ls + [(token: "8:16", target: folder.sparseImage("sdb.img", sectors: 64))])
        var loader = TableLoader(bindings: bindings)
        loader.readTable = { _ in Array(dump.utf8) }
        let loaded = try loader.load()
        #expect(loaded.top.name == "vg-lv")
        #expect(extents(SectorMap(top: loaded.top)).map(summary) == ["0 8 data sdb.img 8"])
    }

    // MARK: table files

    @Test func missingTableFileIsExitStatus66() {
        let error = failure {
            _ = try TableLoader(bindings: Bindings(tables: [.init(name: nil, path: "/nonexistent/imgmap/t.table")])).load()
        }
        #expect(error?.exitStatus == .noInput)
        #expect(error?.description == "/nonexistent/imgmap/t.table: open: No such file or directory (the table file cannot be read)")
    }

    @Test func tableFileThatIsADirectoryIsExitStatus66() {
        let folder = TemporaryDirectory()
        let error = failure { _ = try TableLoader(bindings: Bindings(tables: [.init(name: nil, path: folder.path)])).load() }
        #expect(error?.exitStatus == .noInput)
    }

    @Test func tableFilesAreReadFromDisk() throws {
        let folder = TemporaryDirectory()
        let lower = folder.write("l.table", "0 8 zero\n")
        let top = folder.write("t.table", "0 8 linear L 0\n8 8 error\n")
        let loaded = try TableLoader(bindings: Bindings(tables: [.init(name: "L", path: lower), .init(name: nil, path: top)])).load()
        #expect(loaded.tablePaths == [lower, top])
        #expect(extents(SectorMap(top: loaded.top)).map(\.origin.description) == ["\(lower):1 zero", "\(top):2 error"])
    }

    // MARK: a million segments

    @Test func millionSegmentTableLoadsAndMaps() throws {
        let count = 1 << 20
        var text: [UInt8] = []
        text.reserveCapacity(count * 20)
        for i in 0..<count {
            text += Array("\(i * 8) 8 \(i % 2 == 0 ? "zero" : "linear A \(i % 64 * 8)")\n".utf8)
        }
        let folder = TemporaryDirectory()
        var loader = TableLoader(bindings: Bindings(tables: [.init(name: nil, path: "big.table")],
                                                    devices: [(token: "A", target: folder.sparseImage("a.img", sectors: 512))]))
        loader.readTable = { _ in text }
        let loaded = try loader.load()
        #expect(loaded.top.segments.count == count)
        let map = SectorMap(top: loaded.top)
        #expect(map.size == Sector(UInt64(count) * 8))
        var walked = 0
        var position: UInt64 = 0
        var wrong = 0
        map.forEachExtent { extent in
            if extent.start.value != position || extent.length.value != 8 { wrong += 1 }
            position = extent.end.value
            walked += 1
        }
        #expect(walked == count)
        #expect(wrong == 0)
        #expect(position == UInt64(count) * 8)
        let probe = UInt64(count - 3) * 8 + 5
        #expect(map.extent(at: Sector(probe)).map(summary) == "\(probe) 3 data a.img \((count - 3) % 64 * 8 + 5)")
        #expect(map.extent(at: Sector(probe - 8)).map(summary) == "\(probe - 8) 3 zero")
    }
}
