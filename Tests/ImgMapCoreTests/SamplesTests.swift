import Foundation
import Testing

@testable import ImgMapCore

/// The README's sample compositions, run as a user would from the repository top: each table composes
/// to the sha256 that Samples/SHA256SUMS records, the map names the sample images, and the images are
/// left as they were.
@Suite struct SamplesTests {
    /// `# composed SHA256 BYTES TABLE [TOP]` lines of Samples/SHA256SUMS (TOP: the top device of a dump).
    static let expected: [(table: String, sha256: String, bytes: UInt64, top: String?)] = {
        let text = (try? String(contentsOf: packageRootURL.appendingPathComponent("Samples/SHA256SUMS"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count == 5 || fields.count == 6, fields[0] == "#", fields[1] == "composed", let bytes = UInt64(fields[3]) else { return nil }
            return (String(fields[4]), String(fields[2]), bytes, fields.count == 6 ? String(fields[5]) : nil)
        }
    }()

    @Test func samplesRecordEveryComposition() {
        #expect(Self.expected.map(\.table) == ["Samples/disk.table", "Samples/raid0.table", "Samples/nas/layout.txt"])
        #expect(Self.expected.map(\.top) == [nil, nil, "vg_nas-data"])
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

/// Samples/nas: the README's "From images to tables" example. The four disks are the probe fixture's
/// (made by the real mdadm and lvm), probe's dump is Samples/nas/layout.txt, and its LV composes to the
/// digest the kernel read from /dev/vg_nas/data.
@Suite struct NASSampleTests {
    static let disks = ["nas1", "nas2", "nas3", "nas4"]

    /// The disks unpacked into `folder`/Samples/nas, as `gzip -dk` leaves them at the repository top.
    func unpack(into folder: TemporaryDirectory) throws -> [String] {
        try FileManager.default.createDirectory(atPath: folder.file("Samples/nas"), withIntermediateDirectories: true)
        var paths: [String] = []
        for disk in Self.disks {
            let path = folder.file("Samples/nas/\(disk).img")
            let gz = packageRootURL.appendingPathComponent("Samples/nas/\(disk).img.gz").path
            #expect(try shell("gzip -dc '\(gz)' > '\(path)'") == 0)
            paths.append(path)
        }
        return paths
    }

    @Test func theDisksAreTheProbeFixturesOwn() {
        for disk in Self.disks {
            let sample = readBytes(packageRootURL.appendingPathComponent("Samples/nas/\(disk).img.gz").path)
            #expect(!sample.isEmpty)
            #expect(sample == readBytes(probeFixturesURL.appendingPathComponent("nas/\(disk).img.gz").path), "\(disk)")
        }
    }

    @Test func probeWritesTheLayoutAndItsLVComposesToTheRecordedDigest() throws {
        let want = try #require(SamplesTests.expected.first { $0.table == "Samples/nas/layout.txt" })
        let folder = TemporaryDirectory("imgmap-nas-sample")
        let images = try unpack(into: folder)
        let result = try probe(images)
        #expect(result.problems.isEmpty, "\(result.problems)")
        let layout = try String(contentsOf: packageRootURL.appendingPathComponent(want.table), encoding: .utf8)
        #expect(result.dump.replacingOccurrences(of: folder.path + "/", with: "") == layout)
        #expect(try composedDigest(result.dump, top: try #require(want.top)) == want.sha256)
        #expect(want.sha256 == kernelResult("nas", "vg_nas_data.sha256"))
        #expect(String(want.bytes) == kernelResult("nas", "vg_nas_data.size"))
    }

    /// The README's console block, each `$ ` command run by /bin/sh in a folder laid out like the
    /// repository top, printing what the README shows under it.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: imgmapBinary), "imgmap binary not built"))
    func theReadmeExampleRunsAsPrinted() throws {
        let readme = try String(contentsOf: packageRootURL.appendingPathComponent("README.md"), encoding: .utf8)
        let section = try #require(readme.components(separatedBy: "## From images to tables").dropFirst().first)
        let block = try #require(section.components(separatedBy: "```console\n").dropFirst().first?.components(separatedBy: "\n```").first)
        var steps: [(command: String, output: String)] = []
        for line in block.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("$ ") { steps.append((String(line.dropFirst(2)), "")) }
            else { steps[steps.count - 1].output += line + "\n" }
        }
        #expect(steps.map { $0.command.split(separator: " ").first.map(String.init) ?? "" } == ["gzip", "imgmap", "cat", "imgmap", "sha256sum"])
        let folder = TemporaryDirectory("imgmap-nas-readme")
        try FileManager.default.createDirectory(atPath: folder.file("Samples/nas"), withIntermediateDirectories: true)
        for disk in Self.disks {
            try FileManager.default.copyItem(atPath: packageRootURL.appendingPathComponent("Samples/nas/\(disk).img.gz").path,
                                             toPath: folder.file("Samples/nas/\(disk).img.gz"))
        }
        for step in steps {
            let command = step.command.hasPrefix("imgmap ") ? "\"$IMGMAP\"" + step.command.dropFirst(6) : step.command
            let run = try shell(command, in: folder)
            #expect(run.status == 0, "\(step.command): \(run.stderr)")
            #expect(run.out == step.output, "\(step.command)")
        }
        #expect(steps.last?.output == "\(try #require(SamplesTests.expected.last?.sha256))  data.img\n")
    }
}
