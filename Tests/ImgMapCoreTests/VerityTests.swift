import Foundation
import Testing

@testable import ImgMapCore

// The verity target: hash trees made by the real `veritysetup format` (cryptsetup-bin; rootless on
// plain files) in every shape the kernel reads (version 0 and 1, with and without salt, hash and data
// blocks of different sizes, a superblock before the tree), corruption in data and at every level of
// the tree, the constructor's checks in verity_ctr's order, and the refusal of writes. The kernel's
// own vectors are in Fixtures/golden-wave2/verity (GoldenVectorTests). Tests that need veritysetup
// return early, with a message, when it is not installed.

/// A data image and its hash tree, made by `veritysetup format`.
struct VeritySetup {
    let folder: TemporaryDirectory
    let data: String
    let hash: String
    let dataBytes: [UInt8]
    let version: Int
    let dataBlockSize: Int
    let hashBlockSize: Int
    let blocks: Int
    let algorithm: String
    let salt: String
    let root: String
    /// The tree's first hash block: 1 after a superblock, 0 without one.
    let hashStart: Int

    static let tool = toolPath("veritysetup")

    /// Formats `dataBytes` (whole data blocks), or nil (with a message) when veritysetup is missing.
    static func format(_ dataBytes: [UInt8], version: Int = 1, dataBlockSize: Int = 4096, hashBlockSize: Int = 4096,
                       algorithm: String = "sha256", salt: String = "5a17", superblock: Bool = false,
                       sourceLocation: SourceLocation = #_sourceLocation) throws -> VeritySetup? {
        guard let tool else {
            print("VerityTests: veritysetup not installed (apt-get install cryptsetup-bin): skipped")
            return nil
        }
        let folder = TemporaryDirectory()
        let data = folder.file("D.img"), hash = folder.file("H.img")
        FileManager.default.createFile(atPath: data, contents: Data(dataBytes))
        FileManager.default.createFile(atPath: hash, contents: Data())
        var arguments = [tool, "format", data, hash, "--format", "\(version)", "--data-block-size", "\(dataBlockSize)",
                         "--hash-block-size", "\(hashBlockSize)", "--hash", algorithm, "--salt", salt]
        if !superblock { arguments.append("--no-superblock") }
        let result = try runTool(arguments)
        try #require(result.status == 0, "veritysetup format: \(result.error)", sourceLocation: sourceLocation)
        let root = try #require(result.output.split(separator: "\n").first { $0.hasPrefix("Root hash:") }?
            .split(whereSeparator: { $0 == " " || $0 == "\t" }).last.map(String.init), sourceLocation: sourceLocation)
        return VeritySetup(folder: folder, data: data, hash: hash, dataBytes: dataBytes, version: version, dataBlockSize: dataBlockSize,
                           hashBlockSize: hashBlockSize, blocks: dataBytes.count / dataBlockSize, algorithm: algorithm,
                           salt: salt, root: root, hashStart: superblock ? 1 : 0)
    }

    var sectors: Int { dataBytes.count / 512 }

    /// The table line dmsetup would be given (`veritysetup open` builds the same).
    func table(version: Int? = nil, root: String? = nil, salt: String? = nil, options: String = "") -> String {
        "0 \(sectors) verity \(version ?? self.version) D H \(dataBlockSize) \(hashBlockSize) \(blocks) \(hashStart) \(algorithm) "
            + "\(root ?? self.root) \(salt ?? self.salt)" + (options.isEmpty ? "" : " \(options)")
    }

    func load(_ table: String? = nil, hash: String? = nil) throws -> TableLoader.Loaded {
        try loadTables(table ?? self.table(), devices: ["D": data, "H": hash ?? self.hash])
    }

    /// XORs `mask` into byte `offset` of `path`.
    static func flip(_ path: String, at offset: Int, mask: UInt8 = 0x01) {
        var bytes = readBytes(path)
        bytes[offset] ^= mask
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
    }
}

/// Reads the whole device with `--on-error zero`: the bytes and the error ranges.
func composeVerity(_ loaded: TableLoader.Loaded) throws -> (bytes: [UInt8], errors: [SectorRange]) {
    let map = SectorMap(top: loaded.top)
    let folder = TemporaryDirectory()
    let out = try OutputFile(path: folder.file("out.img"), inputs: loaded.leaves.map(\.image))
    let report = try Compose(map: map, options: .init(onError: .zero)).run(to: out)
    try out.commit()
    return (readBytes(folder.file("out.img")), report.errors.ranges)
}

/// Deterministic data of `count` bytes, with a few all-zero 4 KiB blocks (every 7th).
func verityData(_ count: Int, seed: UInt64 = 7) -> [UInt8] {
    var random = SplitMix64(seed: seed)
    var bytes = random.bytes(count)
    for block in stride(from: 0, to: count / 4096, by: 7) {
        for i in block * 4096..<(block + 1) * 4096 { bytes[i] = 0 }
    }
    return bytes
}

struct VerityTests {
    // MARK: Reads of every format veritysetup makes

    static let formats: [(version: Int, dataBlock: Int, hashBlock: Int, algorithm: String, salt: String, superblock: Bool)] = [
        (1, 4096, 4096, "sha256", "e198884d1aa757002386873f6f8a1061503213411c87044f1ac5125bd50164fc", true),
        (1, 4096, 4096, "sha256", "-", false),
        (0, 4096, 4096, "sha256", "abcd", false),
        (0, 4096, 4096, "sha1", "00ff", false),       // 20-byte digests: packed in v0, in 32-byte slots in v1
        (1, 4096, 4096, "sha1", "00ff", false),
        (1, 4096, 512, "sha256", "0102", false),      // hash blocks smaller than data blocks: more levels
        (1, 512, 4096, "sha512", "0102", true),       // data blocks smaller than hash blocks
        (0, 1024, 2048, "sha256", "aabbccdd", true),
        (1, 4096, 1024, "sha384", "-", false),
    ]

    @Test(arguments: 0..<formats.count)
    func readsWhatVeritysetupFormatted(_ index: Int) throws {
        let f = Self.formats[index]
        guard let setup = try VeritySetup.format(verityData(1 << 21), version: f.version, dataBlockSize: f.dataBlock,
                                                 hashBlockSize: f.hashBlock, algorithm: f.algorithm, salt: f.salt,
                                                 superblock: f.superblock) else { return }
        let (bytes, errors) = try composeVerity(try setup.load())
        #expect(errors.isEmpty, "\(f)")
        #expect(bytes == setup.dataBytes, "\(f)")
    }

    @Test func aSingleDataBlockIsCheckedAgainstTheRootDigestItself() throws {
        guard let setup = try VeritySetup.format(verityData(4096, seed: 3)) else { return }
        #expect(fileSize(setup.hash) == 0)   // no tree: the root digest is the block's digest
        #expect(try composeVerity(try setup.load()).bytes == setup.dataBytes)
        VeritySetup.flip(setup.data, at: 100)
        #expect(try composeVerity(try setup.load()).errors == [SectorRange(start: 0, length: 8)])
    }

    @Test func theWrongVersionOrSaltFailsEveryBlock() throws {
        guard let setup = try VeritySetup.format(verityData(1 << 20), version: 1) else { return }
        for table in [setup.table(version: 0), setup.table(salt: "5a18"), setup.table(salt: "-")] {
            let (bytes, errors) = try composeVerity(try setup.load(table))
            #expect(errors == [SectorRange(start: 0, length: UInt64(setup.sectors))], "\(table)")
            #expect(bytes.allSatisfy { $0 == 0 })
        }
    }

    @Test func partialAndUnalignedReadsAreWidenedToWholeBlocks() throws {
        guard let setup = try VeritySetup.format(verityData(1 << 20)) else { return }
        let map = SectorMap(top: try setup.load().top)
        let reader = MapReader(map: map, onError: .fail)
        for (start, count) in [(1, 1), (7, 2), (13, 100), (255, 2), (2040, 8)] {
            var buffer = [UInt8](repeating: 0xee, count: count * 512)
            try buffer.withUnsafeMutableBytes { try reader.read(into: $0, at: Sector(UInt64(start))) }
            #expect(buffer == Array(setup.dataBytes[start * 512..<(start + count) * 512]), "sectors \(start)+\(count)")
        }
    }

    // MARK: Corruption

    @Test func aCorruptDataBlockFailsAloneInWholeDataBlocks() throws {
        guard let setup = try VeritySetup.format(verityData(1 << 21), dataBlockSize: 1024, hashBlockSize: 4096) else { return }
        VeritySetup.flip(setup.data, at: 5 * 1024 + 700)
        VeritySetup.flip(setup.data, at: 1000 * 1024)
        let (bytes, errors) = try composeVerity(try setup.load())
        #expect(errors == [SectorRange(start: 10, length: 2), SectorRange(start: 2000, length: 2)])
        var expected = setup.dataBytes
        for range in errors { for i in Int(range.start) * 512..<Int(range.start + range.length) * 512 { expected[i] = 0 } }
        #expect(bytes == expected)
    }

    /// Hash blocks of 512 bytes hold 16 sha256 digests: 4096 data blocks of 512 bytes make 3 levels, the
    /// top (hash block 0), 16 blocks at level 1 (1…16) and 256 at level 0 (17…272).
    @Test(arguments: [(1, 0, 256), (16, 3840, 256), (17, 0, 16), (272, 4080, 16), (0, 0, 4096)])
    func aCorruptHashBlockFailsEveryDataBlockUnderIt(_ hashBlock: Int, _ firstSector: UInt64, _ sectors: UInt64) throws {
        guard let setup = try VeritySetup.format(verityData(1 << 21), dataBlockSize: 512, hashBlockSize: 512) else { return }
        let geometry = try #require(try (setup.load().top.segments[0].target as? VerityTarget)?.source.geometry)
        #expect(geometry.levels == 3)
        #expect(geometry.levelStart == [17, 1, 0])
        #expect(geometry.hashBlocks == 273)
        VeritySetup.flip(setup.hash, at: hashBlock * 512 + 77)
        let (bytes, errors) = try composeVerity(try setup.load())
        #expect(errors == [SectorRange(start: firstSector, length: sectors)])
        let end = Int(firstSector + sectors) * 512
        #expect(bytes[..<(Int(firstSector) * 512)] == setup.dataBytes[..<(Int(firstSector) * 512)])
        #expect(bytes[end...] == setup.dataBytes[end...])
    }

    @Test func theSuperblockIsNotPartOfTheTree() throws {
        guard let setup = try VeritySetup.format(verityData(1 << 20), superblock: true) else { return }
        VeritySetup.flip(setup.hash, at: 300)   // inside the superblock, before hash_start
        #expect(try composeVerity(try setup.load()).errors.isEmpty)
    }

    @Test func failedReadsWithoutOnErrorZeroStopAtTheFirstBadBlock() throws {
        guard let setup = try VeritySetup.format(verityData(1 << 20)) else { return }
        VeritySetup.flip(setup.data, at: 3 * 4096 + 1)
        let loaded = try setup.load()
        let folder = TemporaryDirectory()
        let path = folder.file("out.img")
        let out = try OutputFile(path: path, inputs: loaded.leaves.map(\.image))
        let error = #expect(throws: MappedReadError.self) { try Compose(map: SectorMap(top: loaded.top), options: .init(onError: .fail)).run(to: out) }
        out.discard()
        #expect(error?.range == SectorRange(start: 24, length: 8))
        #expect(error?.exitStatus == .ioError)
        #expect(!fileExists(path))
    }

    // MARK: Optional parameters

    @Test func ignoreCorruptionReadsTheDataAsItIs() throws {
        guard let setup = try VeritySetup.format(verityData(1 << 20)) else { return }
        VeritySetup.flip(setup.data, at: 9 * 4096)
        VeritySetup.flip(setup.hash, at: 4096 + 5)   // a level-0 block (the top is block 0)
        let (bytes, errors) = try composeVerity(try setup.load(setup.table(options: "1 ignore_corruption")))
        #expect(errors.isEmpty)
        #expect(bytes == readBytes(setup.data))
    }

    @Test(arguments: ["restart_on_corruption", "panic_on_corruption", "RESTART_ON_CORRUPTION"])
    func restartOrPanicOnCorruptionStopsTheRun(_ option: String) throws {
        guard let setup = try VeritySetup.format(verityData(1 << 20)) else { return }
        #expect(try composeVerity(try setup.load(setup.table(options: "1 \(option)"))).bytes == setup.dataBytes)
        VeritySetup.flip(setup.data, at: 9 * 4096)
        let error = try #require(failure { _ = try composeVerity(try setup.load(setup.table(options: "1 \(option)"))) })
        #expect(error is VerityCorruption)
        #expect(error.exitStatus == .dataError)
        #expect(error.description.contains("data block 9 is corrupted"), "\(error)")
        #expect(error.description.contains(option.lowercased().hasPrefix("panic") ? "panic" : "restart the machine"), "\(error)")
    }

    @Test func ignoreZeroBlocksReadsZerosWhereTheTreeSaysZeros() throws {
        guard let setup = try VeritySetup.format(verityData(1 << 20)) else { return }
        // Block 7 is all zeros in the data the tree was made for; block 9 is not.
        VeritySetup.flip(setup.data, at: 7 * 4096 + 10, mask: 0x5a)
        VeritySetup.flip(setup.data, at: 9 * 4096 + 10, mask: 0x5a)
        let plain = try composeVerity(try setup.load())
        #expect(plain.errors == [SectorRange(start: 56, length: 8), SectorRange(start: 72, length: 8)])
        let zeros = try composeVerity(try setup.load(setup.table(options: "1 ignore_zero_blocks")))
        #expect(zeros.errors == [SectorRange(start: 72, length: 8)])
        #expect(zeros.bytes[7 * 4096..<8 * 4096].allSatisfy { $0 == 0 })
        #expect(zeros.bytes[..<(7 * 4096)] == setup.dataBytes[..<(7 * 4096)])
    }

    @Test func checkAtMostOnceAndTaskletsChangeNothingOffline() throws {
        guard let setup = try VeritySetup.format(verityData(1 << 20)) else { return }
        VeritySetup.flip(setup.data, at: 2 * 4096)
        let (_, errors) = try composeVerity(try setup.load(setup.table(options: "2 check_at_most_once try_verify_in_tasklet")))
        #expect(errors == [SectorRange(start: 16, length: 8)])
    }

    // MARK: The table

    /// The golden vectors' D (pattern) and H (veritysetup, superblock, sha256, 4 KiB blocks, 512 data
    /// blocks): `0 4096 verity 1 D H 4096 4096 512 1 sha256 ROOT SALT`.
    static let goldenFolder = fixturesURL.appendingPathComponent("golden-wave2/verity/verity-read")
    static let root = "c732f3abadd0ee0a27814f88a9bec640906ac6584ceb7c1c5e1a43b7ba2a0e8b"
    static let salt = "e198884d1aa757002386873f6f8a1061503213411c87044f1ac5125bd50164fc"

    static var goldenDevices: [String: String] {
        ["D": GoldenImages.path("D", sectors: 4096),
         "H": GoldenImages.unpacked(goldenFolder.appendingPathComponent("H.img.gz").path,
                                    sha256: "fa75451c743cf1e01efa5bd6b444371b4704e97df0f9df58ce533c5f15f6718c")]
    }

    /// The golden table with argument `index` (0-based after `verity`) replaced, or options appended.
    static func golden(_ replacements: [Int: String] = [:], length: Int = 4096, options: String = "") -> String {
        var words = ["1", "D", "H", "4096", "4096", "512", "1", "sha256", root, salt]
        for (i, word) in replacements { words[i] = word }
        return "0 \(length) verity " + words.joined(separator: " ") + (options.isEmpty ? "" : " " + options)
    }

    @Test func theGoldenTableReadsThePattern() throws {
        let loaded = try loadTables(Self.golden(), devices: Self.goldenDevices)
        let (bytes, errors) = try composeVerity(loaded)
        #expect(errors.isEmpty)
        #expect(bytes == GoldenImages.bytes("D", sectors: 4096))
        #expect(Set(loaded.leaves.map { URL(fileURLWithPath: $0.path).lastPathComponent }).count == 2)   // D and H: neither can be an output
    }

    static let rejections: [(String, String)] = [
        ("0 4096 verity 1 D H 4096 4096 512 1 sha256 \(root)", "Not enough arguments"),
        // The optional parameters' count is read first of all.
        (golden([0: "2"], options: "1"), "Invalid number of feature args"),
        (golden(options: "15 a a a a a a a a a a a a a a a"), "Invalid number of feature args"),
        (golden(options: "x"), "Invalid number of feature args"),
        (golden(options: "2 ignore_corruption"), "Invalid number of feature args"),
        (golden([0: "2"]), "Invalid version"),
        (golden([0: "x"]), "Invalid version"),
        (golden([0: "+1"]), "Invalid version"),
        (golden([0: "-1"]), "Invalid version"),
        (golden([1: "nope"]), "Data device lookup failed"),
        (golden([2: "nope"]), "Hash device lookup failed"),
        (golden([3: "0"]), "Invalid data device block size"),
        (golden([3: "3000"]), "Invalid data device block size"),
        (golden([3: "256"]), "Invalid data device block size"),
        (golden([3: "8192"]), "Invalid data device block size"),
        (golden([3: "4k"]), "Invalid data device block size"),
        (golden([4: "0"]), "Invalid hash device block size"),
        (golden([4: "1000"]), "Invalid hash device block size"),
        (golden([4: "256"]), "Invalid hash device block size"),
        (golden([4: "4294967296"]), "Invalid hash device block size"),   // %u keeps the low 32 bits: 0
        (golden([5: "x"]), "Invalid data blocks"),
        (golden([5: "-512"]), "Invalid data blocks"),
        (golden([5: "2305843009213693952"]), "Invalid data blocks"),     // 2^61 blocks of 8 sectors overflow
        (golden([5: "511"]), "Data device is too small"),
        (golden([5: "0"]), "Data device is too small"),
        (golden([6: "x"]), "Invalid hash start"),
        (golden([6: "2305843009213693952"]), "Invalid hash start"),
        (golden([7: "sha257"]), "Cannot initialize hash function"),
        (golden([7: "SHA256"]), "Cannot initialize hash function"),
        (golden([7: "hmac(sha257)"]), "Cannot initialize hash function"),
        (golden([7: "crc32c"]), "Unsupported hash algorithm"),
        (golden([7: "hmac(sha256)"]), "Unsupported hash algorithm"),
        (golden([4: "512", 7: "sha512"], options: ""), "Invalid root digest"),
        (golden([8: String(root.dropLast(2))]), "Invalid root digest"),
        (golden([8: String(root.dropLast(2)) + "zz"]), "Invalid root digest"),
        (golden([8: root + "00"]), "Invalid root digest"),
        (golden([7: "sha1"]), "Invalid root digest"),
        (golden([9: "abc"]), "Invalid salt"),
        (golden([9: "zz"]), "Invalid salt"),
        (golden(options: "1 bogus"), "Unrecognized verity feature request"),
        (golden(options: "2 ignore_corruption restart_on_corruption"), "Conflicting error handling parameters"),
        (golden(options: "2 ignore_corruption ignore_corruption"), "Conflicting error handling parameters"),
        (golden(options: "1 fec_roots"), "FEC feature arguments require a value"),
        (golden(options: "2 fec_roots 1"), "Invalid fec_roots"),
        (golden(options: "2 fec_roots 25"), "Invalid fec_roots"),
        (golden(options: "2 fec_blocks x"), "Invalid fec_blocks"),
        (golden(options: "2 fec_start -1"), "Invalid fec_start"),
        (golden(options: "2 use_fec_from_device nope"), "FEC device lookup failed"),
        (golden(options: "1 root_hash_sig_key_desc"), "DM Verity Sig Verification Signature key not specified"),
        (golden(options: "2 root_hash_sig_key_desc mykey"), "Unsupported feature"),
        (golden([6: "2"]), "Hash device is too small"),
        (golden([6: "1000000"]), "Hash device is too small"),
        (golden(options: "8 use_fec_from_device H fec_roots 2 fec_blocks 600 fec_start 6"), "Unsupported feature"),
        (golden(length: 4092), "not aligned to h/w logical block size"),
    ]

    @Test(arguments: rejections)
    func refusalUsesTheKernelsPhraseAtTheLine(_ table: String, _ phrase: String) throws {
        // Only the devices the table names are bound (an unused binding is a usage error).
        let words = Set(table.split(separator: " ").map(String.init))
        let error = try #require(loadError(table, devices: Self.goldenDevices.filter { words.contains($0.key) }))
        // A device that is not there is not a table error: exit 66, as for any missing input.
        #expect(error.exitStatus == (phrase.contains("lookup failed") ? .noInput : .dataError), "\(error)")
        #expect(error.description.contains(":1: verity: \(phrase)"), "\(error)")
    }

    @Test func theHashDeviceTooSmallCheckCountsWholeHashBlocks() throws {
        let folder = TemporaryDirectory()
        let full = readBytes(Self.goldenDevices["H"]!)
        // The tree ends at hash block 6 (superblock, top, 4 level-0 blocks): 6 × 4096 bytes are needed.
        let short = folder.file("short.img")
        FileManager.default.createFile(atPath: short, contents: Data(full[..<(6 * 4096 - 512)]))
        var devices = Self.goldenDevices
        devices["H"] = short
        let error = try #require(loadError(Self.golden(), devices: devices))
        #expect(error.description.contains("Hash device is too small"), "\(error)")
        let exact = folder.file("exact.img")
        FileManager.default.createFile(atPath: exact, contents: Data(full[..<(6 * 4096)]))
        devices["H"] = exact
        #expect(try composeVerity(try loadTables(Self.golden(), devices: devices)).errors.isEmpty)
    }

    @Test func theKernelTableIsTheNormalForm() throws {
        let table = Self.golden([0: "01", 3: "04096", 8: Self.root.uppercased(), 9: Self.salt.uppercased()],
                                options: "5 IGNORE_ZERO_BLOCKS check_at_most_once ignore_corruption fec_roots 2 extra words")
        let target = try #require(try loadTables(table, devices: Self.goldenDevices).top.segments[0].target as? VerityTarget)
        #expect(target.tableArguments == "1 D H 4096 4096 512 1 sha256 \(Self.root) \(Self.salt) 3 ignore_corruption ignore_zero_blocks check_at_most_once")
        let plain = try #require(try loadTables(Self.golden([9: "-"]), devices: Self.goldenDevices).top.segments[0].target as? VerityTarget)
        #expect(plain.tableArguments == "1 D H 4096 4096 512 1 sha256 \(Self.root) -")
    }

    @Test func theGeometryIsTheKernels() throws {
        // The golden tree: 512 data blocks, 128 sha256 digests per 4 KiB block: 2 levels after a superblock.
        let golden = try VerityGeometry(version: 1, dataBlockBits: 12, hashBlockBits: 12, dataBlocks: 512, hashStart: 1, digestSize: 32)
        #expect(golden.hashPerBlockBits == 7)
        #expect(golden.levels == 2)
        #expect(golden.levelStart == [2, 1])
        #expect(golden.hashBlocks == 6)
        #expect(golden.digestPosition(of: 300, level: 0).hashBlock == 4 && golden.digestPosition(of: 300, level: 0).offset == 44 * 32)
        #expect(golden.digestPosition(of: 300, level: 1).hashBlock == 1 && golden.digestPosition(of: 300, level: 1).offset == 2 * 32)
        // sha1 in version 0 packs 20-byte digests (204 per block, rounded down to 128 per level step);
        // version 1 puts each in a 32-byte slot.
        let v0 = try VerityGeometry(version: 0, dataBlockBits: 12, hashBlockBits: 12, dataBlocks: 1000, hashStart: 0, digestSize: 20)
        let v1 = try VerityGeometry(version: 1, dataBlockBits: 12, hashBlockBits: 12, dataBlocks: 1000, hashStart: 0, digestSize: 20)
        #expect(v0.hashPerBlockBits == 7 && v1.hashPerBlockBits == 7)
        #expect(v0.digestPosition(of: 5, level: 0).offset == 100)
        #expect(v1.digestPosition(of: 5, level: 0).offset == 160)
        #expect(try VerityGeometry(version: 1, dataBlockBits: 12, hashBlockBits: 12, dataBlocks: 1, hashStart: 0, digestSize: 32).levels == 0)
        #expect(try VerityGeometry(version: 1, dataBlockBits: 12, hashBlockBits: 12, dataBlocks: 0, hashStart: 3, digestSize: 32).hashBlocks == 3)
        // 512-byte blocks of 2^64 - 1 data blocks: 16 levels, whose sizes overflow the offsets after hash block 1.
        #expect(throws: TargetError.self) {
            try VerityGeometry(version: 1, dataBlockBits: 9, hashBlockBits: 9, dataBlocks: .max, hashStart: 1, digestSize: 32)
        }
        // From hash block 0 the sizes just fit (the top level's shift of 64 is x86's shift of 0).
        #expect(try VerityGeometry(version: 1, dataBlockBits: 9, hashBlockBits: 9, dataBlocks: .max, hashStart: 0, digestSize: 32).hashBlocks == .max)
    }

    // MARK: Writes, map, verify

    @Test func writesAreRefusedBeforeAnythingIsWritten() throws {
        let folder = TemporaryDirectory()
        let data = folder.file("D.img"), hash = folder.file("H.img")
        try FileManager.default.copyItem(atPath: Self.goldenDevices["D"]!, toPath: data)
        try FileManager.default.copyItem(atPath: Self.goldenDevices["H"]!, toPath: hash)
        let before = [sha256(file: data), sha256(file: hash)]
        let map = SectorMap(top: try loadTables(Self.golden(), devices: ["D": data, "H": hash]).top)
        let payload = GoldenImages.path("W", sectors: 8)
        let error = try #require(failure { _ = try scatterFile(map, input: payload, .init(seek: Sector(16))) })
        #expect(error.exitStatus == .dataError)
        #expect(error.description.contains("Device must be readonly"), "\(error)")
        #expect(error.description.contains("nothing was written"), "\(error)")
        #expect([sha256(file: data), sha256(file: hash)] == before)
    }

    @Test func mapDescribesThePieceWithoutTheDigests() throws {
        let map = SectorMap(top: try loadTables(Self.golden(), devices: Self.goldenDevices).top)
        let pieces = extents(map).map(summary)
        #expect(pieces == ["0 4096 computed verified (verity 1, sha256, 4096-byte blocks) from D sector 0; hash tree on H from hash block 1"])
        #expect(!pieces[0].contains(Self.root) && !pieces[0].contains(Self.salt))
    }

    @Test func lowerAreasAreTheDataAndTheHashBlocksOfEachLevel() throws {
        let target = try #require(try loadTables(Self.golden(), devices: Self.goldenDevices).top.segments[0].target as? VerityTarget)
        var areas: [String] = []
        target.source.forEachLowerArea(sector: 1020, count: 8) { _, token, sector, count in areas.append("\(token) \(sector)+\(count)") }
        // Data blocks 127 and 128: level 1 is hash block 1; level 0 blocks 2 and 3 (8 sectors each).
        #expect(areas == ["D 1016+16", "H 8+8", "H 16+16"])
    }

    @Test func verifyReportsTheFailedBlocks() throws {
        let folder = fixturesURL.appendingPathComponent("golden-wave2/verity/verity-corrupt-data")
        let hash = GoldenImages.unpacked(folder.appendingPathComponent("H.img.gz").path,
                                         sha256: "11e6ef62402dac098fcd65bb9f1328497bf55287cda61fb4c168b2b7ebf251de")
        let table = "0 4096 verity 1 D H 4096 4096 512 1 sha256 31101201188208b1c504af6a71d437a45b99113a28b1336743778febd3908073 \(Self.salt)"
        let map = SectorMap(top: try loadTables(table, devices: ["D": Self.goldenDevices["D"]!, "H": hash]).top)
        var mismatches: [Verify.Mismatch] = []
        let image = try ImageFile(openForReading: Self.goldenDevices["D"]!)
        _ = try Verify(map: map, options: .init(onError: .zero)).run(image: image, isStream: false) { mismatches.append($0) }
        #expect(mismatches.map(\.range) == [SectorRange(start: 800, length: 8), SectorRange(start: 2408, length: 8)])
        #expect(mismatches.allSatisfy { $0.kind == .differs })
        // Without --on-error zero the failed blocks cannot be compared: each is reported, the rest compared.
        mismatches = []
        let report = try Verify(map: map, options: .init(onError: .fail)).run(image: image, isStream: false) { mismatches.append($0) }
        #expect(mismatches.map(\.range) == [SectorRange(start: 800, length: 8), SectorRange(start: 2408, length: 8)])
        #expect(mismatches.allSatisfy { $0.kind == .unverifiable })
        #expect(report.ranges == 2 && !report.identical)
        #expect(mismatches[0].description.contains("unverifiable") && mismatches[0].description.contains("reads fail with EIO"), "\(mismatches[0].description)")
    }

    // MARK: Malformed hash devices

    /// Hash devices with random damage (flipped bytes anywhere in the tree, or garbage of the right size):
    /// every read finishes, fails only in whole data blocks, and returns the data wherever it succeeds.
    @Test(arguments: 0..<12)
    func aMalformedHashDeviceNeverCrashesOrHangs(_ seed: UInt64) throws {
        var random = SplitMix64(seed: seed &* 0x9e37_79b9 &+ 1)
        let folder = TemporaryDirectory()
        var hash = readBytes(Self.goldenDevices["H"]!)
        if seed % 4 == 3 {
            hash = random.bytes(hash.count)
        } else {
            for _ in 0..<(1 + Int(random.next() % 6)) {
                let offset = 4096 + Int(random.next() % UInt64(hash.count - 4096))
                hash[offset] ^= UInt8(truncatingIfNeeded: random.next() | 1)
            }
        }
        let path = folder.file("H.img")
        FileManager.default.createFile(atPath: path, contents: Data(hash))
        let loaded = try loadTables(Self.golden(), devices: ["D": Self.goldenDevices["D"]!, "H": path])
        let (bytes, errors) = try composeVerity(loaded)
        let expected = GoldenImages.bytes("D", sectors: 4096)
        var failed = [Bool](repeating: false, count: 512)
        for range in errors {
            #expect(range.start % 8 == 0 && range.length % 8 == 0, "seed \(seed): \(range)")
            for block in Int(range.start / 8)..<Int((range.start + range.length) / 8) { failed[block] = true }
        }
        for block in 0..<512 {
            let slice = bytes[block * 4096..<(block + 1) * 4096]
            if failed[block] {
                #expect(slice.allSatisfy { $0 == 0 }, "seed \(seed): block \(block)")
            } else {
                #expect(slice == expected[block * 4096..<(block + 1) * 4096], "seed \(seed): block \(block)")
            }
        }
        if seed % 4 == 3 { #expect(errors == [SectorRange(start: 0, length: 4096)]) }
    }
}
