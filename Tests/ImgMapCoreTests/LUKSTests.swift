import Foundation
import Testing

@testable import ImgMapCore

// LUKS volumes made by the real `cryptsetup luksFormat` on plain files (rootless): the volume key
// imgmap derives must be the one `cryptsetup luksDump --dump-volume-key` prints, and the table line
// must be cryptsetup's. Skipped (returns early) when cryptsetup is not installed.

struct LUKSTests {
    static let cryptsetup = toolPath("cryptsetup")

    /// A fresh LUKS image of `megabytes` MiB formatted with `options`, its passphrase file
    /// (`secret pass` and a newline; the newline is part of a --key-file passphrase).
    static func format(_ folder: TemporaryDirectory, _ options: [String], megabytes: Int = 20) throws -> (image: String, pass: String)? {
        guard let cryptsetup else { return nil }
        let image = folder.file("luks.img")
        _ = FileManager.default.createFile(atPath: image, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: image))
        try handle.truncate(atOffset: UInt64(megabytes) << 20)
        try handle.close()
        let pass = folder.write("pw", "secret pass\n")
        let result = try runTool([cryptsetup, "luksFormat", "--batch-mode", "--key-file", pass] + options + [image])
        #expect(result.status == 0, "\(result.error)")
        return (image, pass)
    }

    /// The volume key as cryptsetup dumps it, lower-case hex.
    static func dumpedKey(_ image: String, pass: String) throws -> String {
        let result = try runTool([cryptsetup!, "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", pass, image])
        var hex = ""
        var inKey = false
        for line in result.output.split(separator: "\n") {
            if line.hasPrefix("MK dump:") || line.hasPrefix("Volume key:") { inKey = true }
            else if inKey && !line.hasPrefix("\t") && !line.hasPrefix(" ") { inKey = false }
            guard inKey else { continue }
            let text = line.split(separator: ":", maxSplits: 1).count == 2 && (line.hasPrefix("MK") || line.hasPrefix("Volume"))
                ? line.split(separator: ":", maxSplits: 1)[1] : line[...]
            hex += text.filter { $0.isHexDigit }
        }
        return hex.lowercased()
    }

    static let formats: [(String, [String], String)] = [
        ("luks1 sha256", ["--type", "luks1", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"], "aes-xts-plain64"),
        ("luks1 sha1 cbc-essiv", ["--type", "luks1", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "sha1",
                                  "--cipher", "aes-cbc-essiv:sha256", "--key-size", "256"], "aes-cbc-essiv:sha256"),
        ("luks2 pbkdf2", ["--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"], "aes-xts-plain64"),
        ("luks2 argon2id 4096", ["--type", "luks2", "--pbkdf", "argon2id", "--pbkdf-memory", "32", "--pbkdf-force-iterations", "4",
                                 "--sector-size", "4096"], "aes-xts-plain64"),
        ("luks2 argon2i xts-256", ["--type", "luks2", "--pbkdf", "argon2i", "--pbkdf-memory", "32", "--pbkdf-force-iterations", "4",
                                   "--key-size", "256"], "aes-xts-plain64"),
    ]

    @Test(arguments: formats)
    func volumeKeyIsTheOneCryptsetupDumps(_ label: String, _ options: [String], _ cipher: String) throws {
        let folder = TemporaryDirectory()
        guard let (image, pass) = try Self.format(folder, options) else { return }
        let run = try imgmap(["luks", image, "--key-file", pass, "--show-keys"], in: folder)
        #expect(run.status == 0, "\(label): \(run.stderr)")
        let fields = run.out.split(separator: " ").map(String.init)
        #expect(fields.count >= 8 && fields[2] == "crypt" && fields[3] == cipher, "\(run.out)")
        let dumped = try Self.dumpedKey(image, pass: pass)
        #expect(fields.count >= 5 && fields[4] == dumped, "\(label)")
        #expect(fields.count >= 7 && fields[6] == image)
        if options.contains("4096") { #expect(run.out.hasSuffix(" 1 sector_size:4096\n"), "\(run.out)") }

        // Without --show-keys the key is zeros of its length; the JSON has no key either.
        let hidden = try imgmap(["luks", image, "--key-file", pass], in: folder)
        #expect(hidden.out.split(separator: " ")[4].allSatisfy { $0 == "0" })
        let json = try imgmap(["luks", image, "--key-file", pass, "--json"], in: folder)
        #expect(json.status == 0)
        #expect(!json.out.contains(fields[4]))
    }

    /// The printed line composes: a write of plaintext through it, read back through the crypt target
    /// with the key cryptsetup dumps, gives the plaintext; and the ciphertext is what Python's
    /// `cryptography` makes of it (XTS, tweak = sector).
    @Test func tableLineWritesAndReadsThePlaintext() throws {
        let folder = TemporaryDirectory()
        guard let (image, pass) = try Self.format(folder, ["--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]) else { return }
        let line = try imgmap(["luks", image, "--key-file", pass, "--show-keys"], in: folder)
        let table = folder.write("luks.table", line.out)
        let payload = folder.file("payload")
        _ = FileManager.default.createFile(atPath: payload, contents: Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ ($0 >> 9)) }))
        let write = try imgmap(["scatter", table, payload], in: folder)
        #expect(write.status == 0, "\(write.stderr)")
        let plain = folder.file("plain.img")
        let read = try imgmap(["compose", table, "-o", plain], in: folder)
        #expect(read.status == 0, "\(read.stderr)")
        let head = try FileHandle(forReadingFrom: URL(fileURLWithPath: plain)).readData(ofLength: 1 << 20)
        let written = try Data(contentsOf: URL(fileURLWithPath: payload))
        #expect(head == written)

        guard (try? runTool(["/usr/bin/python3", "-c", "import cryptography"]))?.status == 0 else { return }
        let fields = line.out.split(separator: " ").map(String.init)
        let script = """
        import sys
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        key = bytes.fromhex(sys.argv[1]); start = int(sys.argv[2]) * 512; unit = int(sys.argv[5])
        disk = open(sys.argv[3], 'rb').read(); plain = open(sys.argv[4], 'rb').read()
        # Each unit (sector_size bytes) is one XTS message whose tweak is its first 512-byte sector.
        for b in range(0, len(plain), unit * 7):
            d = Cipher(algorithms.AES(key), modes.XTS((b // 512).to_bytes(16, 'little'))).decryptor()
            if d.update(disk[start + b:start + b + unit]) + d.finalize() != plain[b:b + unit]:
                sys.exit('byte %d differs' % b)
        """
        let unit = line.out.split(separator: "sector_size:").dropFirst().first.map { String($0.prefix(while: \.isNumber)) } ?? "512"
        let check = try runTool(["/usr/bin/python3", "-c", script, fields[4], fields[7].trimmingCharacters(in: .whitespacesAndNewlines), image, payload, unit])
        #expect(check.status == 0, "\(check.error) \(check.output)")
    }

    @Test func wrongPassphraseExits77() throws {
        let folder = TemporaryDirectory()
        guard let (image, _) = try Self.format(folder, ["--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]) else { return }
        let wrong = folder.write("wrong", "not it\n")
        let run = try imgmap(["luks", image, "--passphrase-file", wrong], in: folder)
        #expect(run.status == 77)
        #expect(run.stderr.contains("no keyslot opens with this passphrase"), "\(run.stderr)")
        #expect(!run.stderr.contains("not it"))
        // --passphrase-file drops the trailing newline that --key-file keeps.
        let pass = folder.write("pw2", "secret pass\n\n")
        #expect(try imgmap(["luks", image, "--passphrase-file", pass], in: folder).status == 0)
    }

    @Test func emptyKeyFileIsRefused() throws {
        let folder = TemporaryDirectory()
        guard let (image, _) = try Self.format(folder, ["--type", "luks1", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]) else { return }
        let empty = folder.write("empty", "")
        let run = try imgmap(["luks", image, "--key-file", empty], in: folder)
        #expect(run.status == 65)
        #expect(run.stderr.contains("empty"), "\(run.stderr)")
    }

    /// Overwrites `count` bytes at `offset` of `path` with 0xff.
    static func corrupt(_ path: String, at offset: UInt64, count: Int = 8) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: offset)
        handle.write(Data(repeating: 0xff, count: count))
        try handle.close()
    }

    @Test func corruptPrimaryHeaderFallsBackToTheSecondary() throws {
        let folder = TemporaryDirectory()
        guard let (image, pass) = try Self.format(folder, ["--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]) else { return }
        let good = try imgmap(["luks", image, "--key-file", pass], in: folder)
        try Self.corrupt(image, at: 4096 + 100)   // inside the primary JSON area
        let fallback = try imgmap(["luks", image, "--key-file", pass], in: folder)
        #expect(fallback.status == 0, "\(fallback.stderr)")
        #expect(fallback.out == good.out)
        #expect(fallback.stderr.contains("primary header at offset 0: checksum mismatch"), "\(fallback.stderr)")

        try Self.corrupt(image, at: 0)   // the primary magic
        let magic = try imgmap(["luks", image, "--key-file", pass], in: folder)
        #expect(magic.status == 0, "\(magic.stderr)")
        #expect(magic.stderr.contains("primary header at offset 0: bad magic"), "\(magic.stderr)")
    }

    @Test func bothHeaderCopiesCorruptSaysWhatIsWrongWithEach() throws {
        let folder = TemporaryDirectory()
        guard let (image, pass) = try Self.format(folder, ["--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]) else { return }
        try Self.corrupt(image, at: 4096 + 100)
        try Self.corrupt(image, at: 16384 + 4096 + 100)
        let run = try imgmap(["luks", image, "--key-file", pass], in: folder)
        #expect(run.status == 65)
        #expect(run.stderr.contains("primary header at offset 0: checksum mismatch"), "\(run.stderr)")
        #expect(run.stderr.contains("secondary header at offset 16384: checksum mismatch"), "\(run.stderr)")
    }

    @Test func truncatedImagesAreRefused() throws {
        let folder = TemporaryDirectory()
        guard let (image, pass) = try Self.format(folder, ["--type", "luks1", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]) else { return }
        // The header survives, the key material (from sector 8) does not.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: image))
        try handle.truncate(atOffset: 8192)
        try handle.close()
        let run = try imgmap(["luks", image, "--key-file", pass], in: folder)
        #expect(run.status == 65)
        #expect(run.stderr.contains("truncated"), "\(run.stderr)")

        let tiny = folder.write("tiny.img", "LUKS")
        let short = try imgmap(["luks", tiny, "--key-file", pass], in: folder)
        #expect(short.status == 65)
        #expect(short.stderr.contains("not a LUKS volume"), "\(short.stderr)")
    }

    @Test func antiForensicMergeOfOneStripeIsTheMaterial() throws {
        let material: [UInt8] = Array(0..<32)
        let merged = try #require(material.withUnsafeBytes { AntiForensic.merge($0, blockSize: 32, stripes: 1, hash: "sha256") })
        #expect(merged.withBytes { Array($0) } == material)
    }
}

/// The sample LUKS2 volume opens with its passphrase file and composes to the plaintext that
/// Samples/SHA256SUMS records (`# luks SHA256 BYTES IMAGE PASSPHRASE`).
@Test func sampleLUKS2VolumeComposesToItsRecordedPlaintext() throws {
    let root = packageRootURL.path
    let sums = try String(contentsOfFile: root + "/Samples/SHA256SUMS", encoding: .utf8)
    let line = try #require(sums.split(separator: "\n").first { $0.hasPrefix("# luks ") })
    let fields = line.split(separator: " ").map(String.init)
    let image = try ImageFile(openForReading: root + "/" + fields[4])
    var pass = try readWholeFile(root + "/" + fields[5])
    if pass.last == UInt8(ascii: "\n") { pass.removeLast() }
    let volume = try LUKSVolume.load(image: image)
    #expect(volume.version == 2 && volume.warnings.isEmpty)
    let (key, _) = try volume.unlock(image: image, passphrase: SecretBytes(copying: pass))
    let folder = TemporaryDirectory()
    let table = folder.write("luks.table", try volume.tableLine(device: image.path, deviceSectors: try image.byteSize() / 512, key: key, showKey: true) + "\n")
    let loaded = try TableLoader(bindings: Bindings(tables: [.init(name: nil, path: table)])).load()
    let out = try OutputFile(path: folder.file("plain.img"), inputs: loaded.leaves.map(\.image))
    _ = try Compose(map: SectorMap(top: loaded.top), options: .init()).run(to: out)
    try out.commit()
    #expect(fileSize(folder.file("plain.img")) == UInt64(fields[3]))
    #expect(sha256(file: folder.file("plain.img")) == fields[2])
}
