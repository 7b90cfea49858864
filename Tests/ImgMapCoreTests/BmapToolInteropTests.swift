import Foundation
import Testing
@testable import ImgMapCore

/// Our bmap against bmap-tools' own `bmaptool` (Debian package bmap-tools). Skipped when it is missing.
@Suite struct BmapToolInteropTests {
    static let bmaptool = toolPath("bmaptool")

    @Test(.enabled(if: bmaptool != nil, "bmaptool not installed (apt-get install bmap-tools)"))
    func createMatchesBmaptoolCreateByteForByte() throws {
        let scratch = BmapScratch()
        let imagePath = scratch.file("image.img")
        _ = try makeBmapTestImage(at: imagePath)
        let theirs = try runTool([Self.bmaptool!, "create", imagePath])
        #expect(theirs.status == 0, "bmaptool create failed: \(theirs.error)")
        let ours = try createBmap(image: ImageFile(openForReading: imagePath))
        #expect(ours == theirs.output)
    }

    @Test(.enabled(if: bmaptool != nil, "bmaptool not installed (apt-get install bmap-tools)"))
    func bmaptoolOutputParsesAndVerifies() throws {
        let scratch = BmapScratch()
        let imagePath = scratch.file("image.img")
        _ = try makeBmapTestImage(at: imagePath)
        let theirs = try runTool([Self.bmaptool!, "create", "-o", scratch.file("theirs.bmap"), imagePath])
        #expect(theirs.status == 0, "bmaptool create failed: \(theirs.error)")
        let bmap = try BmapFile(contentsOf: scratch.file("theirs.bmap"))
        #expect(bmap.ranges.map(\.description) == ["0", "16-18", "256-258", "512-586", "1280"])
        #expect(try verifyBmap(bmap: bmap, image: ImageFile(openForReading: imagePath)).isEmpty)
    }

    @Test(.enabled(if: bmaptool != nil, "bmaptool not installed (apt-get install bmap-tools)"))
    func bmaptoolCopyWithOurBmapReproducesTheImage() throws {
        let scratch = BmapScratch()
        let imagePath = scratch.file("image.img")
        _ = try makeBmapTestImage(at: imagePath)
        for zerosAsHoles in [false, true] {
            let bmapPath = scratch.file("ours-\(zerosAsHoles).bmap")
            let text = try createBmap(image: ImageFile(openForReading: imagePath), zerosAsHoles: zerosAsHoles)
            try text.write(toFile: bmapPath, atomically: false, encoding: .utf8)
            let destination = scratch.file("copy-\(zerosAsHoles).img")
            let copy = try runTool([Self.bmaptool!, "copy", "--bmap", bmapPath, imagePath, destination])
            #expect(copy.status == 0, "bmaptool copy failed: \(copy.error)")
            #expect(FileManager.default.contentsEqual(atPath: imagePath, andPath: destination))
        }
    }

    @Test(.enabled(if: bmaptool != nil, "bmaptool not installed (apt-get install bmap-tools)"))
    func bmaptoolCopyRejectsAnImageThatDisagreesWithOurBmap() throws {
        let scratch = BmapScratch()
        let imagePath = scratch.file("image.img")
        _ = try makeBmapTestImage(at: imagePath)
        let bmapPath = scratch.file("ours.bmap")
        try createBmap(image: ImageFile(openForReading: imagePath)).write(toFile: bmapPath, atomically: false, encoding: .utf8)
        let image = try ImageFile(openForReading: imagePath, writable: true)
        try [UInt8(0xff)].withUnsafeBytes { try image.write($0, at: 65536 + 200) }
        let copy = try runTool([Self.bmaptool!, "copy", "--bmap", bmapPath, imagePath, scratch.file("copy.img")])
        #expect(copy.status != 0)
        #expect(copy.error.contains("checksum mismatch"))
    }

    static let mkfs = toolPath("mkfs.ext4")

    @Test(.enabled(if: bmaptool != nil && mkfs != nil, "bmaptool or mkfs.ext4 not installed"))
    func createMatchesBmaptoolOnAFreshExt4Image() throws {
        let scratch = BmapScratch()
        let source = scratch.file("tree")
        try FileManager.default.createDirectory(atPath: source + "/docs", withIntermediateDirectories: true)
        try Data(bmapTestBytes(count: 3 << 20, seed: 8)).write(to: URL(fileURLWithPath: source + "/docs/big.bin"))
        try "hello\n".write(toFile: source + "/hello.txt", atomically: false, encoding: .utf8)
        let imagePath = scratch.file("fs.img")
        let mkfs = try runTool([Self.mkfs!, "-q", "-F", "-d", source, imagePath, "32M"])
        #expect(mkfs.status == 0, "mkfs.ext4 failed: \(mkfs.error)")
        let theirs = try runTool([Self.bmaptool!, "create", imagePath])
        #expect(theirs.status == 0, "bmaptool create failed: \(theirs.error)")
        let ours = try createBmap(image: ImageFile(openForReading: imagePath))
        #expect(ours == theirs.output)
        // A 3 MiB file makes ranges longer than the 1 MiB read buffer.
        #expect(try BmapFile(text: ours).ranges.contains { $0.blockCount > 256 })
    }
}
