import Foundation
import Testing

@testable import ImgMapCore

// The `map` listing: columns padded by what a terminal shows (not by UTF-8 length), widths measured in
// parallel parts equal to one whole pass, and a thin device's listing equal, line for line, to the
// mappings thin_dump prints for the same metadata.

/// The terminal column where each of `line`'s whitespace-separated fields starts: a byte that is not
/// UTF-8 shows as one replacement glyph, a wide ideograph takes two columns.
private func fieldColumns(_ line: ArraySlice<UInt8>) -> [Int] {
    let scalars = Array(String(decoding: line, as: UTF8.self).unicodeScalars)
    var starts: [Int] = []
    var column = 0
    for (i, s) in scalars.enumerated() {
        if s != " " && (i == 0 || scalars[i - 1] == " ") { starts.append(column) }
        column += columns(of: s)
    }
    return starts
}

private func lines(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
    bytes.split(separator: UInt8(ascii: "\n"))
}

struct MapListingTests {
    let folder = TemporaryDirectory()

    @Test func displayWidthCountsWhatATerminalShows() {
        #expect(displayWidth("disk.img") == 8)
        #expect(displayWidth("é.img") == 5)
        #expect(displayWidth("e\u{301}.img") == 5, "a combining accent takes no column")
        #expect(displayWidth("磁盘.img") == 8, "CJK ideographs take two columns each")
        #expect(displayWidth(PathBytes.string([0x61, 0xFF, 0xFE, 0x2E, 0x69])) == 5, "each raw byte is printed as one byte")
    }

    @Test func columnsStayAlignedAfterNamesWithNonASCIIAndRawBytes() throws {
        let names: [[UInt8]] = [Array("a.img".utf8), Array("é-long.img".utf8), [0x62, 0xFF, 0xFE, 0xFD, 0x2E, 0x69, 0x6D, 0x67], Array("磁盘.img".utf8)]
        var table: [UInt8] = []
        for (k, name) in names.enumerated() {
            let path = String(decoding: Array(folder.path.utf8) + [UInt8(ascii: "/")] + name, as: UTF8.self)
            // Created through the raw bytes: FileManager cannot name a file that is not UTF-8.
            let raw = Array(folder.path.utf8) + [UInt8(ascii: "/")] + name + [0]
            let fd = raw.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_CREAT | O_WRONLY, 0o644) } }
            try #require(fd >= 0, "cannot create \(path)")
            #expect(ftruncate(fd, 8 * 512) == 0)
            close(fd)
            table += Array("\(k * 8) 8 linear ".utf8) + name + Array(" 0\n".utf8)
        }
        table += Array("32 8 zero\n".utf8)
        try Data(table).write(to: URL(fileURLWithPath: folder.file("t.table")))
        let run = try imgmap(["map", "t.table"], in: folder)
        #expect(run.status == 0, "\(run.stderr)")
        let rows = lines(run.stdout)
        #expect(rows.count == 6)
        let header = fieldColumns(rows[0])
        #expect(header.count == 7)
        for row in rows.dropFirst() {
            let columns = fieldColumns(row)
            #expect(columns.count == 7, "\(String(decoding: row, as: UTF8.self))")
            // The left-aligned columns start where their headers do (the numbers are right-aligned).
            #expect(columns[2] == header[2] && columns[3] == header[3] && columns[5] == header[5] && columns[6] == header[6],
                    "\(String(decoding: row, as: UTF8.self))")
        }
        // The raw bytes are printed as they are.
        let rawRow = Array(rows[3])
        #expect(rawRow.firstRange(of: [0x62, 0xFF, 0xFE, 0xFD, 0x2E]) != nil)
    }

    @Test func widthsMeasuredInPartsEqualOneWholePass() throws {
        // The widest device and table line sit in the last part; a segment spans the parts' boundary.
        let a = folder.sparseImage("a.img", sectors: 4096)
        let b = folder.sparseImage("a-much-longer-name-for-the-second-image.img", sectors: 4096)
        var text = ""
        for k in 0..<40 { text += "\(k * 64) 64 linear \(a) \(k * 64)\n" }
        text += "2560 1536 zero\n"
        text += "4096 4096 linear \(b) 0\n"
        let loaded = try loadTables(text, devices: [:])
        let map = SectorMap(top: loaded.top)
        var whole = MapListing.Widths()
        var measured = MapListing.Measured()
        map.forEachExtent { whole.fit($0, &measured) }
        let parts = MapListing.widths(of: map)
        #expect(parts.target == whole.target && parts.device == whole.device && parts.place == whole.place)
        #expect(whole.device == b.utf8.count)
    }

    @Test(.enabled(if: thinToolsPresent, "thin-provisioning-tools are not installed"))
    func aThinDevicesListingIsThinDumpsMappingsLineForLine() throws {
        let virtualBlocks: UInt64 = 5000
        let spec = ThinPoolSpec.random(seed: 29, devices: 2, mappings: 3000, virtualBlocks: virtualBlocks)
        _ = spec.restore(into: folder)
        let dumped = parseThinDump(try #require(shell("thin_dump \"$1\"", [folder.file("meta.img")])))
        _ = folder.sparseImage("data.img", sectors: spec.dataBlocks * spec.blockSize)
        let pool = folder.write("pool.table", "0 \(spec.dataBlocks * 128) thin-pool meta.img data.img 128 0\n")
        for (id, mappings) in dumped.sorted(by: { $0.key < $1.key }) {
            _ = folder.write("thin.table", "0 \(virtualBlocks * 128) thin POOL \(id)\n")
            let run = try imgmap(["map", "thin.table", "--table", "POOL=\(pool)"], in: folder)
            #expect(run.status == 0, "\(run.stderr)")
            // What the listing must say: runs of blocks mapped to consecutive data blocks, and runs of
            // unmapped ones (zeros), each one line.
            var expected: [[String]] = [["START", "LENGTH", "TARGET", "DEVICE", "OFFSET", "TABLE:LINE", "FILE"]]
            var v: UInt64 = 0
            while v < virtualBlocks {
                var end = v + 1
                if let d = mappings[v] {
                    while end < virtualBlocks, mappings[end] == d + (end - v) { end += 1 }
                    expected.append(["\(v * 128)", "\((end - v) * 128)", "thin", "data.img", "\(d * 128)", "thin.table:1", "data.img"])
                } else {
                    while end < virtualBlocks, mappings[end] == nil { end += 1 }
                    expected.append(["\(v * 128)", "\((end - v) * 128)", "thin", "-", "-", "thin.table:1", "-"])
                }
                v = end
            }
            let rows = lines(run.stdout)
            let got = rows.map { String(decoding: $0, as: UTF8.self).split(separator: " ").map(String.init) }
            #expect(got.count == expected.count, "device \(id)")
            #expect(got == expected, "device \(id)")
            // Every line is padded to the same columns as the header.
            let header = fieldColumns(rows[0])
            for row in rows.dropFirst() {
                let columns = fieldColumns(row)
                #expect(columns[2] == header[2] && columns[3] == header[3] && columns[5] == header[5] && columns[6] == header[6])
            }
        }
    }
}
