import Foundation
import Testing

@testable import ImgMapCore

// LUKS headers written by the real cryptsetup (rootless on plain files): probe reports version, UUID,
// cipher and payload offset as `cryptsetup luksDump` shows them, and maps nothing (no keys are read).

@Suite(.disabled(if: !toolExists("cryptsetup"), "cryptsetup missing"))
struct LUKSProbeTests {
    func format(_ dir: TemporaryDirectory, _ name: String, _ type: String) throws -> String {
        let path = dir.sparseImage(name, sectors: 40960)
        let status = try shell("printf pw | cryptsetup luksFormat --type \(type) -q --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file - --uuid 11111111-2222-3333-4444-555555555555 '\(path)' >/dev/null 2>&1")
        #expect(status == 0)
        return path
    }

    func luks(_ result: ProbeResult) -> JSONValue? {
        if case .array(let devices)? = result.report["devices"] { return devices.first?["luks"] }
        return nil
    }

    @Test func luks1HeaderIsReported() throws {
        let dir = TemporaryDirectory()
        let path = try format(dir, "l1.img", "luks1")
        let result = try probe([path])
        #expect(result.devices.isEmpty)
        #expect(result.recognised == 1)
        let header = try #require(luks(result))
        #expect(header["version"] == .number(1))
        #expect(header["uuid"] == "11111111-2222-3333-4444-555555555555")
        #expect(header["cipher"] == "aes-xts-plain64")
        #expect(header["payload_offset"] == .unsigned(4096))
        #expect(result.notes == ["\(path): LUKS1 11111111-2222-3333-4444-555555555555 (aes-xts-plain64, payload at sector 4096): not opened; probe reads no keys"])
    }

    @Test func luks2HeaderIsReportedFromItsJSONArea() throws {
        let dir = TemporaryDirectory()
        let path = try format(dir, "l2.img", "luks2")
        let header = try #require(luks(try probe([path])))
        #expect(header["version"] == .number(2))
        #expect(header["cipher"] == "aes-xts-plain64")
        #expect(header["payload_offset"] == .unsigned(32768))  // cryptsetup 2.6: 16 MiB of header
    }

    @Test func aCorruptLUKS2PrimaryHeaderFallsBackToTheSecondary() throws {
        let dir = TemporaryDirectory()
        let path = try format(dir, "l2.img", "luks2")
        patch(path, at: 4096 + 2, [0x20])  // inside the JSON area: the sha256 no longer matches
        let result = try probe([path])
        #expect(result.problems.isEmpty, "\(result.problems)")
        #expect(luks(result)?["uuid"] == "11111111-2222-3333-4444-555555555555")
        #expect(result.notes.first == "\(path): LUKS2: the primary header is invalid (checksum mismatch (sha256 over the header and JSON area)); the secondary at byte 16384 is used")
    }
}
