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
        /// Wave-2 devices: another name's pattern, all zeros, or a gzip'd fixture beside case.json.
        var pattern: String?
        var zeros: Bool?
        var fixture: String?
        var sha256: String?
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

    static let folder = fixturesURL.appendingPathComponent("golden")
    /// The kernel's vectors for the newer targets, one subfolder per target (`snapshot/CASE`).
    static let wave2Folder = fixturesURL.appendingPathComponent("golden-wave2")

    /// The folder holding case `name`: wave-2 cases are named `TARGET/CASE`.
    static func folder(of name: String) -> URL {
        name.contains("/") ? wave2Folder.appendingPathComponent(name) : folder.appendingPathComponent(name)
    }

    static func named(_ name: String) throws -> GoldenCase {
        let data = try Data(contentsOf: folder(of: name).appendingPathComponent("case.json"))
        return try JSONDecoder().decode(GoldenCase.self, from: data)
    }

    /// Wave-2 case names (`TARGET/CASE`) with the given mode, sorted.
    static func wave2Names(mode: String) -> [String] {
        let targets = ((try? FileManager.default.contentsOfDirectory(atPath: wave2Folder.path)) ?? []).sorted()
        return targets.flatMap { target in
            ((try? FileManager.default.contentsOfDirectory(atPath: wave2Folder.appendingPathComponent(target).path)) ?? [])
                .sorted().map { "\(target)/\($0)" }
        }.filter { (try? named($0).mode) == mode }
    }

    /// Case folder names with the given mode, sorted.
    static func names(mode: String) -> [String] {
        let all = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return all.sorted().filter { (try? named($0).mode) == mode }
    }

    /// The generated (cached, shared) image of each device.
    var generatedImages: [String: String] { images(case: nil) }

    /// The image of each device: generated from its (or its `pattern`'s) name, all zeros, or the case's
    /// fixture unpacked (cached, shared; copy before writing).
    func images(case name: String?) -> [String: String] {
        var images: [String: String] = [:]
        for (device, spec) in devices {
            if let fixture = spec.fixture, let name {
                images[device] = GoldenImages.unpacked(Self.folder(of: name).appendingPathComponent(fixture).path, sha256: spec.sha256)
            } else if spec.zeros == true {
                images[device] = GoldenImages.zeros(sectors: spec.sectors, extra: spec.extra_bytes ?? 0)
            } else {
                images[device] = GoldenImages.path(spec.pattern ?? device, sectors: spec.sectors, extra: spec.extra_bytes ?? 0)
            }
        }
        return images
    }

    /// Bindings as `check` passes them: lower tables in order, the top last, `--dev NAME=IMAGE`, with the
    /// generated images unless `images` gives other paths (copies to write into).
    func bindings(case name: String, images given: [String: String]? = nil) -> (Bindings, images: [String: String]) {
        let images = given ?? self.images(case: name)
        let caseFolder = Self.folder(of: name)
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
        #expect(Self.readCases.count == 25)
        #expect(Self.rejectCases.count == 20)
        #expect(GoldenCase.names(mode: "write").count == 8)
    }

    static let wave2ReadCases = GoldenCase.wave2Names(mode: "read")
    static let wave2RejectCases = GoldenCase.wave2Names(mode: "reject")
    static let wave2WriteCases = GoldenCase.wave2Names(mode: "write")

    /// How many vectors of each family and mode ../shared/golden/wave2 held when they were copied here,
    /// so a case lost in a copy fails by name.
    static let wave2Counts: [String: [String: Int]] = [
        "crypt": ["read": 9, "reject": 4, "write": 3],
        "mirror": ["read": 2],
        "multipath": ["read": 2],
        "raid": ["read": 13, "reject": 4, "write": 3],
        "snapshot": ["read": 4, "write": 3],
        "thin": ["read": 2, "reject": 1],
        "verity": ["read": 3, "reject": 1],
    ]

    @Test(arguments: wave2Counts.keys.sorted())
    func everyWave2CaseIsPresent(_ family: String) {
        let count = { (names: [String]) in names.filter { $0.hasPrefix(family + "/") }.count }
        let expected = Self.wave2Counts[family]!
        #expect(count(Self.wave2ReadCases) == expected["read", default: 0])
        #expect(count(Self.wave2RejectCases) == expected["reject", default: 0])
        #expect(count(Self.wave2WriteCases) == expected["write", default: 0])
    }

    @Test(arguments: readCases + wave2ReadCases)
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
        // verity's errors come from the data (a block whose digest fails), not from the map.
        #expect(map.errorRanges().ranges == (name.hasPrefix("verity/") ? [] : expectedErrors))
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

    /// The images a write case starts from, copied into `folder` (fixtures and zeros included).
    static func writableCopies(_ golden: GoldenCase, case name: String, in folder: TemporaryDirectory) throws -> [String: String] {
        var copies: [String: String] = [:]
        for (device, path) in golden.images(case: name) {
            copies[device] = folder.file("\(device).img")
            try FileManager.default.copyItem(atPath: path, toPath: copies[device]!)
        }
        return copies
    }

    @Test(arguments: wave2WriteCases)
    func wave2WriteCaseLeavesTheKernelsImages(_ name: String) throws {
        let golden = try GoldenCase.named(name)
        let folder = TemporaryDirectory()
        let copies = try Self.writableCopies(golden, case: name, in: folder)
        let (bindings, _) = golden.bindings(case: name, images: copies)
        let loaded = try TableLoader(bindings: bindings).load()
        let payloadSectors = try #require(golden.payload?.sectors)
        let payload = GoldenImages.path("W", sectors: payloadSectors)
        let report = try scatterFile(SectorMap(top: loaded.top), input: payload, .init(seek: Sector(golden.seek ?? 0), onError: .skip))
        for (device, hash) in try #require(golden.devices_after) {
            #expect(sha256(file: copies[device]!) == hash, "\(name): image \(device)")
        }
        #expect(report.skipped.ranges == (golden.write_errors ?? []).map { SectorRange(start: $0[0], length: $0[1]) })
    }

    @Test(arguments: rejectCases + wave2RejectCases)
    func rejectCaseIsRefusedAtTheFaultyLine(_ name: String) throws {
        let golden = try GoldenCase.named(name)
        let (bindings, _) = golden.bindings(case: name)
        let fault = try #require(golden.fault)
        let reason = try #require(golden.reason)
        let error = try #require(failure { _ = try TableLoader(bindings: bindings).load() })
        let accepted = golden.exit_codes ?? [ExitStatus.dataError.rawValue]
        #expect(accepted.contains(error.exitStatus.rawValue))
        let faultPath = GoldenCase.folder(of: name).appendingPathComponent(fault.file).path
        #expect(error.description.hasPrefix("\(faultPath):\(fault.line): "), "\(error)")
        #expect(error.description.contains(reason), "\(error)")
    }
}

// The kernel's vectors for the newer targets (Fixtures/golden-wave2/<target>/<case>, copied from
// shared/golden/wave2): every case of every target folder, read, write and reject, as `check` runs
// them. Devices may be generated with another name's pattern, all zeros, or a gzip'd fixture.
struct GoldenWave2Case: Sendable, CustomStringConvertible {
    let target: String
    let name: String
    var description: String { "\(target)/\(name)" }

    static let root = fixturesURL.appendingPathComponent("golden-wave2")

    static var all: [GoldenWave2Case] {
        let targets = ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).sorted()
        return targets.flatMap { target in
            (((try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(target).path)) ?? []).sorted())
                .map { GoldenWave2Case(target: target, name: $0) }
        }
    }

    var folder: URL { Self.root.appendingPathComponent(target).appendingPathComponent(name) }

    struct Spec: Decodable {
        struct Device: Decodable {
            var sectors: UInt64
            var extra_bytes: UInt64?
            var pattern: String?
            var zeros: Bool?
            var fixture: String?
        }
        var devices: [String: Device]
        var tables: [GoldenCase.TableSpec]
        var mode: String
        var size_bytes: UInt64?
        var sha256: String?
        var errors: [[UInt64]]?
        var reason: String?
        var fault: GoldenCase.Fault?
        var payload: GoldenCase.Payload?
        var seek: UInt64?
        var devices_after: [String: String]?
        var write_errors: [[UInt64]]?
    }

    func spec() throws -> Spec {
        try JSONDecoder().decode(Spec.self, from: Data(contentsOf: folder.appendingPathComponent("case.json")))
    }

    /// Each device's image, made in `scratch` (fixtures unpacked, zeros written) or shared (patterns).
    func images(_ spec: Spec, in scratch: TemporaryDirectory) throws -> [String: String] {
        var images: [String: String] = [:]
        for (device, d) in spec.devices {
            let path = scratch.file("\(device).img")
            if let fixture = d.fixture {
                let gz = folder.appendingPathComponent(fixture).path
                let status = runProcess("/bin/sh", ["-c", "gzip -dc '\(gz)' > '\(path)'"])
                #expect(status == 0, "unpacking \(gz)")
            } else if d.zeros == true {
                FileManager.default.createFile(atPath: path, contents: Data(count: Int(d.sectors * 512 + (d.extra_bytes ?? 0))))
            } else {
                try FileManager.default.copyItem(atPath: GoldenImages.path(d.pattern ?? device, sectors: d.sectors, extra: d.extra_bytes ?? 0), toPath: path)
            }
            images[device] = path
        }
        return images
    }

    func bindings(_ spec: Spec, _ images: [String: String]) -> Bindings {
        var files: [Bindings.TableFile] = []
        for (index, table) in spec.tables.enumerated() {
            files.append(.init(name: index == spec.tables.count - 1 ? nil : table.name, path: folder.appendingPathComponent(table.file).path))
        }
        return Bindings(tables: files, devices: images.sorted { $0.key < $1.key }.map { (token: $0.key, target: $0.value) })
    }
}

/// Runs `path args…`, returning its exit status.
func runProcess(_ path: String, _ arguments: [String]) -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    do { try process.run() } catch { return -1 }
    process.waitUntilExit()
    return process.terminationStatus
}

struct GoldenWave2Tests {
    static let cases = GoldenWave2Case.all

    @Test func theRaidMirrorAndMultipathVectorsArePresent() {
        #expect(Self.cases.filter { ["raid", "mirror", "multipath"].contains($0.target) }.count == 24)
    }

    @Test(arguments: cases)
    func caseBehavesAsTheKernelDid(_ golden: GoldenWave2Case) throws {
        let spec = try golden.spec()
        let scratch = TemporaryDirectory()
        let images = try golden.images(spec, in: scratch)
        let bindings = golden.bindings(spec, images)
        switch spec.mode {
        case "reject":
            let fault = try #require(spec.fault)
            let reason = try #require(spec.reason)
            let error = try #require(failure { _ = try TableLoader(bindings: bindings).load() })
            #expect(error.exitStatus == .dataError)
            let faultPath = golden.folder.appendingPathComponent(fault.file).path
            #expect(error.description.hasPrefix("\(faultPath):\(fault.line): "), "\(error)")
            #expect(error.description.contains(reason), "\(error)")
        case "read":
            let before = images.mapValues { sha256(file: $0) }
            let loaded = try TableLoader(bindings: bindings).load()
            let map = SectorMap(top: loaded.top)
            let outPath = scratch.file("out.bin")
            let out = try OutputFile(path: outPath, inputs: loaded.leaves.map(\.image))
            let report = try Compose(map: map, options: .init(onError: .zero)).run(to: out)
            try out.commit()
            #expect(fileSize(outPath) == spec.size_bytes)
            #expect(sha256(file: outPath) == spec.sha256)
            #expect(report.errors.ranges == (spec.errors ?? []).map { SectorRange(start: $0[0], length: $0[1]) })
            #expect(images.mapValues { sha256(file: $0) } == before)
        case "write":
            let loaded = try TableLoader(bindings: bindings).load()
            let payloadSectors = try #require(spec.payload?.sectors)
            let payload = GoldenImages.path("W", sectors: payloadSectors)
            let report = try scatterFile(SectorMap(top: loaded.top), input: payload,
                                         .init(seek: Sector(spec.seek ?? 0), onError: .skip))
            for (device, hash) in try #require(spec.devices_after) {
                #expect(sha256(file: images[device]!) == hash, "\(golden): image \(device)")
            }
            #expect(report.skipped.ranges == (spec.write_errors ?? []).map { SectorRange(start: $0[0], length: $0[1]) })
        default:
            Issue.record("unknown mode \(spec.mode)")
        }
    }
}
