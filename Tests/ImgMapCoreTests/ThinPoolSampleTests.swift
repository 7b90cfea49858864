import Foundation
import Testing

@testable import ImgMapCore

/// Samples/thin-pool: a pool of 12 data blocks with two thin volumes, stored gzip'd. Thin volume 1
/// composes to Samples/images/p2-ext4.img, volume 2 (a snapshot of it with three blocks of its own and
/// one never written) to the sum Samples/thin-pool/SHA256SUMS records; the metadata is what
/// `thin_restore` made of the committed pool.xml.
@Suite struct ThinPoolSampleTests {
    static let sample = SampleFolder("thin-pool")
    static var folder: URL { sample.url }

    static func text(_ name: String) throws -> String { try sample.text(name) }

    static func sums() throws -> [String: (sha256: String, bytes: UInt64?)] { try sample.sums() }

    func load(_ table: String) throws -> TableLoader.Loaded {
        let sums = try Self.sums()
        let meta = GoldenImages.unpacked(Self.folder.appendingPathComponent("metadata.img.gz").path, sha256: sums["metadata.img"]?.sha256)
        let data = GoldenImages.unpacked(Self.folder.appendingPathComponent("data.img.gz").path, sha256: sums["data.img"]?.sha256)
        return try loadTables(try Self.text(table), lower: [("pool", try Self.text("pool.table"))], devices: ["META": meta, "DATA": data])
    }

    @Test(arguments: ["thin1.table", "thin2.table"])
    func eachThinVolumeComposesToItsRecordedSum(_ table: String) throws {
        let want = try #require(try Self.sums()[table])
        let bytes = try readAll(SectorMap(top: try load(table).top))
        #expect(UInt64(bytes.count) == want.bytes)
        #expect(sha256(bytes) == want.sha256)
    }

    @Test func volumeOneIsTheSampleFilesystemAndVolumeTwoSharesItsBlocks() throws {
        let one = try #require(try load("thin1.table").top.segments[0].target as? ThinTarget)
        let two = try #require(try load("thin2.table").top.segments[0].target as? ThinTarget)
        #expect(sha256(try readAll(SectorMap(top: try load("thin1.table").top))) == sha256(file: packageRootURL.appendingPathComponent("Samples/images/p2-ext4.img").path))
        let shared = (0..<10 as Range<UInt64>).filter { one.mappings.dataBlock(for: $0) != nil && one.mappings.dataBlock(for: $0) == two.mappings.dataBlock(for: $0) }
        #expect(shared == [0, 1, 3, 4, 5, 7])
        #expect(two.mappings.dataBlock(for: 8) == nil, "block 8 of volume 2 was never written: zeros")
        #expect(extents(SectorMap(top: try load("thin2.table").top), from: 1024, to: 1152).map(summary) == ["1024 128 zero"])
    }
}
