import Foundation
import Testing

@testable import ImgMapCore

/// The README's sample compositions, run as a user would from the repository top: each table composes
/// to the sha256 that Samples/SHA256SUMS records, the map names the sample images, and the images are
/// left as they were.
@Suite struct SamplesTests {
    /// `# composed SHA256 BYTES TABLE` lines of Samples/SHA256SUMS.
    static let expected: [(table: String, sha256: String, bytes: UInt64)] = {
        let text = (try? String(contentsOf: packageRootURL.appendingPathComponent("Samples/SHA256SUMS"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count == 5, fields[0] == "#", fields[1] == "composed", let bytes = UInt64(fields[3]) else { return nil }
            return (String(fields[4]), String(fields[2]), bytes)
        }
    }()

    @Test func samplesRecordBothCompositions() {
        #expect(Self.expected.map(\.table) == ["Samples/disk.table", "Samples/raid0.table"])
    }

    @Test(arguments: ["Samples/disk.table", "Samples/raid0.table"])
    func sampleComposesToItsRecordedDigest(_ table: String) throws {
        let want = try #require(Self.expected.first { $0.table == table })
        let root = packageRootURL.path
        // The tables name images relative to the repository top, as the README runs them; here they are
        // read with the top prefixed, so the test does not depend on the working directory.
        var loader = TableLoader(bindings: Bindings(tables: [.init(name: nil, path: table)]))
        loader.readTable = { path in
            let text = try String(contentsOfFile: root + "/" + path, encoding: .utf8)
            return Array(text.replacingOccurrences(of: " Samples/", with: " \(root)/Samples/").utf8)
        }
        let loaded = try loader.load()
        let images = loaded.leaves.map(\.path)
        #expect(images.count == 3)
        let before = images.map { sha256(file: $0) }
        let folder = TemporaryDirectory("imgmap-samples")
        let out = try OutputFile(path: folder.file("out.img"), inputs: loaded.leaves.map(\.image))
        var options = Compose.Options(digest: .sha256)
        options.sparse = .always
        let report = try Compose(map: SectorMap(top: loaded.top), options: options).run(to: out)
        try out.commit()
        #expect(report.bytes == want.bytes)
        #expect(report.digest == want.sha256)
        #expect(sha256(file: folder.file("out.img")) == want.sha256)
        #expect(images.map { sha256(file: $0) } == before)
    }
}
