import Foundation
import Testing

@testable import ImgMapCore

// LUKS headers written by the real cryptsetup (rootless on plain files): probe reports version, UUID,
// cipher and payload offset as `cryptsetup luksDump` shows them, and maps nothing without a secret.
// With one, the volume becomes the crypt line `imgmap luks` prints, and probe reads on inside it: the
// LVM fixture's PV `pva` written into a LUKS2 container by `imgmap scatter --luks` gives vg0 back.

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

    static let uuid = "11111111-2222-3333-4444-555555555555"
    static let volumeKey = (0..<64).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) }
    static var volumeKeyHex: String { volumeKey.map { String(format: "%02x", $0) }.joined() }

    /// A 32 MiB LUKS2 container (16 MiB of header, 16 MiB of plaintext: pva's size; cryptsetup picks
    /// 4096-byte crypto units on a file, so the crypt line has sector_size:4096) keyed with
    /// `volumeKey` and passphrase `pw`, holding the LVM fixture's pva written through imgmap's own
    /// crypt write path. Returns the container, the unencrypted fixture images and the passphrase file.
    func containerWithPVA(_ dir: TemporaryDirectory) throws -> (container: String, images: [String: String], pass: String) {
        let images = try unpackProbeFixtures("lvm", into: dir)
        let (container, pass) = try Self.container(holding: images["pva"]!, in: dir)
        return (container, images, pass)
    }

    /// That container (`crypt.img`, passphrase file `pw`) holding the 16 MiB image at `path`.
    static func container(holding path: String, in dir: TemporaryDirectory) throws -> (container: String, pass: String) {
        let container = dir.sparseImage("crypt.img", sectors: 65536)
        let pass = dir.write("pw", "pw\n")
        let vk = dir.file("vk")
        try Data(volumeKey).write(to: URL(fileURLWithPath: vk))
        #expect(try shell("printf pw | cryptsetup luksFormat --type luks2 -q --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-size 512 --volume-key-file '\(vk)' --key-file - --uuid \(uuid) '\(container)' >/dev/null 2>&1") == 0)
        let table = dir.write("plain.table", "0 32768 linear plain 0\n")
        let write = try imgmap(["scatter", table, path, "--luks", "plain=\(container)", "--passphrase-file", pass], in: dir)
        #expect(write.status == 0, "\(write.stderr)")
        return (container, pass)
    }

    func secret(_ text: String) -> SecretBytes { SecretBytes(copying: Array(text.utf8)) }

    @Test func anOpenedLUKSVolumeIsItsCryptLineAndTheVGInsideComposesAsWithoutEncryption() throws {
        let dir = TemporaryDirectory()
        let (container, images, pass) = try containerWithPVA(dir)
        let result = try Prober(images: [container, images["pvb"]!], options: .init(passphrase: secret("pw"), showKeys: true)).run()
        #expect(result.problems.isEmpty, "\(result.problems)")
        let lines = dumpLines(result, dir)
        #expect(lines.first == "luks-\(Self.uuid): 0 32768 crypt aes-xts-plain64 \(Self.volumeKeyHex) 0 crypt.img 32768 1 sector_size:4096")
        let plain = try probe([images["pva"]!, images["pvb"]!])
        // The VG's lines are the unencrypted fixture's, with pva's path replaced by the crypt device.
        #expect(Array(lines.dropFirst()) == dumpLines(plain, dir).map { $0.replacingOccurrences(of: " pva.img ", with: " luks-\(Self.uuid) ") })
        #expect(lines.contains { $0.hasPrefix("vg0-my--data: ") && $0.contains(" luks-\(Self.uuid) ") })
        for (device, tag) in [("vg0-my--data", "vg0_my-data"), ("vg0-root", "vg0_root"), ("vg0-str", "vg0_str")] {
            #expect(try composedDigest(result.dump, top: device) == kernelResult("lvm", "\(tag).sha256"), "\(device)")
        }
        let header = try #require(luks(result))
        #expect(header["opened"] == true)
        #expect(header["device"] == .string("luks-\(Self.uuid)"))
        // Without --show-keys the line is the one `imgmap luks` prints: the key as zeros.
        let hidden = try Prober(images: [container, images["pvb"]!], options: .init(passphrase: secret("pw"))).run()
        let luksLine = try imgmap(["luks", container, "--passphrase-file", pass], in: dir)
        #expect(hidden.devices.first?.lines.map(\.text) == [luksLine.out.trimmingCharacters(in: .newlines)])
        #expect(hidden.devices.first?.lines.first?.arguments[1] == String(repeating: "0", count: 128))
        #expect(!hidden.report.text().contains(Self.volumeKeyHex))
        #expect(!(hidden.notes + hidden.problems).joined().contains(Self.volumeKeyHex))
    }

    @Test func aWrongPassphraseIsAProblemNamingTheVolumeAndTheHeaderIsStillReported() throws {
        let dir = TemporaryDirectory()
        let (container, images, _) = try containerWithPVA(dir)
        let result = try Prober(images: [container, images["pvb"]!], options: .init(passphrase: secret("not it"))).run()
        #expect(result.problems.first == "\(container): no keyslot opens with this passphrase (tried keyslot 0)")
        // Nothing else changes: vg0 misses pva, as when the container is not given at all.
        #expect(Array(result.problems.dropFirst()) == (try probe([images["pvb"]!])).problems)
        #expect(result.devices.isEmpty)
        let header = try #require(luks(result))
        #expect(header["uuid"] == .string(Self.uuid))
        #expect(header["opened"] == false)
        #expect(!result.notes.contains { $0.contains("not opened") })
    }

    @Test func luksOnAGPTPartitionIsOpenedOverThePartitionAndProbedInside() throws {
        guard toolExists("sfdisk") else { return }
        let dir = TemporaryDirectory()
        let (container, images, _) = try containerWithPVA(dir)
        let disk = dir.sparseImage("laptop.img", sectors: 2048 + 65536 + 2048)
        #expect(try shell("printf 'label: gpt\\nstart=2048, size=65536\\n' | sfdisk -q '\(disk)' >/dev/null 2>&1") == 0)
        #expect(try shell("dd if='\(container)' of='\(disk)' bs=1M seek=1 conv=notrunc,sparse status=none") == 0)
        let result = try Prober(images: [disk, images["pvb"]!], options: .init(passphrase: secret("pw"), showKeys: true)).run()
        #expect(result.problems.isEmpty, "\(result.problems)")
        let lines = dumpLines(result, dir)
        #expect(Array(lines.prefix(2)) == [
            "laptopp1: 0 65536 linear laptop.img 2048",
            "luks-\(Self.uuid): 0 32768 crypt aes-xts-plain64 \(Self.volumeKeyHex) 0 laptopp1 32768 1 sector_size:4096",
        ])
        #expect(try composedDigest(result.dump, top: "vg0-root") == kernelResult("lvm", "vg0_root.sha256"))
        let passFromStdin = try imgmap(["probe", "laptop.img", "pvb.img", "--passphrase-file", "-", "--show-keys", "-o", "layout.txt"], stdin: "pw\n", in: dir)
        #expect(passFromStdin.status == 0, "\(passFromStdin.stderr)")
        let compose = try imgmap(["compose", "layout.txt", "--top", "vg0-my--data", "-o", "data.img"], in: dir)
        #expect(compose.status == 0, "\(compose.stderr)")
        #expect(sha256(file: dir.file("data.img")) == kernelResult("lvm", "vg0_my-data.sha256"))
    }

    @Test func probeExitsWith65WhenThePassphraseOpensNoVolume() throws {
        let dir = TemporaryDirectory()
        let path = try format(dir, "l2.img", "luks2")
        let wrong = dir.write("wrong", "nope\n")
        let run = try imgmap(["probe", path, "--passphrase-file", wrong, "--json"], in: dir)
        #expect(run.status == 65)
        #expect(run.stderr.contains("imgmap: probe: \(path): no keyslot opens with this passphrase"))
        #expect(run.out.contains("\"opened\": false"))
    }
}
