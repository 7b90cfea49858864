import Foundation
import Testing

@testable import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

// manifest: the bmap of a table's device, made from the map without composing. Mapped blocks are image
// data reached through data extents; zero extents and image holes are unmapped; written zeros stay
// mapped unless zerosAsHoles. The bmap must verify against the composed image, match the bmap of that
// image, and be accepted by bmaptool.

/// Writes golden sectors of image `name` at the same sectors of the file at `path`, for each range.
func writeGoldenSectors(_ path: String, _ name: String, _ ranges: [Range<UInt64>]) {
    let fd = open(path, O_WRONLY)
    precondition(fd >= 0)
    defer { close(fd) }
    for range in ranges {
        var bytes = [UInt8](repeating: 0, count: range.count * 512)
        for (k, s) in range.enumerated() { GoldenImages.fillSector(name, s, into: &bytes, at: k * 512) }
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, off_t(range.lowerBound * 512)) }
    }
}

/// A sparse image S (data in three 4 KiB-aligned runs), a dense image D with one 4 KiB block of written
/// zeros, and a table over both whose extents all fall on 4 KiB boundaries, so that the composed
/// file's holes are exactly the map's zeros and holes.
struct ManifestFixture {
    let folder = TemporaryDirectory("imgmap-manifest")
    let s: String
    let d: String
    /// Device blocks (4 KiB): S data 0–1; zero 32–39; striped over D 40–71; S data 72–73 and 133–134;
    /// D 136–167 with written zeros in block 145.
    static let table = """
        0 256 linear S 0
        256 64 zero
        320 256 striped 2 16 D 0 D 512
        576 512 linear S 512
        1088 256 linear D 128

        """
    static let mappedRanges = ["0-1", "40-73", "133-134", "136-167"]
    static let mappedRangesWithoutZeros = ["0-1", "40-73", "133-134", "136-144", "146-167"]

    init() {
        s = folder.sparseImage("s.img", sectors: 2048)
        writeGoldenSectors(s, "S", [0..<16, 512..<528, 1000..<1016])
        d = folder.file("d.img")
        try! FileManager.default.copyItem(atPath: GoldenImages.path("D", sectors: 1024), toPath: d)
        let fd = open(d, O_WRONLY)
        _ = [UInt8](repeating: 0, count: 4096).withUnsafeBytes { pwrite(fd, $0.baseAddress!, 4096, 200 * 512) }
        close(fd)
    }

    var devices: [String: String] { ["S": s, "D": d] }
    var devs: [String] { ["--dev", "S=\(s)", "--dev", "D=\(d)"] }

    func load(_ table: String = ManifestFixture.table) throws -> (SectorMap, [ImageFile]) {
        let loaded = try loadTables(table, devices: devices)
        return (SectorMap(top: loaded.top), loaded.leaves.map(\.image))
    }

    /// The device composed to `name` with `--sparse auto`: holes exactly where the map has zeros and
    /// holes, written zeros kept as data.
    func compose(_ table: String = ManifestFixture.table, to name: String = "out.img", onError: ErrorPolicy = .fail) throws -> String {
        let (map, inputs) = try load(table)
        let path = folder.file(name)
        let out = try OutputFile(path: path, inputs: inputs)
        _ = try Compose(map: map, options: .init(onError: onError, sparse: .auto)).run(to: out)
        try out.commit()
        return path
    }
}

struct ManifestTests {
    @Test func zeroExtentsAndImageHolesAreUnmappedAndWrittenZerosMapped() throws {
        let f = ManifestFixture()
        let (map, _) = try f.load()
        let bmap = try BmapFile(text: try Manifest(map: map).bmap(path: "t.table"))
        #expect(bmap.imageSize == 1344 * 512)
        #expect(bmap.blocksCount == 168)
        #expect(bmap.ranges.map(\.description) == ManifestFixture.mappedRanges)
        #expect(bmap.mappedBlocksCount == 2 + 34 + 2 + 32)
    }

    @Test func zerosAsHolesUnmapsWrittenZeroBlocks() throws {
        let f = ManifestFixture()
        let (map, _) = try f.load()
        let bmap = try BmapFile(text: try Manifest(map: map, zerosAsHoles: true).bmap(path: "t.table"))
        #expect(bmap.ranges.map(\.description) == ManifestFixture.mappedRangesWithoutZeros)
    }

    @Test func tableBmapVerifiesAgainstTheComposedImage() throws {
        let f = ManifestFixture()
        let (map, _) = try f.load()
        let image = try f.compose()
        for zerosAsHoles in [false, true] {
            let bmap = try BmapFile(text: try Manifest(map: map, zerosAsHoles: zerosAsHoles).bmap(path: "t.table"))
            #expect(try verifyBmap(bmap: bmap, image: ImageFile(openForReading: image)) == [])
        }
    }

    @Test func tableBmapEqualsTheBmapOfTheComposedImage() throws {
        let f = ManifestFixture()
        let (map, _) = try f.load()
        let image = try f.compose()
        try expectUnchanged([f.s, f.d, image]) {
            let fromTable = try BmapFile(text: try Manifest(map: map).bmap(path: "t.table"))
            let fromImage = try BmapFile(text: try createBmap(image: ImageFile(openForReading: image)))
            #expect(fromTable.ranges.map(\.description) == fromImage.ranges.map(\.description))
            #expect(fromTable.ranges.map(\.checksum) == fromImage.ranges.map(\.checksum))
            #expect(fromTable.imageSize == fromImage.imageSize)
            #expect(fromTable.mappedBlocksCount == fromImage.mappedBlocksCount)
            // The whole text, comments and file checksum included.
            #expect(try Manifest(map: map).bmap(path: "t.table") == (try createBmap(image: ImageFile(openForReading: image))))
        }
    }

    @Test func rangeChecksumsAreTheSHA256OfTheDevicesBytes() throws {
        let f = ManifestFixture()
        let (map, _) = try f.load()
        let device = try readAll(map)
        let bmap = try BmapFile(text: try Manifest(map: map).bmap(path: "t.table"))
        for range in bmap.ranges {
            let bytes = bmap.byteRange(of: range)
            #expect(range.checksum == sha256(Array(device[Int(bytes.lowerBound)..<Int(bytes.upperBound)])), "\(range)")
        }
    }

    @Test func errorExtentsFailByDefaultAndHashAsZerosWithOnErrorZero() throws {
        let f = ManifestFixture()
        let table = "0 64 linear D 0\n64 16 error\n80 48 linear S 0\n"
        let (map, _) = try f.load(table)
        let error = failure { _ = try Manifest(map: map).bmap(path: "t.table") }
        #expect(error?.description == "sectors 64+16 (t.table:2 error): Input/output error, as the kernel's read returns there"
            + " (use --on-error zero to read zeros and list the ranges with --errors FILE)")
        let bmap = try BmapFile(text: try Manifest(map: map, onError: .zero).bmap(path: "t.table"))
        #expect(bmap.ranges.map(\.description) == ["0-11"])
        let image = try f.compose(table, onError: .zero)
        #expect(try verifyBmap(bmap: bmap, image: ImageFile(openForReading: image)) == [])
    }

    @Test(arguments: GoldenCase.names(mode: "read"))
    func goldenReadCaseBmapVerifiesAgainstItsComposedImage(_ name: String) throws {
        let (golden, map, folder) = try composeGoldenReadCase(name)
        let path = folder.file("out.img")
        let bmap = try BmapFile(text: try Manifest(map: map, onError: .zero).bmap(path: name))
        #expect(bmap.imageSize == golden.size_bytes)
        #expect(try verifyBmap(bmap: bmap, image: ImageFile(openForReading: path)) == [])
    }

    static let bmaptool = toolPath("bmaptool")

    @Test(.enabled(if: bmaptool != nil, "bmaptool not installed (apt-get install bmap-tools)"))
    func bmaptoolCopiesTheComposedImageWithTheTablesBmap() throws {
        let f = ManifestFixture()
        let (map, _) = try f.load()
        let image = try f.compose()
        let bmapPath = f.folder.file("t.bmap")
        try Manifest(map: map).bmap(path: "t.table").write(toFile: bmapPath, atomically: false, encoding: .utf8)
        let destination = f.folder.file("copy.img")
        let copy = try runTool([Self.bmaptool!, "copy", "--bmap", bmapPath, image, destination])
        #expect(copy.status == 0, "bmaptool copy failed: \(copy.error)")
        expectSameBytes(readBytes(destination), readBytes(image))
    }
}

// MARK: - The command line

@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: imgmapBinary),
                "imgmap binary not found at .build/debug/imgmap: run `swift build` first"))
struct ManifestCommandTests {
    /// The fixture's table written to t.table, its bmap to t.bmap (by the CLI) and its image to out.img.
    func prepare(_ f: ManifestFixture) throws -> (table: String, bmap: String, image: String) {
        let table = f.folder.write("t.table", ManifestFixture.table)
        let bmap = f.folder.file("t.bmap")
        let run = try imgmap(["manifest", table] + f.devs + ["-o", bmap], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        let image = f.folder.file("out.img")
        let compose = try imgmap(["compose", table] + f.devs + ["-o", image, "--sparse", "auto"], in: f.folder)
        #expect(compose.status == 0, "\(compose.stderr)")
        return (table, bmap, image)
    }

    @Test func manifestCommandWritesTheEnginesBmap() throws {
        let f = ManifestFixture()
        let (table, bmap, _) = try prepare(f)
        let (map, _) = try f.load()
        #expect(String(decoding: readBytes(bmap), as: UTF8.self) == (try Manifest(map: map).bmap(path: table)))
    }

    @Test func verifyBmapOfTheComposedImageExitsZero() throws {
        let f = ManifestFixture()
        let (_, bmap, image) = try prepare(f)
        try expectUnchanged([image, bmap]) {
            let run = try imgmap(["verify", "--bmap", bmap, image], in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.out == "identical: 4 ranges (70 blocks) match \(bmap)\n")
        }
    }

    @Test func verifyBmapNamesTheRangeOfAFlippedByteAndExitsOne() throws {
        let f = ManifestFixture()
        let (_, bmapPath, image) = try prepare(f)
        flipByte(image, at: 50 * 4096 + 7)
        let bmap = try BmapFile(contentsOf: bmapPath)
        let range = bmap.ranges[1]
        let actual = sha256(Array(readBytes(image)[163840..<303104]))
        let run = try imgmap(["verify", "--bmap", bmapPath, image], in: f.folder)
        #expect(run.status == 1)
        #expect(run.out == "\(image): blocks 40-73 (bytes 163840-303103) hash to \(actual), the bmap says \(range.checksum!)\n"
            + "different: 1 mismatch against \(bmapPath)\n")
    }

    @Test func verifyBmapRefusesACorruptBmapWith65() throws {
        let f = ManifestFixture()
        let (_, bmapPath, image) = try prepare(f)
        let text = String(decoding: readBytes(bmapPath), as: UTF8.self)
        // One range's checksum changed without resealing: the file checksum no longer matches.
        let broken = f.folder.write("broken.bmap", text.replacingOccurrences(of: "<Range chksum=\"", with: "<Range chksum=\"0", options: [], range: text.range(of: "<Range chksum=\"")))
        let run = try imgmap(["verify", "--bmap", broken, image], in: f.folder)
        #expect(run.status == 65)
        #expect(run.stderr.hasPrefix("imgmap: \(broken):"), "\(run.stderr)")
        #expect(run.stderr.contains(": <BmapFileChecksum>: checksum mismatch: the file hashes to "), "\(run.stderr)")
        #expect(run.out == "")
        let garbage = f.folder.write("garbage.bmap", "garbage\n")
        let second = try imgmap(["verify", "--bmap", garbage, image], in: f.folder)
        #expect(second.status == 65)
        #expect(second.stderr == "imgmap: \(garbage):1: not an XML file: text before the root element\n")
    }
}
