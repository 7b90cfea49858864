import Testing
@testable import ImgMapCore

@Suite struct BmapBuilderTests {
    /// Pushes ranges whose bytes are taken from `image`.
    func build(_ image: [UInt8], ranges: [(UInt64, UInt64)], blockSize: UInt64 = 4096) throws -> String {
        var builder = try BmapBuilder(imageSize: UInt64(image.count), blockSize: blockSize)
        for (first, last) in ranges {
            try builder.beginRange(first: first)
            let end = min(Int((last + 1) * blockSize), image.count)
            image[Int(first * blockSize)..<end].withUnsafeBytes { builder.update($0) }
            try builder.endRange(last: last)
        }
        return try builder.finish()
    }

    @Test func singleBlockIsWrittenAsOneNumberAndRangesAsFirstDashLast() throws {
        let image = bmapTestBytes(count: 10 * 4096, seed: 9)
        let text = try build(image, ranges: [(1, 1), (3, 5)])
        #expect(text.contains("\"> 1 </Range>\n"))
        #expect(text.contains("\"> 3-5 </Range>\n"))
        #expect(text.contains("<MappedBlocksCount> 4  </MappedBlocksCount>"))
        #expect(text.contains("<!-- Count of mapped blocks: 16.0 KiB or 40.0%    -->"))
    }

    @Test func rangeChecksumCoversExactlyItsBytesUpToImageSize() throws {
        let image = bmapTestBytes(count: 2 * 4096 + 100, seed: 7)
        let bmap = try BmapFile(text: try build(image, ranges: [(0, 0), (2, 2)]))
        #expect(bmap.ranges.map(\.checksum) == [sha256Hex(Array(image[0..<4096])), sha256Hex(Array(image[8192...]))])
        #expect(bmap.byteRange(of: bmap.ranges[1]) == 8192..<8292)
    }

    @Test func backToBackRangesAreMergedWithOneChecksum() throws {
        let image = bmapTestBytes(count: 8 * 4096, seed: 3)
        let merged = try build(image, ranges: [(2, 2), (3, 3), (4, 6)])
        let single = try build(image, ranges: [(2, 6)])
        #expect(merged == single)
        #expect(try BmapFile(text: merged).ranges.map(\.description) == ["2-6"])
    }

    @Test func outputParsesBackWithTheSameNumbers() throws {
        let image = bmapTestBytes(count: 100 * 4096 + 1, seed: 5)
        let bmap = try BmapFile(text: try build(image, ranges: [(0, 9), (50, 50), (100, 100)]), path: "t.bmap")
        #expect(bmap.version == "2.0")
        #expect(bmap.imageSize == 409601)
        #expect(bmap.blockSize == 4096)
        #expect(bmap.blocksCount == 101)
        #expect(bmap.mappedBlocksCount == 12)
        #expect(bmap.checksumType == .sha256)
        #expect(bmap.ranges.map(\.description) == ["0-9", "50", "100"])
    }

    @Test func emptyImageIsRefused() {
        #expect(throws: BmapError(path: "bmap", "cannot make a bmap of an empty image")) {
            try BmapBuilder(imageSize: 0)
        }
    }

    @Test func rangeNotAfterThePreviousOneIsRefused() throws {
        var builder = try BmapBuilder(imageSize: 10 * 4096)
        try builder.beginRange(first: 4)
        [UInt8](repeating: 1, count: 4096).withUnsafeBytes { builder.update($0) }
        try builder.endRange(last: 4)
        #expect(throws: BmapError(path: "bmap", "block 3 is not after the previous range 4-4")) {
            try builder.beginRange(first: 3)
        }
    }

    @Test func rangeFedTheWrongNumberOfBytesIsRefused() throws {
        var builder = try BmapBuilder(imageSize: 10 * 4096)
        try builder.beginRange(first: 1)
        [UInt8](repeating: 1, count: 100).withUnsafeBytes { builder.update($0) }
        #expect(throws: BmapError(path: "bmap", "range 1-1: fed bytes up to offset 4196, but block 1 ends at offset 8192")) {
            try builder.endRange(last: 1)
        }
    }

    @Test func blockPastTheImageIsRefused() throws {
        var builder = try BmapBuilder(imageSize: 10 * 4096)
        #expect(throws: BmapError(path: "bmap", "block 10 is past the image's last block 9")) {
            try builder.beginRange(first: 10)
        }
    }

    @Test func finishWithARangeOpenIsRefused() throws {
        var builder = try BmapBuilder(imageSize: 4096)
        try builder.beginRange(first: 0)
        #expect(throws: BmapError(path: "bmap", "finish while the range from block 0 is open")) {
            _ = try builder.finish()
        }
    }

    @Test func bytesFedOutsideARangeAreReportedByFinish() throws {
        var builder = try BmapBuilder(imageSize: 4096)
        [UInt8](repeating: 1, count: 10).withUnsafeBytes { builder.update($0) }
        #expect(throws: BmapError(path: "bmap", "10 bytes were fed outside any range")) {
            _ = try builder.finish()
        }
    }

    @Test func humanSizesAreSpelledAsBmapToolsSpellsThem() {
        #expect(BmapText.humanSize(1) == "1 byte")
        #expect(BmapText.humanSize(511) == "511 bytes")
        #expect(BmapText.humanSize(512) == "0.5 KiB")
        #expect(BmapText.humanSize(5 * 1024 * 1024 + 1000) == "5.0 MiB")
        #expect(BmapText.humanSize(3 << 30) == "3.0 GiB")
        #expect(BmapText.humanSize(UInt64(1) << 62) == "4194304.0 EiB")
    }

    @Test func oneByteImageMappedCommentOverrunsLikeBmaptool() throws {
        // "4.0 KiB or 100.0%" is one byte longer than the blanks reserved after "1 byte": bmaptool's
        // in-place write eats one blank of "   -->".
        let text = try build([42], ranges: [(0, 0)])
        #expect(text.contains("<!-- Count of mapped blocks: 4.0 KiB or 100.0%  -->\n"))
    }
}

@Suite struct BmapCreateTests {
    @Test func dataExtentsBecomeBlockRangesAndPartialBlocksCount() throws {
        let scratch = BmapScratch()
        let path = scratch.file("image.img")
        _ = try makeBmapTestImage(at: path)
        let bmap = try BmapFile(text: try createBmap(image: ImageFile(openForReading: path)))
        #expect(bmap.ranges.map(\.description) == ["0", "16-18", "256-258", "512-586", "1280"])
        #expect(bmap.blocksCount == 1281)
        #expect(try verifyBmap(bmap: bmap, image: ImageFile(openForReading: path)).isEmpty)
    }

    @Test func zerosAsHolesUnmapsAllZeroBlocks() throws {
        let scratch = BmapScratch()
        let path = scratch.file("image.img")
        _ = try makeBmapTestImage(at: path)
        let bmap = try BmapFile(text: try createBmap(image: ImageFile(openForReading: path), zerosAsHoles: true))
        #expect(bmap.ranges.map(\.description) == ["0", "16-18", "258", "512-586", "1280"])
        #expect(try verifyBmap(bmap: bmap, image: ImageFile(openForReading: path)).isEmpty)
    }

    @Test func zerosAsHolesSplitsAFullyWrittenImage() throws {
        let scratch = BmapScratch()
        let path = scratch.file("full.img")
        var bytes = [UInt8](repeating: 0, count: 3 << 20)  // 768 blocks, more than one read buffer
        for block in [1, 2, 300, 767] { bytes[block * 4096 + 17] = 1 }
        try makeSparseImage(at: path, size: UInt64(bytes.count), writes: [(0, bytes)])
        let bmap = try BmapFile(text: try createBmap(image: ImageFile(openForReading: path), zerosAsHoles: true))
        #expect(bmap.ranges.map(\.description) == ["1-2", "300", "767"])
    }
}
