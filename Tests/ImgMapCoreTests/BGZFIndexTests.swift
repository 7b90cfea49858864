import Testing
@testable import ImgMapCore

@Suite struct BGZFIndexTests {
    @Test func gziBytesParseBackToTheSameIndex() throws {
        let index = BGZFIndex(entries: [.init(compressedOffset: 100, uncompressedOffset: 65280),
                                        .init(compressedOffset: 65000, uncompressedOffset: 130560)])
        let bytes = index.gziBytes()
        #expect(bytes.count == 8 + 32)
        #expect(Array(bytes[0..<8]) == [2, 0, 0, 0, 0, 0, 0, 0])
        let parsed = try bytes.withUnsafeBytes { try BGZFIndex.parse(gzi: $0, path: "x.gzi") }
        #expect(parsed == index)
    }

    @Test func bgzipsAllOnesCountForAnEmptyInputReadsAsNoEntries() throws {
        let bytes = [UInt8](repeating: 0xff, count: 8)
        let parsed = try bytes.withUnsafeBytes { try BGZFIndex.parse(gzi: $0, path: "e.gz.gzi") }
        #expect(parsed.entries.isEmpty)
    }

    @Test func countThatDisagreesWithTheSizeIsRefused() {
        var bytes = BGZFIndex(entries: [.init(compressedOffset: 100, uncompressedOffset: 65280)]).gziBytes()
        bytes[0] = 2
        let error = bgzfError { _ = try bytes.withUnsafeBytes { try BGZFIndex.parse(gzi: $0, path: "x.gzi") } }
        #expect(error?.description == "x.gzi: 24 bytes but a count of 2 entries needs 40: not a .gzi index, or a truncated one")
        let huge = [UInt8](repeating: 0xff, count: 7) + [0x7f] + [UInt8](repeating: 0, count: 16)
        let hugeError = bgzfError { _ = try huge.withUnsafeBytes { try BGZFIndex.parse(gzi: $0, path: "x.gzi") } }
        #expect(hugeError?.exitStatus == .dataError)
        let short = bgzfError { _ = try [UInt8](repeating: 0, count: 5).withUnsafeBytes { try BGZFIndex.parse(gzi: $0, path: "x.gzi") } }
        #expect(short?.message.contains("too short") == true)
    }

    @Test func offsetsThatGoBackwardsOrJumpMoreThanAMemberAreRefused() {
        let backwards = BGZFIndex(entries: [.init(compressedOffset: 200, uncompressedOffset: 65280),
                                            .init(compressedOffset: 150, uncompressedOffset: 130560)]).gziBytes()
        let error = bgzfError { _ = try backwards.withUnsafeBytes { try BGZFIndex.parse(gzi: $0, path: "x.gzi") } }
        #expect(error?.offset == 24)
        #expect(error?.description == "x.gzi: offset 24: entry 1: compressed offset 150 does not follow 200 by 1 to 65536 bytes")
        let jump = BGZFIndex(entries: [.init(compressedOffset: 200, uncompressedOffset: 70000)]).gziBytes()
        let jumpError = bgzfError { _ = try jump.withUnsafeBytes { try BGZFIndex.parse(gzi: $0, path: "x.gzi") } }
        #expect(jumpError?.message == "entry 0: uncompressed offset 70000 does not follow 0 by 0 to 65536 bytes")
    }
}
