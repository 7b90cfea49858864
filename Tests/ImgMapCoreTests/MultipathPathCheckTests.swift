import Foundation
import Testing

@testable import ImgMapCore

/// `verify --check-paths`: the paths of a multipath segment are the same LUN, so each must read what the
/// path reads use (the first of the initial group) reads; differing runs of sectors are reported with
/// both path names, path and device sectors, and the command exits 1.
@Suite struct MultipathPathCheckTests {
    /// Three 64-sector copies of the same patterned LUN, as three paths would see it.
    static func paths(in folder: TemporaryDirectory) -> [String: String] {
        let lun = GoldenImages.bytes("L", sectors: 64)
        var devices: [String: String] = [:]
        for name in ["P0", "P1", "P2"] {
            let path = folder.file("\(name).img")
            FileManager.default.createFile(atPath: path, contents: Data(lun))
            devices[name] = path
        }
        return devices
    }

    /// Flips one byte in each of `sectors` of the image at `path`.
    static func spoil(_ path: String, sectors: [Int]) {
        var bytes = readBytes(path)
        for s in sectors { bytes[s * 512 + 17] ^= 0x5a }
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
    }

    // Two groups: P0 and P1 in group 1 (round-robin), P2 alone in group 2. The segment starts at device
    // sector 100, after a zero segment, so device and path sectors differ by 100.
    static let table = "0 100 zero\n100 64 multipath 0 0 2 1 round-robin 0 2 1 P0 1 P1 1 service-time 0 1 2 P2 1 50\n"

    func check(_ devices: [String: String], window: UInt64 = 2048) throws -> (PathCheck.Report, [String]) {
        var found: [String] = []
        let report = try PathCheck(top: try loadTables(Self.table, devices: devices).top, window: window).run { found.append($0.description) }
        return (report, found)
    }

    @Test func identicalPathsAgree() throws {
        let folder = TemporaryDirectory()
        let (report, found) = try check(Self.paths(in: folder))
        #expect(found.isEmpty)
        #expect(report.segments == 1 && report.paths == 3 && report.sectors == 64 && report.mismatches == 0)
        #expect(report.summary == "paths agree: 1 multipath segment, 3 paths, 64 sectors compared, 0 differing ranges (0 sectors)")
    }

    @Test(arguments: [2048, 3] as [UInt64])
    func differingRunsAreReportedWithBothPathsAndBothSectorSpaces(window: UInt64) throws {
        let folder = TemporaryDirectory()
        let devices = Self.paths(in: folder)
        // A run of three (crossing a 3-sector window's edge when window is 3), a single sector, and the
        // last sector on P2, so a run still open at the end is reported too.
        Self.spoil(devices["P1"]!, sectors: [5, 6, 7, 40])
        Self.spoil(devices["P2"]!, sectors: [63])
        let (report, found) = try check(devices, window: window)
        #expect(found == [
            "t.table:2: path P1 (group 1 path 2) differs from P0 at sectors 5+3 (device sectors 105+3)",
            "t.table:2: path P1 (group 1 path 2) differs from P0 at sectors 40+1 (device sectors 140+1)",
            "t.table:2: path P2 (group 2 path 1) differs from P0 at sectors 63+1 (device sectors 163+1)",
        ])
        #expect(report.mismatches == 3 && report.differingSectors == 5)
    }

    @Test func theReferenceIsTheFirstPathOfTheInitialGroup() throws {
        let folder = TemporaryDirectory()
        let devices = Self.paths(in: folder)
        Self.spoil(devices["P2"]!, sectors: [0])
        var found: [String] = []
        // Initial group 2: reads use P2, so P0 and P1 are the ones that differ from it.
        let table = Self.table.replacingOccurrences(of: "multipath 0 0 2 1 ", with: "multipath 0 0 2 2 ")
        _ = try PathCheck(top: try loadTables(table, devices: devices).top).run { found.append($0.description) }
        #expect(found == [
            "t.table:2: path P0 (group 1 path 1) differs from P2 at sectors 0+1 (device sectors 100+1)",
            "t.table:2: path P1 (group 1 path 2) differs from P2 at sectors 0+1 (device sectors 100+1)",
        ])
    }

    @Test func theCommandExitsOneWhenPathsDifferOrNothingWasCompared() throws {
        let folder = TemporaryDirectory()
        let devices = Self.paths(in: folder)
        let table = folder.write("lun.table", Self.table)
        let binds = devices.sorted { $0.key < $1.key }.flatMap { ["--dev", "\($0.key)=\($0.value)"] }
        let agree = try imgmap(["verify", "--check-paths", table] + binds, in: folder)
        #expect(agree.status == 0)
        #expect(agree.out.hasPrefix("paths agree: 1 multipath segment, 3 paths"))
        Self.spoil(devices["P1"]!, sectors: [9])
        let differ = try imgmap(["verify", "--check-paths", table, "--json"] + binds, in: folder)
        #expect(differ.status == 1)
        #expect(differ.out.split(separator: "\n").first == #"{"line":2,"path":"P1","group":1,"index":2,"reference":"P0","sector":9,"count":1,"device_sector":109}"#)
        let none = try imgmap(["verify", "--check-paths", folder.write("z.table", "0 8 zero\n")], in: folder)
        #expect(none.status == 1)
        #expect(none.out == "paths not checked: the table has no multipath segment\n")
        let both = try imgmap(["verify", "--check-paths", "--parity", table] + binds, in: folder)
        #expect(both.status == 64)
    }
}
