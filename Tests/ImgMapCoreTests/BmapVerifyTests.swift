import Testing
@testable import ImgMapCore

@Suite struct BmapVerifyTests {
    @Test func flippedByteIsReportedInExactlyItsRange() throws {
        let scratch = BmapScratch()
        let path = scratch.file("image.img")
        _ = try makeBmapTestImage(at: path)
        let bmap = try BmapFile(text: try createBmap(image: ImageFile(openForReading: path)))
        let image = try ImageFile(openForReading: path, writable: true)
        var byte: [UInt8] = [0]
        let offset: UInt64 = (2 << 20) + 5000
        try byte.withUnsafeMutableBytes { try image.readExactly(into: $0, at: offset) }
        byte[0] ^= 0x40
        try byte.withUnsafeBytes { try image.write($0, at: offset) }

        let mismatches = try verifyBmap(bmap: bmap, image: image)
        #expect(mismatches.count == 1)
        guard case let .range(range, bytes, expected, actual) = mismatches.first else {
            Issue.record("expected a range mismatch, got \(mismatches)")
            return
        }
        #expect(range.description == "512-586")
        #expect(bytes == 2_097_152..<2_404_352)
        #expect(expected == range.checksum && actual != expected)
        #expect(mismatches[0].description == "blocks 512-586 (bytes 2097152-2404351) hash to \(actual), the bmap says \(expected)")
    }

    @Test func imageSizeMismatchIsReported() throws {
        let scratch = BmapScratch()
        let path = scratch.file("image.img")
        let size = try makeBmapTestImage(at: path)
        let bmap = try BmapFile(text: try createBmap(image: ImageFile(openForReading: path)))
        let image = try ImageFile(openForReading: path, writable: true)
        try image.truncate(to: size + 1)
        #expect(try verifyBmap(bmap: bmap, image: image) == [.imageSize(expected: size, actual: size + 1)])
        #expect(BmapMismatch.imageSize(expected: size, actual: size + 1).description == "image is 5243881 bytes, the bmap says 5243880")
    }

    @Test func truncatedImageFailsItsLastRangeToo() throws {
        let scratch = BmapScratch()
        let path = scratch.file("image.img")
        let size = try makeBmapTestImage(at: path)
        let bmap = try BmapFile(text: try createBmap(image: ImageFile(openForReading: path)))
        let image = try ImageFile(openForReading: path, writable: true)
        try image.truncate(to: size - 10)
        let mismatches = try verifyBmap(bmap: bmap, image: image)
        #expect(mismatches.count == 2)
        #expect(mismatches.first == .imageSize(expected: size, actual: size - 10))
        if case let .range(range, _, _, _) = mismatches.last { #expect(range.description == "1280") }
    }
}
