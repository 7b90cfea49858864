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

    @Test(arguments: inputs("gzi"))
    func gziInputIsAcceptedOrRefusedCleanly(_ path: String) {
        let error = FuzzEntryPoints.gzi(Self.bytes(path))
        #expect(error == nil || error is ImgMapFailure, "\(path): \(String(describing: error))")
    }

    @Test(arguments: inputs("bmap-verify"))
    func bmapVerifyInputIsAcceptedOrRefusedCleanly(_ path: String) {
        let error = FuzzEntryPoints.bmapVerify(Self.bytes(path))
        #expect(error == nil || error is ImgMapFailure, "\(path): \(String(describing: error))")
    }

    @Test(arguments: inputs("nbd"))
    func nbdSessionEndsCleanly(_ path: String) {
        let error = FuzzEntryPoints.nbdSession(Self.bytes(path))
        #expect(error == nil, "\(path): \(String(describing: error))")
    }

    /// The gzi target's own fixture: its true index is accepted (and gives the true bytes), the same
    /// index with uncompressed offsets 512 bytes early is refused when a member is read.
    @Test func gziTargetAcceptsTheTrueIndexAndRefusesAShiftedOne() {
        let index = FuzzEntryPoints.gziFixture.index
        #expect(index.entries.count >= 3)
        #expect(FuzzEntryPoints.gzi(index.gziBytes()) == nil)
        // From the second entry on, 512 bytes early: each gap still looks like a member's worth.
        let shifted = BGZFIndex(entries: index.entries.enumerated().map { i, e in
            .init(compressedOffset: e.compressedOffset, uncompressedOffset: e.uncompressedOffset - (i >= 1 ? 512 : 0))
        })
        let error = FuzzEntryPoints.gzi(shifted.gziBytes())
        #expect(error is BGZFError, "\(String(describing: error))")
    }

    @Test func everyTargetHasRegressionInputs() {
        for target in ["table", "bmap", "bgzf", "gzi", "bmap-verify", "nbd"] {
            #expect(!Self.inputs(target).isEmpty, "Fixtures/fuzz/\(target) is empty")
        }
    }
}
