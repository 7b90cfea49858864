import Foundation
import Testing

@testable import ImgMapCore

// Crypt's fast paths (reads and writes cut into parts on every core, compose reading ahead on a
// background thread) against a reference made unit by unit in the test: one OpenSSL call per crypto
// unit, its IV computed here from dm-crypt's rule. Extents of several MiB (many parts, many read-ahead
// chunks), odd starts, iv_offset, 512- and 4096-byte units, so no batching or threading can reorder
// data or give a unit another unit's IV without a test failing.

struct CryptBatchTests {
    static let key: [UInt8] = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 53 &+ 7) }
    static var keyHex: String { key.map { String(format: "%02x", $0) }.joined() }
    /// The lower image: 12 MiB of SplitMix64 bytes.
    static let lowerBytes = 12 << 20

    struct Case: CustomTestStringConvertible, Sendable {
        var cipher = "aes-xts-plain64"
        var keyBytes = 64
        /// Table start of the crypt line in the top device (a zero line fills the sectors before it).
        var topStart: UInt64
        var sectors: UInt64
        var ivOffset: UInt64
        var lowerStart: UInt64
        var sectorSize = 512
        var ivLargeSectors = false
        var testDescription: String {
            "\(cipher) \(sectors) sectors at \(topStart), lower \(lowerStart), iv_offset \(ivOffset), sector_size \(sectorSize)\(ivLargeSectors ? " iv_large_sectors" : "")"
        }

        var table: String {
            let key = CryptBatchTests.keyHex.prefix(keyBytes * 2)
            let options = sectorSize == 512 ? "" : ivLargeSectors ? " 2 sector_size:\(sectorSize) iv_large_sectors" : " 1 sector_size:\(sectorSize)"
            return (topStart > 0 ? "0 \(topStart) zero\n" : "")
                + "\(topStart) \(sectors) crypt \(cipher) \(key) \(ivOffset) P \(lowerStart)\(options)\n"
        }
    }

    static let cases: [Case] = [
        Case(topStart: 1, sectors: 20_001, ivOffset: 77, lowerStart: 3),
        Case(topStart: 3, sectors: 19_992, ivOffset: 80, lowerStart: 5, sectorSize: 4096),
        Case(topStart: 0, sectors: 20_000, ivOffset: 88, lowerStart: 9, sectorSize: 4096, ivLargeSectors: true),
        Case(cipher: "aes-cbc-essiv:sha256", keyBytes: 32, topStart: 5, sectors: 19_999, ivOffset: 1, lowerStart: 1),
        Case(cipher: "aes-xts-plain", keyBytes: 32, topStart: 0, sectors: 17_000, ivOffset: 0xffff_ffff - 9000, lowerStart: 11),
    ]

    /// The segment's plaintext (or ciphertext, encrypting) computed unit by unit: `data` holds the
    /// segment's units in order.
    static func reference(_ c: Case, _ data: [UInt8], encrypt: Bool) throws -> [UInt8] {
        let (cipher, iv) = try CryptTarget.parseCipher(c.cipher)
        let key = SecretBytes(copying: Array(Self.key[0..<c.keyBytes]))
        let context = try CipherContext(cipher: cipher, key: key, encrypt: encrypt)
        let essivKey = Self.key[0..<c.keyBytes].withUnsafeBytes { OpenSSLDigest.hash("sha256", $0) }
        let essiv = try essivKey.map { try CipherContext(cipher: .aesECB, key: $0, encrypt: true) }
        var out = data
        let unitSectors = UInt64(c.sectorSize / 512)
        for unit in 0..<data.count / c.sectorSize {
            var number = UInt64(unit) * unitSectors + c.ivOffset
            if c.ivLargeSectors { number /= unitSectors }
            var ivBytes = [UInt8](repeating: 0, count: 16)
            let value: UInt64 = { if case .plain = iv { return number & 0xffff_ffff } else { return number } }()
            for i in 0..<8 { ivBytes[i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
            if case .essiv = iv, let essiv {
                try ivBytes.withUnsafeMutableBytes { try essiv.process($0, iv: $0.baseAddress!) }
            }
            try out.withUnsafeMutableBytes { all in
                let range = unit * c.sectorSize..<(unit + 1) * c.sectorSize
                try ivBytes.withUnsafeBytes { try context.process(UnsafeMutableRawBufferPointer(rebasing: all[range]), iv: $0.baseAddress!) }
            }
        }
        return out
    }

    func lowerImage(_ folder: TemporaryDirectory) -> (String, [UInt8]) {
        var random = SplitMix64(seed: 0xc0ffee)
        let bytes = random.bytes(Self.lowerBytes)
        let path = folder.file("P.img")
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return (path, bytes)
    }

    /// What reading the top device gives: zeros before the crypt line, then its decryption.
    func expectedTop(_ c: Case, lower: [UInt8]) throws -> [UInt8] {
        let start = Int(c.lowerStart) * 512
        let plain = try Self.reference(c, Array(lower[start..<start + Int(c.sectors) * 512]), encrypt: false)
        return [UInt8](repeating: 0, count: Int(c.topStart) * 512) + plain
    }

    @Test(arguments: cases)
    func composeToAFileEqualsUnitByUnitDecryption(_ c: Case) throws {
        let folder = TemporaryDirectory()
        let (image, lower) = lowerImage(folder)
        let table = folder.write("t.table", c.table)
        let loaded = try TableLoader(bindings: Bindings(tables: [.init(name: nil, path: table)], devices: [(token: "P", target: image)])).load()
        let path = folder.file("out.img")
        let out = try OutputFile(path: path, inputs: loaded.leaves.map(\.image))
        _ = try Compose(map: SectorMap(top: loaded.top), options: .init()).run(to: out)
        try out.commit()
        let expected = try expectedTop(c, lower: lower)
        expectSameBytes(readBytes(path), expected, "compose to a file")
        // MapReader's own reads (verify, serve) at an odd sector and length take the other path.
        let reader = MapReader(map: SectorMap(top: loaded.top), onError: .fail)
        var middle = [UInt8](repeating: 0, count: 3_000 * 512)
        try middle.withUnsafeMutableBytes { try reader.read(into: $0, at: Sector(4_321)) }
        expectSameBytes(middle, Array(expected[4_321 * 512..<(4_321 + 3_000) * 512]), "read at sector 4321")
    }

    @Test(arguments: [cases[0], cases[2]])
    func composeToAPipeEqualsUnitByUnitDecryption(_ c: Case) throws {
        let folder = TemporaryDirectory()
        let (image, lower) = lowerImage(folder)
        _ = folder.write("t.table", c.table)
        let out = folder.file("out.img")
        let command = "'\(imgmapBinary)' compose t.table --dev P='\(image)' -o - | cat > '\(out)'"
        let run = try runTool(["sh", "-c", "cd '\(folder.path)' && \(command)"])
        #expect(run.status == 0, "\(run.error)")
        expectSameBytes(readBytes(out), try expectedTop(c, lower: lower), "compose to a pipe")
    }

    /// Scatter encrypts in parts on every core: the lower image then holds, unit by unit, the
    /// reference encryption of the input, and nothing outside the line's range changed.
    @Test(arguments: [cases[0], cases[1], cases[3]])
    func scatterEqualsUnitByUnitEncryption(_ c: Case) throws {
        let folder = TemporaryDirectory()
        let (image, lower) = lowerImage(folder)
        let table = folder.write("t.table", c.table)
        var random = SplitMix64(seed: 99)
        let input = random.bytes(Int(c.topStart + c.sectors) * 512)
        let inputPath = folder.file("in.img")
        FileManager.default.createFile(atPath: inputPath, contents: Data(input))
        let loaded = try TableLoader(bindings: Bindings(tables: [.init(name: nil, path: table)], devices: [(token: "P", target: image)])).load()
        _ = try scatterFile(SectorMap(top: loaded.top), input: inputPath)
        let start = Int(c.lowerStart) * 512
        let end = start + Int(c.sectors) * 512
        var expected = lower
        let written: [UInt8] = Array(input[(Int(c.topStart) * 512)..<input.count])
        let cipherText = try Self.reference(c, written, encrypt: true)
        expected.replaceSubrange(start..<end, with: cipherText)
        expectSameBytes(readBytes(image), expected, "lower image after scatter")
    }
}
