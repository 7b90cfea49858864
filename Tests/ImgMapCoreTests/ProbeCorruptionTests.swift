import Foundation
import Testing

@testable import ImgMapCore

// Bad input never crashes probe: seeded random byte flips in the metadata areas of real md, LVM and
// partitioned images (superblocks, labels, metadata text, GPT headers and entries), each probed and
// then restored. Every run must end with a result (problems are fine); a trap would end the suite.

@Suite struct ProbeCorruptionTests {
    /// Flips `rounds` × up to 4 bytes at random places of `ranges` (byte ranges) of `path`, probing
    /// `all` after each round, restoring the bytes before the next.
    func fuzz(_ path: String, ranges: [Range<UInt64>], all: [String], rounds: Int, seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        for _ in 0..<rounds {
            let range = ranges[Int(random.next() % UInt64(ranges.count))]
            var saved: [(UInt64, [UInt8])] = []
            for _ in 0..<(1 + Int(random.next() % 4)) {
                let at = range.lowerBound + random.next() % UInt64(range.count)
                saved.append((at, readRange(path, at: at, count: 1)))
                patch(path, at: at, [UInt8(truncatingIfNeeded: random.next())])
            }
            let result = try probe(all)
            _ = result.dump
            _ = result.report.text()
            for (at, bytes) in saved.reversed() { patch(path, at: at, bytes) }
        }
    }

    @Test func corruptMdSuperblocksNeverCrash() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("md", into: dir)
        let end = UInt64(16384) * 512
        let v090 = UInt64((16384 & ~127) - 128) * 512
        try fuzz(images["r0a"]!, ranges: [4096..<4096 + 512], all: [images["r0a"]!, images["r0b"]!], rounds: 150, seed: 1)
        try fuzz(images["v09a"]!, ranges: [v090..<v090 + 4096], all: [images["v09a"]!, images["v09b"]!], rounds: 150, seed: 2)
        try fuzz(images["v10a"]!, ranges: [(end - 8192)..<(end - 8192 + 512)], all: [images["v10a"]!, images["v10b"]!], rounds: 100, seed: 3)
    }

    @Test func corruptLVMLabelsAndMetadataNeverCrash() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("lvm", into: dir)
        let header = readRange(images["pva"]!, at: 4096, count: 512)
        let text = (4096 + header.le64(40))..<(4096 + header.le64(40) + header.le64(48))
        try fuzz(images["pva"]!, ranges: [512..<1024, 4096..<4608, text], all: [images["pva"]!, images["pvb"]!], rounds: 200, seed: 4)
    }

    @Test func corruptLVMMetadataTextWithValidChecksumsNeverCrashes() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("lvm", into: dir)
        let path = images["pva"]!
        let header = readRange(path, at: 4096, count: 512)
        let original = readRange(path, at: 4096 + header.le64(40), count: Int(header.le64(48)))
        var random = SplitMix64(seed: 6)
        let alphabet = Array("{}[]=\",\"#\n 0123456789-abcxyz".utf8)
        for _ in 0..<200 {
            var text = original
            for _ in 0..<(1 + Int(random.next() % 6)) {
                let at = Int(random.next() % UInt64(text.count))
                text[at] = alphabet[Int(random.next() % UInt64(alphabet.count))]
            }
            var h = header
            func put(_ at: Int, _ v: UInt64, _ n: Int) { for k in 0..<n { h[at + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) } }
            put(56, UInt64(lvmCRC(text, 0..<text.count)), 4)
            put(0, UInt64(lvmCRC(h, 4..<512)), 4)
            patch(path, at: 4096 + header.le64(40), text)
            patch(path, at: 4096, h)
            let result = try probe([path, images["pvb"]!])
            _ = result.report.text()
        }
        patch(path, at: 4096 + header.le64(40), original)
        patch(path, at: 4096, header)
        #expect(try probe([path, images["pvb"]!]).problems.isEmpty)
    }

    @Test func corruptPartitionTablesNeverCrash() throws {
        let dir = TemporaryDirectory()
        let images = try unpackProbeFixtures("nas", into: dir)
        try fuzz(images["nas1"]!, ranges: [0..<512, 512..<1024, 1024..<2048], all: images.values.sorted(), rounds: 150, seed: 5)
    }
}
