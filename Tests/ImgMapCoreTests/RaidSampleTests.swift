import Foundation
import Testing

@testable import ImgMapCore

/// Samples/raid5-degraded: a four-disk raid5_ls set (64 KiB chunks, 256 KiB members, stored gzip'd)
/// whose member 2 is dead. degraded.table names it `-`; composing it must rebuild member 2's chunks
/// from the other three and give back the volume make-set scattered: Samples/images/p2-ext4.img
/// followed by 256 KiB of numbered text lines, whose sum SHA256SUMS records.
@Suite struct RaidSampleTests {
    static let sample = SampleFolder("raid5-degraded")
    static var folder: URL { sample.url }

    static func text(_ name: String) throws -> String { try sample.text(name) }

    static func sums() throws -> [String: (sha256: String, bytes: UInt64?)] { try sample.sums() }

    static func load() throws -> TableLoader.Loaded {
        let sums = try sums()
        var devices: [String: String] = [:]
        for m in [0, 1, 3] {
            devices["M\(m)"] = GoldenImages.unpacked(folder.appendingPathComponent("member\(m).img.gz").path, sha256: sums["member\(m).img"]?.sha256)
        }
        return try loadTables(try text("degraded.table"), devices: devices)
    }

    @Test func theDegradedSetComposesToTheRecordedVolume() throws {
        let want = try #require(try Self.sums()["degraded.table"])
        let bytes = try readAll(SectorMap(top: try Self.load().top))
        #expect(UInt64(bytes.count) == want.bytes)
        #expect(sha256(bytes) == want.sha256)
        // The filesystem at its start is the sample ext4, byte for byte, though a third of its chunks
        // were on the dead member.
        let fs = readBytes(packageRootURL.appendingPathComponent("Samples/images/p2-ext4.img").path)
        #expect(Array(bytes[0..<fs.count]) == fs)
        let tail = String(decoding: bytes[fs.count...], as: UTF8.self)
        #expect(tail.hasPrefix("raid5 sample, line 00000: rebuilt from parity where member 2 held it\n"))
    }

    @Test func theMapSaysWhichChunksAreRebuiltAndFromWhich() throws {
        let map = SectorMap(top: try Self.load().top)
        let rows = extents(map).map(summary)
        // raid5_ls over four: row r has parity on member 3 - r % 4, so member 2 holds data in rows 0,
        // 2 and 3 (array chunks 2, 6 and 10) and parity in row 1.
        let rebuilt = rows.filter { $0.contains("rebuilt") }
        #expect(rebuilt.map { $0.split(separator: " ").prefix(2).joined(separator: " ") } == ["256 128", "768 128", "1280 128"])
        #expect(rebuilt.allSatisfy { $0.contains("from members 0 (M0), 1 (M1), 3 (M3)") })
        #expect(rows.filter { !$0.contains("rebuilt") }.count == 9)
    }

    @Test func theHealthyTableNamesTheDroppedMember() throws {
        let healthy = try Self.text("healthy.table")
        let degraded = try Self.text("degraded.table")
        #expect(healthy.replacingOccurrences(of: "- M2 ", with: "- - ") == degraded)
    }
}
