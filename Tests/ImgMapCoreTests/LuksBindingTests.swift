import Foundation
import Testing

@testable import ImgMapCore

// `--luks NAME=IMAGE` with `--passphrase-file`/`--key-file`: device NAME of the tables is the opened
// LUKS volume. Images are made by the real `cryptsetup luksFormat` (rootless, pbkdf2 with 1000
// iterations to stay fast); the tests return early when cryptsetup is not installed.

struct LuksBindingTests {
    /// A `megabytes` MiB LUKS image `name` formatted with `options`, and its key file (`secret NAME`
    /// and a newline: as a --key-file the newline is part of the passphrase).
    static func format(_ folder: TemporaryDirectory, _ name: String, _ options: [String], megabytes: Int = 20) throws -> (image: String, pass: String)? {
        guard let cryptsetup = LUKSTests.cryptsetup else { return nil }
        let image = folder.file(name)
        _ = FileManager.default.createFile(atPath: image, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: image))
        try handle.truncate(atOffset: UInt64(megabytes) << 20)
        try handle.close()
        let pass = folder.write(name + ".pw", "secret \(name)\n")
        let result = try runTool([cryptsetup, "luksFormat", "--batch-mode", "--key-file", pass] + options + [image])
        #expect(result.status == 0, "\(result.error)")
        return (image, pass)
    }

    static let pbkdf2 = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]
    static let versions: [(String, [String])] = [
        ("luks1", ["--type", "luks1"] + pbkdf2),
        ("luks2", ["--type", "luks2"] + pbkdf2),
        ("luks2 4096", ["--type", "luks2", "--sector-size", "4096"] + pbkdf2),
    ]

    static func payload(_ count: Int, seed: UInt64) -> Data { Data(bmapTestBytes(count: count, seed: seed)) }

    /// The LUKS header's data segment as `imgmap luks` reports it: offset and length in sectors.
    static func segment(_ image: String, pass: String, in folder: TemporaryDirectory) throws -> (line: String, length: UInt64, offset: UInt64) {
        let run = try imgmap(["luks", image, "--key-file", pass], in: folder)
        #expect(run.status == 0, "\(run.stderr)")
        let fields = run.out.split(separator: " ").map(String.init)
        return (run.out, UInt64(fields[1])!, UInt64(fields[7].trimmingCharacters(in: .whitespacesAndNewlines))!)
    }

    /// LVM on LUKS as a `dmsetup table` dump shows it (the crypt key as zeros, the PV by number):
    /// scatter through the top LV writes through the LUKS device, compose reads it back, and the
    /// ciphertext on the image is what a crypt table with cryptsetup's own volume key decrypts.
    @Test(arguments: versions)
    func lvmOnLuksDumpWritesAndReadsThroughTheVolume(_ label: String, _ options: [String]) throws {
        let folder = TemporaryDirectory()
        guard let (image, pass) = try Self.format(folder, "disk.img", options) else { return }
        let (line, length, offset) = try Self.segment(image, pass: pass, in: folder)
        let fields = line.split(separator: " ").map(String.init)
        let zeros = String(repeating: "0", count: fields[4].count)
        let tail = line.contains("sector_size:4096") ? " 1 sector_size:4096" : ""
        let dump = folder.write("dump.txt", """
            luks-root: 0 \(length) crypt \(fields[3]) \(zeros) 0 8:2 \(offset)\(tail)
            vg-root: 0 4096 linear 253:0 2048
            vg-swap: 0 1024 linear 253:0 6144

            """)
        let binding = ["--top", "vg-root", "--dev", "253:0=@luks-root", "--luks", "luks-root=disk.img", "--key-file", pass]
        let data = Self.payload(4096 * 512, seed: 13)
        let input = folder.file("payload")
        try data.write(to: URL(fileURLWithPath: input))
        let write = try imgmap(["scatter", dump, input] + binding, in: folder)
        #expect(write.status == 0, "\(label): \(write.stderr)")
        let out = folder.file("root.img")
        let read = try imgmap(["compose", dump, "-o", out] + binding, in: folder)
        #expect(read.status == 0, "\(label): \(read.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == data, "\(label)")

        // verify and the stdout form agree; the key is in none of the output.
        let key = try LUKSTests.dumpedKey(image, pass: pass)
        let verify = try imgmap(["verify", dump, input] + binding, in: folder)
        #expect(verify.status == 0, "\(label): \(verify.stderr)")
        let map = try imgmap(["map", dump] + binding, in: folder)
        #expect(map.status == 0, "\(map.stderr)")
        #expect(map.out.contains("decrypted (\(fields[3])) from disk.img sector \(offset + 2048)"), "\(map.out)")
        for run in [write, read, verify, map] {
            #expect(!run.out.lowercased().contains(key) && !run.stderr.lowercased().contains(key))
        }

        // The kernel's view with cryptsetup's key: the same crypt line, keyed, over the image.
        let keyed = folder.write("keyed.table", "0 \(length) crypt \(fields[3]) \(key) 0 disk.img \(offset)\(tail)\n")
        let lv = folder.write("lv.table", "0 4096 linear luks 2048\n")
        let plain = folder.file("plain.img")
        let direct = try imgmap(["compose", lv, "--table", "luks=\(keyed)", "-o", plain], in: folder)
        #expect(direct.status == 0, "\(direct.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: plain)) == data, "\(label)")
    }

    /// A table of the user's own naming the LUKS device directly; two volumes, each with its own
    /// secret (a passphrase file and a key file), concatenated.
    @Test func twoVolumesWithTheirOwnSecrets() throws {
        let folder = TemporaryDirectory()
        guard let (a, passA) = try Self.format(folder, "a.img", ["--type", "luks2"] + Self.pbkdf2, megabytes: 18),
              let (b, passB) = try Self.format(folder, "b.img", ["--type", "luks1", "--cipher", "aes-cbc-essiv:sha256", "--key-size", "256"] + Self.pbkdf2, megabytes: 4)
        else { return }
        // A passphrase file drops its trailing newline: a.img was formatted with `secret a.img\n` as the key.
        let phrase = folder.write("a.phrase", "secret a.img\n\n")
        let table = folder.write("both.table", "0 2048 linear ca 0\n2048 2048 linear cb 0\n")
        let options = ["--luks", "ca=\(a)", "--luks", "cb=\(b)", "--passphrase-file", "ca=\(phrase)", "--key-file", "cb=\(passB)"]
        let data = Self.payload(4096 * 512, seed: 5)
        let input = folder.file("payload")
        try data.write(to: URL(fileURLWithPath: input))
        let write = try imgmap(["scatter", table, input] + options, in: folder)
        #expect(write.status == 0, "\(write.stderr)")
        let out = folder.file("out.img")
        let read = try imgmap(["compose", table, "-o", out] + options, in: folder)
        #expect(read.status == 0, "\(read.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == data)
        _ = passA

        // Each secret unlocks only its own volume: swapped, a.img refuses, naming the image.
        let swapped = try imgmap(["compose", table, "-o", out, "--luks", "ca=\(a)", "--luks", "cb=\(b)",
                                  "--key-file", "ca=\(passB)", "--key-file", "cb=\(passB)"], in: folder)
        #expect(swapped.status == 77)
        #expect(swapped.stderr.contains("--luks ca=\(a)") && swapped.stderr.contains("does not unlock"), "\(swapped.stderr)")
    }

    @Test func wrongPassphraseExits77NamingTheImage() throws {
        let folder = TemporaryDirectory()
        guard let (image, _) = try Self.format(folder, "disk.img", ["--type", "luks2"] + Self.pbkdf2) else { return }
        let wrong = folder.write("wrong", "hunter2\n")
        let table = folder.write("lv.table", "0 8 linear root 0\n")
        let run = try imgmap(["compose", table, "-o", folder.file("out"), "--luks", "root=\(image)", "--passphrase-file", wrong], in: folder)
        #expect(run.status == 77)
        #expect(run.stderr.contains(image) && run.stderr.contains("no keyslot opens"), "\(run.stderr)")
        #expect(!run.stderr.contains("hunter2"))
        #expect(!FileManager.default.fileExists(atPath: folder.file("out")))
    }

    /// `scatter --create` sizes the members it must make in a lenient pass that does not run the KDF
    /// (the key is not read there), then unlocks once: the right secret writes and creates, a wrong
    /// one exits 77 before anything is created.
    @Test func scatterCreateUnlocksOnceAndCreatesNothingWithAWrongSecret() throws {
        let folder = TemporaryDirectory()
        guard let (image, pass) = try Self.format(folder, "disk.img", ["--type", "luks2"] + Self.pbkdf2) else { return }
        let wrong = folder.write("wrong", "hunter2\n")
        let table = folder.write("lv.table", "0 8 linear root 0\n8 8 linear \(folder.file("new.img")) 0\n")
        var lenient = Bindings(tables: [.init(name: nil, path: table)])
        lenient.luks = [(device: "root", image: image)]
        lenient.luksSecrets = [(device: nil, path: wrong, keyFile: false)]
        let sized = try TableLoader(bindings: lenient, strictness: .lenient).load()
        #expect(Array(sized.requiredSizesOfUnopenedImages().values) == [Sector(8)])
        #expect(throws: LUKSVolume.Failure.self) { try TableLoader(bindings: lenient, strictness: .planned(sized.requiredSizesOfUnopenedImages())).load() }

        let data = Self.payload(16 * 512, seed: 5)
        let input = folder.file("payload")
        try data.write(to: URL(fileURLWithPath: input))
        let refused = try imgmap(["scatter", table, input, "--create", "--luks", "root=\(image)", "--passphrase-file", wrong], in: folder)
        #expect(refused.status == 77, "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: folder.file("new.img")))

        let write = try imgmap(["scatter", table, input, "--create", "--luks", "root=\(image)", "--key-file", pass], in: folder)
        #expect(write.status == 0, "\(write.stderr)")
        let out = folder.file("out.img")
        let read = try imgmap(["compose", table, "-o", out, "--luks", "root=\(image)", "--key-file", pass], in: folder)
        #expect(read.status == 0, "\(read.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == data)

        // The load after creating reuses the volume key: given it, even a wrong secret loads.
        var right = lenient
        right.luksSecrets = [(device: nil, path: pass, keyFile: true)]
        let unlocked = try TableLoader(bindings: right).load().volumeKeys
        #expect(unlocked["root"]?.count == 64)
        var reuse = TableLoader(bindings: lenient)
        reuse.unlockedVolumeKeys = unlocked
        #expect(Data(try readAll(SectorMap(top: try reuse.load().top))) == data)
    }

    @Test func bindingMistakesAreUsageErrors() throws {
        let folder = TemporaryDirectory()
        guard let (image, pass) = try Self.format(folder, "disk.img", ["--type", "luks1"] + Self.pbkdf2) else { return }
        let table = folder.write("lv.table", "0 8 linear root 0\n")
        let cases: [([String], String)] = [
            (["--luks", "root=\(image)", "--luks", "other=\(image)", "--key-file", pass], "no table that is loaded uses device other"),
            (["--luks", "root=\(image)"], "--luks needs --passphrase-file"),
            (["--dev", "root=\(image)", "--key-file", pass], "none is given"),
            (["--luks", "root=\(image)", "--key-file", pass, "--key-file", "root=\(pass)"], "unlocks none"),
            (["--luks", "root=\(image)", "--key-file", pass, "--key", "root=\(pass)"], "keep one"),
            (["--luks", "root=\(image)", "--luks", "root=\(image)", "--key-file", pass], "given twice"),
        ]
        for (options, phrase) in cases {
            let run = try imgmap(["map", table] + options, in: folder)
            #expect(run.status == 64, "\(options): \(run.stderr)")
            #expect(run.stderr.contains(phrase), "\(options): \(run.stderr)")
        }
        // A dump's crypt line that does not describe the image (another offset) is refused.
        let (_, length, offset) = try Self.segment(image, pass: pass, in: folder)
        let dump = folder.write("dump.txt", """
            root: 0 \(length) crypt aes-xts-plain64 \(String(repeating: "0", count: 128)) 0 8:2 \(offset + 8)
            lv: 0 8 linear 253:0 0

            """)
        let run = try imgmap(["map", dump, "--top", "lv", "--dev", "253:0=@root", "--luks", "root=\(image)", "--key-file", pass], in: folder)
        #expect(run.status == 65, "\(run.stderr)")
        #expect(run.stderr.contains("dump.txt:1") && run.stderr.contains("data offset \(offset + 8) here, \(offset) in the header"), "\(run.stderr)")
    }

    /// Kernel ground truth (dm-oracle, Linux 6.1, 2026-12-02): a LUKS2 volume formatted with a fixed
    /// volume key (SHA-512 of `imgmap luks oracle`) and `--sector-size 4096`, 17 MiB (data from 16 MiB);
    /// the kernel wrote PAYLOAD (SHA-256 of `luks-oracle N` for N = 0..<32768, 1 MiB) through the crypt
    /// line `imgmap luks --show-keys` prints, and the data area's SHA-256 was KERNEL. The header's salts
    /// are random, the data's ciphertext depends only on the key: imgmap writing the same payload
    /// through `--luks` must give the same bytes. (The same session had the kernel read back what
    /// imgmap wrote through --luks, and imgmap read back what the kernel wrote: both matched.)
    static let kernelDataDigest = "326a22973a3dec70aee5209859234d745a37adb594d8ad287cd675df6b228da9"

    static func digest(_ name: String, _ bytes: [UInt8]) -> SecretBytes {
        bytes.withUnsafeBytes { OpenSSLDigest.hash(name, $0)! }
    }

    @Test func writesThroughLuksAreTheKernelsCiphertext() throws {
        guard let cryptsetup = LUKSTests.cryptsetup else { return }
        let folder = TemporaryDirectory()
        let image = folder.file("luks.img")
        _ = FileManager.default.createFile(atPath: image, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: image))
        try handle.truncate(atOffset: 17 << 20)
        try handle.close()
        let volumeKey = folder.file("vk")
        try Data(Self.digest("sha512", Array("imgmap luks oracle".utf8)).withBytes { Array($0) }).write(to: URL(fileURLWithPath: volumeKey))
        let pass = folder.write("pw", "oracle pass")
        let format = try runTool([cryptsetup, "luksFormat", "--batch-mode", "--type", "luks2", "--sector-size", "4096", "--key-size", "512",
                                  "--volume-key-file", volumeKey, "--key-file", pass] + Self.pbkdf2 + [image])
        #expect(format.status == 0, "\(format.error)")
        var payload: [UInt8] = []
        for n in 0..<32768 { payload += Self.digest("sha256", Array("luks-oracle \(n)".utf8)).withBytes { Array($0) } }
        let input = folder.file("payload")
        try Data(payload).write(to: URL(fileURLWithPath: input))
        let table = folder.write("plain.table", "0 2048 linear plain 0\n")
        let write = try imgmap(["scatter", table, input, "--luks", "plain=\(image)", "--key-file", pass], in: folder)
        #expect(write.status == 0, "\(write.stderr)")
        let data = try Data(contentsOf: URL(fileURLWithPath: image)).suffix(1 << 20)
        let digest = Self.digest("sha256", Array(data)).hex
        #expect(digest == Self.kernelDataDigest)
    }
}
