import Foundation
import Testing
@testable import ImgMapCore

/// Replays the inputs in Fixtures/fuzz/TARGET/ (crashes the fuzzers found, and hand-made edge cases)
/// through the same entry points as Fuzz/: each must be accepted or refused with an error users can
/// read — never a crash, a trap or a hang.
@Suite struct FuzzRegressionTests {
    static func inputs(_ target: String) -> [String] {
        let folder = fixturesURL.appendingPathComponent("fuzz").appendingPathComponent(target)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.sorted().map { folder.appendingPathComponent($0).path }
    }

    static func bytes(_ path: String) -> [UInt8] {
        (try? [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))) ?? []
    }

    @Test(arguments: inputs("table"))
    func tableInputIsAcceptedOrRefusedCleanly(_ path: String) {
        let error = FuzzEntryPoints.tables(Self.bytes(path))
        #expect(error == nil || error is ImgMapFailure, "\(path): \(String(describing: error))")
    }

    @Test(arguments: inputs("bmap"))
    func bmapInputIsAcceptedOrRefusedCleanly(_ path: String) {
        let error = FuzzEntryPoints.bmap(Self.bytes(path))
        #expect(error == nil || error is ImgMapFailure, "\(path): \(String(describing: error))")
    }

    @Test(arguments: inputs("bgzf"))
    func bgzfInputIsAcceptedOrRefusedCleanly(_ path: String) throws {
        let folder = TemporaryDirectory("imgmap-fuzz-replay")
        let scratchPath = folder.file("scratch.gz")
        let fd = open(scratchPath, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        try #require(fd >= 0)
        let error = FuzzEntryPoints.bgzf(Self.bytes(path), scratch: ImageFile(descriptor: fd, path: scratchPath, writable: true))
        #expect(error == nil || error is ImgMapFailure, "\(path): \(String(describing: error))")
    }

    @Test func everyTargetHasRegressionInputs() {
        for target in ["table", "bmap", "bgzf"] {
            #expect(!Self.inputs(target).isEmpty, "Fixtures/fuzz/\(target) is empty")
        }
    }
}
