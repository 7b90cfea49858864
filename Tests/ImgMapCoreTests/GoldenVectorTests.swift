import Foundation
import Testing

@testable import ImgMapCore

// The golden vectors (Fixtures/golden, copied from shared/golden/cases): what the Linux 6.1 kernel did
// with each table. Read cases are composed in-process and compared by size, SHA-256 and error ranges;
// reject cases must be refused with the kernel's phrase at the faulty FILE:LINE.

/// One case folder's `case.json` (the fields these tests use).
struct GoldenCase: Decodable, Sendable {
    struct DeviceSpec: Decodable, Sendable {
        var sectors: UInt64
        var extra_bytes: UInt64?
    }
    struct TableSpec: Decodable, Sendable {
        var name: String
        var file: String
    }
    struct Fault: Decodable, Sendable {
        var table: String
        var file: String
        var line: Int
    }

    var description: String
    var devices: [String: DeviceSpec]
    var tables: [TableSpec]
    var mode: String
    var size_bytes: UInt64?
    var sha256: String?
    var errors: [[UInt64]]?
    var reason: String?
    var fault: Fault?
    var exit_codes: [Int32]?
    struct Payload: Decodable, Sendable {
        var sectors: UInt64
    }
    var payload: Payload?
    var seek: UInt64?
    var devices_after: [String: String]?
    var write_errors: [[UInt64]]?

    /// Case names are paths under Fixtures: `golden/NAME` (shared/golden/cases) and
    /// `golden-wave2/TARGET/NAME` (shared/golden/wave2/TARGET, one subfolder per target).
    static let folder = fixturesURL

    /// The folders that hold cases: golden, then every golden-wave2 subfolder.
    static let caseFolders: [String] = {
        let wave2 = (try? FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent("golden-wave2").path)) ?? []
        return ["golden"] + wave2.sorted().map { "golden-wave2/\($0)" }
    }()

    static func named(_ name: String) throws -> GoldenCase {
        let data = try Data(contentsOf: folder.appendingPathComponent(name).appendingPathComponent("case.json"))
        return try JSONDecoder().decode(GoldenCase.self, from: data)
    }

    /// Case names (`folder/case`) with the given mode, sorted, from `folders` (default: all).
    static func names(mode: String, in folders: [String] = caseFolders) -> [String] {
        folders.flatMap { sub in
            let all = (try? FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent(sub).path)) ?? []
            return all.sorted().map { "\(sub)/\($0)" }.filter { (try? named($0).mode) == mode }
        }
    }

    /// The generated (cached, shared) image of each device.
    var generatedImages: [String: String] {
        var images: [String: String] = [:]
        for (device, spec) in devices {
            images[device] = GoldenImages.path(device, sectors: spec.sectors, extra: spec.extra_bytes ?? 0)
        }
        return images
    }

    /// Bindings as `check` passes them: lower tables in order, the top last, `--dev NAME=IMAGE`, with the
    /// generated images unless `images` gives other paths (copies to write into).
    func bindings(case name: String, images given: [String: String]? = nil) -> (Bindings, images: [String: String]) {
        let images = given ?? generatedImages
        let caseFolder = Self.folder.appendingPathComponent(name)
        var files: [Bindings.TableFile] = []
        for (index, table) in tables.enumerated() {
            let path = caseFolder.appendingPathComponent(table.file).path
            files.append(.init(name: index == tables.count - 1 ? nil : table.name, path: path))
        }
        let devs = images.sorted { $0.key < $1.key }.map { (token: $0.key, target: $0.value) }
        return (Bindings(tables: files, devices: devs), images)
    }
}

struct GoldenVectorTests {
    static let readCases = GoldenCase.names(mode: "read")
    static let rejectCases = GoldenCase.names(mode: "reject")

    @Test func everyGoldenCaseIsPresent() {
        #expect(GoldenCase.names(mode: "read", in: ["golden"]).count == 25)
        #expect(GoldenCase.names(mode: "reject", in: ["golden"]).count == 20)
        #expect(GoldenCase.names(mode: "write", in: ["golden"]).count == 8)
    }

    @Test func everyCryptGoldenCaseIsPresent() {
        let crypt = ["golden-wave2/crypt"]
        #expect(GoldenCase.names(mode: "read", in: crypt).count == 9)
        #expect(GoldenCase.names(mode: "reject", in: crypt).count == 4)
        #expect(GoldenCase.names(mode: "write", in: crypt).count == 3)
    }

    @Test(arguments: readCases)
    func readCaseComposesToTheKernelsBytes(_ name: String) throws {
        let golden = try GoldenCase.named(name)
        let (bindings, images) = golden.bindings(case: name)
        let before = images.mapValues { sha256(file: $0) }
        let loaded = try TableLoader(bindings: bindings).load()
        let map = SectorMap(top: loaded.top)
        #expect(map.size.bytes == golden.size_bytes)

        let folder = TemporaryDirectory()
        let outPath = folder.file("out.img")
        let out = try OutputFile(path: outPath, inputs: loaded.leaves.map(\.image))
        let report = try Compose(map: map, options: .init(onError: .zero)).run(to: out)
        try out.commit()

        let expectedErrors = (golden.errors ?? []).map { SectorRange(start: $0[0], length: $0[1]) }
        #expect(fileSize(outPath) == golden.size_bytes)
        #expect(sha256(file: outPath) == golden.sha256)
        #expect(report.errors.ranges == expectedErrors)
        #expect(map.errorRanges().ranges == expectedErrors)
        #expect(folder.entries() == ["out.img"])

        if !expectedErrors.isEmpty {
            let failPath = folder.file("fail.img")
            let failOut = try OutputFile(path: failPath, inputs: loaded.leaves.map(\.image))
            let error = #expect(throws: MappedReadError.self) {
                try Compose(map: map, options: .init(onError: .fail)).run(to: failOut)
            }
            failOut.discard()
            #expect(error?.range.start == expectedErrors[0].start)
            #expect(error?.exitStatus == .ioError)
            #expect(!fileExists(failPath))
            #expect(folder.entries() == ["out.img"])
        }
        #expect(images.mapValues { sha256(file: $0) } == before)
    }

    @Test(arguments: rejectCases)
    func rejectCaseIsRefusedAtTheFaultyLine(_ name: String) throws {
        let golden = try GoldenCase.named(name)
        let (bindings, _) = golden.bindings(case: name)
        let fault = try #require(golden.fault)
        let reason = try #require(golden.reason)
        let error = try #require(failure { _ = try TableLoader(bindings: bindings).load() })
        let accepted = golden.exit_codes ?? [ExitStatus.dataError.rawValue]
        #expect(accepted.contains(error.exitStatus.rawValue))
        let faultPath = GoldenCase.folder.appendingPathComponent(name).appendingPathComponent(fault.file).path
        #expect(error.description.hasPrefix("\(faultPath):\(fault.line): "), "\(error)")
        #expect(error.description.contains(reason), "\(error)")
    }
}
