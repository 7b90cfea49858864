import Foundation
import Testing

@testable import ImgMapCore

// The crypt target: dm-crypt's constructor checks in the kernel's order with its phrases, the kernel
// table's normal form, supplied keys, and bytes checked against an independent AES-XTS (Python's
// `cryptography`) and against the kernel (the golden vectors, and oracle runs recorded below).

/// A 1 MiB image whose byte i is (131·i + i/512) mod 256, as the oracle runs below used.
func cryptPatternImage(_ folder: TemporaryDirectory, _ name: String = "P.img") -> String {
    var bytes = [UInt8](repeating: 0, count: 1 << 20)
    for i in 0..<bytes.count { bytes[i] = UInt8(truncatingIfNeeded: i &* 131 &+ (i >> 9)) }
    let path = folder.file(name)
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
    return path
}

struct CryptTargetTests {
    static let key64 = String(repeating: "0123456789abcdef", count: 8)
    static let key32 = String(repeating: "fedcba9876543210", count: 4)

    /// Loads `table` over image A (2048 sectors), with `--key` files.
    func load(_ table: String, keys: [(String?, [UInt8])] = [], folder: TemporaryDirectory = TemporaryDirectory()) throws -> TableLoader.Loaded {
        let image = GoldenImages.path("A", sectors: 2048)
        let path = folder.write("t.table", table + "\n")
        var bindings = Bindings(tables: [.init(name: nil, path: path)], devices: named("A", in: table) ? [(token: "A", target: image)] : [])
        for (index, (device, bytes)) in keys.enumerated() {
            let keyPath = folder.file("key\(index)")
            FileManager.default.createFile(atPath: keyPath, contents: Data(bytes))
            bindings.keys.append((device: device, path: keyPath))
        }
        return try TableLoader(bindings: bindings).load()
    }

    static let rejections: [(String, String)] = [
        ("aes-xts-plain64 \(key64) 0 A", "Not enough arguments"),
        ("aes-xts-plain64 :x:logon:k 0 A 0", "Cannot parse key size"),
        ("aes-xts-plain64 :32 0 A 0", "Cannot parse key size"),
        ("aes-xts-plain64 \(key64) 0 A 0 1", "Invalid number of feature args"),
        ("aes-xts-plain64 \(key64) 0 A 0 9 a a a a a a a a a", "Invalid number of feature args"),
        ("aes-xts-plain64 \(key64) 0 A 0 x", "Invalid number of feature args"),
        ("aes-xts-plain64 \(key64) 0 A 0 1 bogus", "Invalid feature arguments"),
        ("aes-xts-plain64 \(key64) 0 A 0 1 sector_size:abc", "Invalid feature arguments"),
        ("aes-xts-plain64 \(key64) 0 A 0 1 sector_size:1000", "Invalid feature value for sector_size"),
        ("aes-xts-plain64 \(key64) 0 A 0 1 sector_size:8192", "Invalid feature value for sector_size"),
        ("aes-xts-plain64 \(key64) 0 A 0 1 integrity:0:aead", "Invalid integrity arguments"),
        ("aes-xts-plain64 \(key64) 0 A 0 1 integrity:32:foo", "Unknown integrity profile"),
        ("aes-xts-plain64 \(key64) 0 A 0 1 integrity:32:aead", "Unsupported feature"),
        // Optional parameters are read before the cipher, as the kernel does.
        ("aes-foo-plain64 \(key64) 0 A 0 1 bogus", "Invalid feature arguments"),
        ("aes-foo-plain64 \(key64) 0 A 0", "Error allocating crypto tfm"),
        ("capi:foo(aes)-plain64 \(key64) 0 A 0", "Error allocating crypto tfm"),
        ("serpent-xts-plain64 \(key64) 0 A 0", "Unsupported cipher"),
        ("aes-xts-essiv:sha256 \(key64) 0 A 0", "Unsupported cipher"),
        ("aes:2-xts-plain64 \(key64) 0 A 0", "Unsupported cipher"),
        ("xts(aes)-plain64 \(key64) 0 A 0", "Bad cipher specification"),
        ("aes:3-xts-plain64 \(key64) 0 A 0", "Bad cipher key count specification"),
        ("aes-xts \(key64) 0 A 0", "IV mechanism required"),
        ("aes-cbc-essiv \(key32) 0 A 0", "Digest algorithm missing for ESSIV mode"),
        ("aes-xts-bogus \(key64) 0 A 0", "Invalid IV mode"),
        ("aes-xts-benbi \(key64) 0 A 0", "Unsupported cipher"),
        ("aes-xts-plain64 - 0 A 0", "Error decoding and setting key"),
        ("aes-xts-plain64 \(String(repeating: "zz", count: 32)) 0 A 0", "Error decoding and setting key"),
        ("aes-xts-plain64 \(String(repeating: "ab", count: 16)) 0 A 0", "Error decoding and setting key"),
        ("aes-cbc-plain64 \(key64) 0 A 0", "Error decoding and setting key"),
        ("aes-xts-plain64 :64:bogus:k 0 A 0", "Error decoding and setting key"),
        ("aes-xts-plain64 \(key64) x A 0", "Invalid iv_offset sector"),
        ("aes-xts-plain64 \(key64) 4 A 0 1 sector_size:4096", "Invalid iv_offset sector"),
        ("aes-xts-plain64 \(key64) 0 nope 0", "Device lookup failed"),
        ("aes-xts-plain64 \(key64) 0 A -1", "Invalid device sector"),
        ("aes-xts-plain64 \(key64) 0 A 1", "too small for target"),
    ]

    @Test(arguments: rejections)
    func refusalUsesTheKernelsPhraseAtTheLine(_ arguments: String, _ phrase: String) throws {
        let error = try #require(failure { _ = try load("0 2048 crypt \(arguments)") })
        #expect(error.description.contains("t.table:1: "), "\(error)")
        #expect(error.description.contains(phrase), "\(error)")
        // No key bytes in any message.
        #expect(!error.description.contains(Self.key64) && !error.description.contains(Self.key32), "\(error)")
    }

    @Test func sectorSizeMustDivideTheSegment() throws {
        let error = try #require(failure { _ = try load("0 2046 crypt aes-xts-plain64 \(Self.key64) 0 A 0 1 sector_size:4096") })
        #expect(error.description.contains("Device size is not multiple of sector_size feature"), "\(error)")
    }

    @Test func unsupportedCipherNamesWhatIsSupported() throws {
        let error = try #require(failure { _ = try load("0 2048 crypt twofish-cbc-plain64 \(Self.key32) 0 A 0") })
        #expect(error.description.contains("imgmap does not implement"), "\(error)")
        #expect(error.description.contains("aes-xts-plain64"), "\(error)")
    }

    /// What the kernel showed for this line (oracle, 6.1): the key as zeros, options lower-cased in its
    /// order, `sector_size:66048` read as 512 (16 bits) and so not shown.
    @Test func tableArgumentsAreTheKernelsNormalForm() throws {
        let key24 = String(repeating: "a1", count: 24)
        let loaded = try load("0 2048 crypt aes-cbc-plain \(key24) 4294967000 A 0 3 ALLOW_DISCARDS sector_size:66048 Same_Cpu_Crypt")
        #expect(loaded.top.segments[0].target.tableArguments
            == "aes-cbc-plain \(String(repeating: "0", count: 48)) 4294967000 A 0 2 allow_discards same_cpu_crypt")
        let large = try load("0 2040 crypt aes-xts-plain64 \(Self.key64) 8 A 8 3 iv_large_sectors sector_size:4096 no_read_workqueue")
        #expect(large.top.segments[0].target.tableArguments
            == "aes-xts-plain64 \(String(repeating: "0", count: 128)) 8 A 8 3 no_read_workqueue sector_size:4096 iv_large_sectors")
    }

    @Test func hexKeyMayBeUpperCaseAndAnOddLastDigitIsNotRead() throws {
        let upper = try load("0 2048 crypt aes-cbc-plain64 \(Self.key32.uppercased())5 0 A 0")
        let lower = try load("0 2048 crypt aes-cbc-plain64 \(Self.key32) 0 A 0")
        #expect(composedDigest(upper) == composedDigest(lower))
        #expect(upper.top.segments[0].target.tableArguments.contains(String(repeating: "0", count: 64) + " 0 A 0"))
    }

    func composedDigest(_ loaded: TableLoader.Loaded) -> String? {
        let folder = TemporaryDirectory()
        let path = folder.file("out.img")
        let map = SectorMap(top: loaded.top)
        guard let out = try? OutputFile(path: path, inputs: loaded.leaves.map(\.image)),
              (try? Compose(map: map, options: .init()).run(to: out)) != nil, (try? out.commit()) != nil else { return nil }
        return sha256(file: path)
    }

    // MARK: supplied keys

    static let realKey: [UInt8] = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
    static var realKeyHex: String { realKey.map { String(format: "%02x", $0) }.joined() }

    @Test func suppliedKeyReplacesTheZerosOfADump() throws {
        let zeros = String(repeating: "0", count: 128)
        let real = try load("0 2048 crypt aes-xts-plain64 \(Self.realKeyHex) 0 A 0")
        let dump = try load("0 2048 crypt aes-xts-plain64 \(zeros) 0 A 0", keys: [("top", Self.realKey)])
        let anyDevice = try load("0 2048 crypt aes-xts-plain64 \(zeros) 0 A 0", keys: [(nil, Self.realKey)])
        let withoutKey = try load("0 2048 crypt aes-xts-plain64 \(zeros) 0 A 0")
        #expect(composedDigest(dump) == composedDigest(real))
        #expect(composedDigest(anyDevice) == composedDigest(real))
        #expect(composedDigest(withoutKey) != composedDigest(real))
        #expect(dump.top.segments[0].target.tableArguments == "aes-xts-plain64 \(zeros) 0 A 0")
        #expect(real.top.segments[0].target.tableArguments == "aes-xts-plain64 \(zeros) 0 A 0")
    }

    @Test func keyringKeyNeedsASuppliedKeyOfItsSize() throws {
        let line = "0 2048 crypt aes-xts-plain64 :64:logon:cryptsetup:abc 0 A 0"
        let missing = try #require(failure { _ = try load(line) })
        #expect(missing.description.contains("Error decoding and setting key"), "\(missing)")
        #expect(missing.description.contains("--key"), "\(missing)")
        #expect(missing.exitStatus == .usage)
        let short = try #require(failure { _ = try load(line, keys: [("top", Array(Self.realKey[0..<32]))]) })
        #expect(short.description.contains("32 bytes"), "\(short)")
        let loaded = try load(line, keys: [("top", Self.realKey)])
        #expect(loaded.top.segments[0].target.tableArguments == "aes-xts-plain64 :64:logon:cryptsetup:abc 0 A 0")
        let real = try load("0 2048 crypt aes-xts-plain64 \(Self.realKeyHex) 0 A 0")
        #expect(composedDigest(loaded) == composedDigest(real))
    }

    @Test func suppliedKeyOfTheWrongLengthIsRefused() throws {
        let error = try #require(failure {
            _ = try load("0 2048 crypt aes-xts-plain64 \(String(repeating: "0", count: 128)) 0 A 0", keys: [("top", [1, 2, 3])])
        })
        #expect(error.description.contains("Error decoding and setting key"), "\(error)")
        #expect(error.description.contains("3 bytes"), "\(error)")
    }

    // MARK: bytes

    /// XTS with a 48-byte key (which OpenSSL lacks) against the kernel: the oracle composed this table
    /// over the pattern image to a 1,024,000-byte device with this digest.
    @Test func xtsWithA48ByteKeyMatchesTheKernel() throws {
        let folder = TemporaryDirectory()
        let image = cryptPatternImage(folder)
        let key = (0..<48).map { String(format: "%02x", $0) }.joined()
        let table = folder.write("t.table", "0 2000 crypt aes-xts-plain64 \(key) 5 P 16\n")
        let loaded = try TableLoader(bindings: Bindings(tables: [.init(name: nil, path: table)], devices: [(token: "P", target: image)])).load()
        #expect(composedDigest(loaded) == "da65d3ab9b4437ae6773079161b997b374950506f1bdeb59c540da95f98219ff")
    }

    @Test(arguments: [32, 64])
    func constructedXTSEqualsOpenSSLsXTS(_ keyLength: Int) throws {
        let key = SecretBytes(copying: (0..<keyLength).map { UInt8(truncatingIfNeeded: $0 &* 29 &+ 3) })
        let plain = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        var iv = [UInt8](repeating: 0, count: 16)
        iv[0] = 0x34; iv[1] = 0x12; iv[5] = 0x99
        for encrypt in [true, false] {
            var a = plain, b = plain
            try a.withUnsafeMutableBytes { try CipherContext(cipher: .aesXTS, key: key, encrypt: encrypt).process($0, iv: iv) }
            try b.withUnsafeMutableBytes { try CipherContext(cipher: .aesXTS, key: key, encrypt: encrypt, constructedXTS: true).process($0, iv: iv) }
            #expect(a == b)
            #expect(a != plain)
        }
    }

    /// OpenSSL's provider functions called directly (the fast path) against the same ciphers through
    /// EVP: identical bytes both ways, over random data, for every cipher crypt keys that way.
    @Test(arguments: [("aes-xts-plain64", 64, 1 as UInt64, 0 as UInt64), ("aes-xts-plain64", 32, 1, 12_345),
                      ("aes-xts-plain64", 64, 8, 800_000_001), ("aes-cbc-essiv:sha256", 32, 1, 7),
                      ("aes-cbc-plain64", 16, 8, 1 << 33), ("aes-cbc-plain64", 24, 1, 3)])
    func providerPathEqualsEVP(_ spec: String, _ keyLength: Int, _ unitSectors: UInt64, _ ivOffset: UInt64) throws {
        #expect(ProviderCipher.byName["AES-256-XTS"] != nil && ProviderCipher.byName["AES-256-ECB"] != nil, "the fast path is not in use")
        var random = SplitMix64(seed: 0x5eed ^ UInt64(keyLength) ^ unitSectors)
        let key = SecretBytes(copying: random.bytes(keyLength))
        let data = random.bytes(3 << 20)   // several 256 KiB parts, so several threads' contexts
        let fast = try CryptTransform(spec: spec, key: key, ivOffset: ivOffset, unitSectors: unitSectors)
        var slow = fast
        slow.throughEVP = true
        for encrypt in [true, false] {
            var a = data, b = data
            try a.withUnsafeMutableBytes { try fast.transform($0, firstSector: 96, encrypt: encrypt) }
            try b.withUnsafeMutableBytes { try slow.transform($0, firstSector: 96, encrypt: encrypt) }
            #expect(a == b)
            #expect(a != data)
        }
    }

    /// Python's `cryptography` (Debian python3-cryptography) decrypts the lower image sector by sector
    /// with tweak LE64(sector + iv_offset): the same bytes as compose through the table.
    @Test func xtsPlain64MatchesAnIndependentImplementation() throws {
        let python = "/usr/bin/python3"
        guard FileManager.default.isExecutableFile(atPath: python),
              (try? runTool([python, "-c", "import cryptography"]))?.status == 0 else { return }
        let folder = TemporaryDirectory()
        let image = cryptPatternImage(folder)
        let table = folder.write("t.table", "0 1000 crypt aes-xts-plain64 \(Self.realKeyHex) 77 P 24\n")
        let loaded = try TableLoader(bindings: Bindings(tables: [.init(name: nil, path: table)], devices: [(token: "P", target: image)])).load()
        let expected = folder.file("py.img")
        let script = """
        import sys
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        key = bytes.fromhex(sys.argv[1]); data = open(sys.argv[2], 'rb').read(); out = bytearray()
        for s in range(1000):
            lower = data[(24 + s) * 512:(25 + s) * 512]
            d = Cipher(algorithms.AES(key), modes.XTS((s + 77).to_bytes(16, 'little'))).decryptor()
            out += d.update(lower) + d.finalize()
        open(sys.argv[3], 'wb').write(out)
        """
        let result = try runTool([python, "-c", script, Self.realKeyHex, image, expected])
        #expect(result.status == 0, "\(result.error)")
        #expect(composedDigest(loaded) == sha256(file: expected))
    }

    /// Writes that cover parts of 4 KiB units read, patch and re-encrypt the units; what compose then
    /// reads is the payload, and every other sector is as it was.
    @Test func unalignedWriteThroughLargeUnitsKeepsTheRest() throws {
        let folder = TemporaryDirectory()
        let image = cryptPatternImage(folder)
        let table = folder.write("t.table", "0 2040 crypt aes-xts-plain64 \(Self.realKeyHex) 8 P 8 2 sector_size:4096 iv_large_sectors\n")
        let bindings = Bindings(tables: [.init(name: nil, path: table)], devices: [(token: "P", target: image)])
        let before = try TableLoader(bindings: bindings).load()
        let beforePath = folder.file("before.img")
        let out = try OutputFile(path: beforePath, inputs: before.leaves.map(\.image))
        _ = try Compose(map: SectorMap(top: before.top), options: .init()).run(to: out)
        try out.commit()

        let payload = (0..<(13 * 512)).map { UInt8(truncatingIfNeeded: $0 ^ 0x5c) }
        let payloadPath = folder.file("payload")
        FileManager.default.createFile(atPath: payloadPath, contents: Data(payload))
        let writable = try TableLoader(bindings: bindings).load()
        _ = try scatterFile(SectorMap(top: writable.top), input: payloadPath, .init(seek: Sector(3)))

        let after = try TableLoader(bindings: bindings).load()
        let afterPath = folder.file("after.img")
        let out2 = try OutputFile(path: afterPath, inputs: after.leaves.map(\.image))
        _ = try Compose(map: SectorMap(top: after.top), options: .init()).run(to: out2)
        try out2.commit()
        var expected = try [UInt8](Data(contentsOf: URL(fileURLWithPath: beforePath)))
        expected.replaceSubrange(3 * 512..<16 * 512, with: payload)
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: afterPath))) == expected)
    }

    @Test func mapShowsProvenanceWithoutTheKey() throws {
        let loaded = try load("0 2048 crypt aes-xts-plain64 \(Self.realKeyHex) 7 A 0")
        var texts: [String] = []
        try SectorMap(top: loaded.top).forEachExtent(from: Sector(0), to: Sector(2048)) { extent in
            if case .computed(let source, let at) = extent.source { texts.append(source.describe(sector: at, count: extent.length.value)) }
        }
        #expect(texts == ["decrypted (aes-xts-plain64, iv_offset 7) from A sector 0"])
    }
}
