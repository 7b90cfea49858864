import CArgon2
import Foundation

/// What a LUKS header and its key material are read from: an image file, or a partition, array or LV
/// that `probe` reads through to its images. `path` names it in messages.
public protocol LUKSMedium {
    var path: String { get }
    func byteSize() throws -> UInt64
    func readExactly(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws
}

extension ImageFile: LUKSMedium {}

/// A LUKS1 or LUKS2 volume opened from its header: the data segment's cipher, offset and size, and
/// (after `unlock`) the volume key, so that the crypt table line cryptsetup would load can be printed.
///
/// LUKS1: one 592-byte big-endian header at offset 0, PBKDF2 keyslots. LUKS2: a 4 KiB binary header
/// plus JSON metadata, twice (primary at 0, secondary at the primary's size); each copy is checked
/// against its SHA-256 checksum and the valid copy with the higher sequence id is used.
public struct LUKSVolume {
    /// LUKS version: 1 or 2.
    public var version: Int
    /// The header's UUID.
    public var uuid: String
    /// The data segment: cipher spec (`aes-xts-plain64`), first byte, length in bytes (nil: to the
    /// end of the device), IV tweak in sectors, crypto unit in bytes, persistent dm-crypt flags.
    public var cipher: String
    /// Volume key length in bytes.
    public var keyBytes: Int
    /// First byte of the encrypted data.
    public var offset: UInt64
    /// Bytes of encrypted data; nil when the segment runs to the end of the device (`dynamic`).
    public var size: UInt64?
    /// IV offset in 512-byte sectors (the crypt line's iv_offset).
    public var ivTweak: UInt64
    /// Crypto unit in bytes (512 to 4096).
    public var sectorSize: UInt64
    /// Persistent dm-crypt flags the header asks for (allow_discards, same_cpu_crypt …).
    public var flags: [String]
    /// Non-fatal findings: a LUKS2 header copy that was bad while the other was good.
    public var warnings: [String]
    var keyslots: [Keyslot]
    var digests: [Digest]

    struct KDF {
        var type: String            // pbkdf2, argon2i, argon2id
        var hash: String = "sha256"
        var iterations: Int = 0     // pbkdf2 iterations, argon2 time cost
        var memory: Int = 0         // argon2, KiB
        var cpus: Int = 1
        var salt: [UInt8]
    }

    struct Keyslot {
        var id: String
        var keyBytes: Int
        var kdf: KDF
        var areaOffset: UInt64
        var areaEncryption: String
        var areaKeyBytes: Int
        var stripes: Int
        var afHash: String
    }

    struct Digest {
        var keyslots: [String]
        var hash: String
        var iterations: Int
        var salt: [UInt8]
        var digest: [UInt8]
    }

    /// A header that cannot be used, or a passphrase or key that unlocks no keyslot, with its exit status.
    public struct Failure: ImgMapFailure {
        public var description: String
        public var exitStatus: ExitStatus
    }

    static let magic1: [UInt8] = [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]   // "LUKS\xba\xbe"
    static let magic2: [UInt8] = [0x53, 0x4b, 0x55, 0x4c, 0xba, 0xbe]   // "SKUL\xba\xbe", LUKS2 secondary

    /// Reads the header(s) of `image` (a file, or a volume `probe` found); no key derivation yet.
    public static func load(image: some LUKSMedium) throws -> LUKSVolume {
        let path = image.path
        let fileSize = try image.byteSize()
        guard fileSize >= 592 else {
            throw Failure(description: "\(path): not a LUKS volume: \(fileSize) bytes, shorter than a LUKS header", exitStatus: .dataError)
        }
        let head = try Self.read(image, at: 0, count: 592)
        guard Array(head[0..<6]) == Self.magic1 else {
            // A LUKS2 volume whose primary header is destroyed may still have its secondary.
            if let volume = try Self.luks2(image, primaryProblem: "bad magic (not `LUKS\\xba\\xbe`)") { return volume }
            throw Failure(description: "\(path): not a LUKS volume: no LUKS magic at offset 0", exitStatus: .dataError)
        }
        let version = Int(Self.be16(head, 6))
        switch version {
        case 1: return try Self.luks1(image, head)
        case 2:
            guard let volume = try Self.luks2(image, primaryProblem: nil) else { preconditionFailure() }
            return volume
        default:
            throw Failure(description: "\(path): LUKS version \(version) at offset 6: imgmap reads versions 1 and 2", exitStatus: .dataError)
        }
    }

    // MARK: LUKS1

    static func luks1(_ image: some LUKSMedium, _ h: [UInt8]) throws -> LUKSVolume {
        let path = image.path
        let cipherName = cString(h[8..<40]), cipherMode = cString(h[40..<72]), hash = cString(h[72..<104])
        let payload = UInt64(be32(h, 104)), keyBytes = Int(be32(h, 108))
        guard keyBytes > 0, keyBytes <= 512 else {
            throw Failure(description: "\(path): LUKS1 header: key-bytes \(keyBytes) at offset 108 is not a key size", exitStatus: .dataError)
        }
        guard OpenSSLDigest.size(hash) != nil else {
            throw Failure(description: "\(path): LUKS1 header: hash-spec `\(hash)` at offset 72: imgmap knows sha1, sha256, sha512, sha384, sha224, ripemd160", exitStatus: .dataError)
        }
        var slots: [Keyslot] = []
        for i in 0..<8 {
            let at = 208 + 48 * i
            guard be32(h, at) == 0x00AC_71F3 else { continue }
            let stripes = Int(be32(h, at + 44))
            slots.append(Keyslot(id: String(i), keyBytes: keyBytes,
                                 kdf: KDF(type: "pbkdf2", hash: hash, iterations: Int(be32(h, at + 4)), salt: Array(h[at + 8..<at + 40])),
                                 areaOffset: UInt64(be32(h, at + 40)) * 512, areaEncryption: "\(cipherName)-\(cipherMode)",
                                 areaKeyBytes: keyBytes, stripes: stripes, afHash: hash))
        }
        let digest = Digest(keyslots: slots.map(\.id), hash: hash, iterations: Int(be32(h, 164)),
                            salt: Array(h[132..<164]), digest: Array(h[112..<132]))
        return LUKSVolume(version: 1, uuid: cString(h[168..<208]), cipher: "\(cipherName)-\(cipherMode)", keyBytes: keyBytes,
                          offset: payload * 512, size: nil, ivTweak: 0, sectorSize: 512, flags: [], warnings: [],
                          keyslots: slots, digests: [digest])
    }

    // MARK: LUKS2

    /// Offsets cryptsetup looks for a secondary header at when the primary cannot say.
    static let secondaryOffsets: [UInt64] = [0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000]

    static func luks2(_ image: some LUKSMedium, primaryProblem: String?) throws -> LUKSVolume? {
        let path = image.path
        var problems: [String] = []
        var primary: (seqid: UInt64, json: [String: Any], size: UInt64)?
        if let primaryProblem {
            problems.append("primary header at offset 0: \(primaryProblem)")
        } else {
            switch checkLUKS2(image, at: 0, magic: magic1) {
            case .success(let copy): primary = copy
            case .failure(let problem): problems.append("primary header at offset 0: \(problem.description)")
            }
        }
        var secondary: (seqid: UInt64, json: [String: Any], size: UInt64)?
        let candidates = primary.map { [$0.size] } ?? secondaryOffsets
        var secondaryProblem: String?
        for offset in candidates {
            switch checkLUKS2(image, at: offset, magic: magic2) {
            case .success(let copy):
                secondary = copy
                secondaryProblem = nil
            case .failure(let problem):
                if primary != nil || secondaryProblem == nil { secondaryProblem = "secondary header at offset \(offset): \(problem.description)" }
            }
            if secondary != nil { break }
        }
        if primaryProblem != nil && secondary == nil { return nil }
        if let secondaryProblem, secondary == nil { problems.append(secondaryProblem) }
        guard let chosen = [primary, secondary].compactMap({ $0 }).max(by: { $0.seqid < $1.seqid }) else {
            throw Failure(description: "\(path): LUKS2 header: \(problems.joined(separator: "; "))", exitStatus: .dataError)
        }
        var volume = try parseLUKS2JSON(chosen.json, path: path)
        volume.warnings = problems.map { "\(path): LUKS2 \($0); using the other copy" }
        return volume
    }

    struct HeaderProblem: Error, CustomStringConvertible { var description: String }

    /// One LUKS2 header copy at `offset`: magic, version, size, checksum (SHA-256 over the header and
    /// its JSON area with the checksum field zeroed), then the JSON text.
    static func checkLUKS2(_ image: some LUKSMedium, at offset: UInt64, magic: [UInt8]) -> Result<(seqid: UInt64, json: [String: Any], size: UInt64), HeaderProblem> {
        guard let fileSize = try? image.byteSize(), offset + 4096 <= fileSize,
              let bin = try? read(image, at: offset, count: 4096) else {
            return .failure(HeaderProblem(description: "truncated (the image ends before the 4096-byte binary header)"))
        }
        guard Array(bin[0..<6]) == magic else { return .failure(HeaderProblem(description: "bad magic")) }
        guard be16(bin, 6) == 2 else { return .failure(HeaderProblem(description: "version \(be16(bin, 6)), expected 2")) }
        let size = be64(bin, 8)
        guard [0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000].contains(size) else {
            return .failure(HeaderProblem(description: "header size \(size) at offset \(offset + 8) is not one LUKS2 allows"))
        }
        guard be64(bin, 256) == offset else {
            return .failure(HeaderProblem(description: "hdr_offset \(be64(bin, 256)) does not match its place \(offset)"))
        }
        let algorithm = cString(bin[72..<104])
        guard algorithm == "sha256" else { return .failure(HeaderProblem(description: "checksum algorithm `\(algorithm)`: imgmap checks sha256")) }
        guard offset + size <= fileSize, var whole = try? read(image, at: offset, count: Int(size)) else {
            return .failure(HeaderProblem(description: "truncated (the JSON area ends at \(offset + size), past the image's end \(fileSize))"))
        }
        let stored = Array(whole[448..<480])
        for i in 448..<512 { whole[i] = 0 }
        guard let sum = whole.withUnsafeBytes({ OpenSSLDigest.hash("sha256", $0) }) else {
            return .failure(HeaderProblem(description: "sha256 unavailable"))
        }
        guard sum.withBytes({ Array($0) }) == stored else {
            return .failure(HeaderProblem(description: "checksum mismatch (the header or its JSON area at \(offset + 4096) is corrupt)"))
        }
        let jsonBytes = whole[4096...].prefix(while: { $0 != 0 })
        guard let object = try? JSONSerialization.jsonObject(with: Data(jsonBytes)) as? [String: Any] else {
            return .failure(HeaderProblem(description: "the JSON metadata at \(offset + 4096) does not parse"))
        }
        return .success((be64(bin, 16), object, size))
    }

    static func parseLUKS2JSON(_ json: [String: Any], path: String) throws -> LUKSVolume {
        func bad(_ what: String) -> Failure {
            Failure(description: "\(path): LUKS2 metadata: \(what)", exitStatus: .dataError)
        }
        func number(_ value: Any?) -> UInt64? {
            if let s = value as? String { return UInt64(s) }
            if let n = value as? NSNumber { return n.uint64Value }
            return nil
        }
        func base64(_ value: Any?) -> [UInt8]? {
            (value as? String).flatMap { Data(base64Encoded: $0) }.map { [UInt8]($0) }
        }
        guard let segments = json["segments"] as? [String: Any] else { throw bad("no segments") }
        // The data segment cryptsetup activates: the crypt segment with the lowest id.
        guard let (segmentID, segment) = segments.compactMap({ (k, v) -> (Int, [String: Any])? in
            guard let id = Int(k), let s = v as? [String: Any], s["type"] as? String == "crypt" else { return nil }
            return (id, s)
        }).min(by: { $0.0 < $1.0 }) else { throw bad("no crypt segment (segments of other types are not implemented)") }
        guard let encryption = segment["encryption"] as? String, let offset = number(segment["offset"]) else {
            throw bad("segment \(segmentID): no encryption or offset")
        }
        if segment["integrity"] != nil { throw bad("segment \(segmentID) has integrity protection (dm-integrity), which imgmap does not implement") }
        let sizeText = segment["size"] as? String
        let size: UInt64? = sizeText == "dynamic" ? nil : number(segment["size"])
        guard sizeText == "dynamic" || size != nil else { throw bad("segment \(segmentID): size `\(sizeText ?? "?")`") }
        let sectorSize = number(segment["sector_size"]) ?? 512
        let ivTweak = number(segment["iv_tweak"]) ?? 0

        var keyslots: [Keyslot] = []
        for (id, value) in (json["keyslots"] as? [String: Any] ?? [:]).sorted(by: { (Int($0.key) ?? 0) < (Int($1.key) ?? 0) }) {
            guard let slot = value as? [String: Any], slot["type"] as? String == "luks2",
                  let keySize = number(slot["key_size"]), let kdf = slot["kdf"] as? [String: Any],
                  let af = slot["af"] as? [String: Any], let area = slot["area"] as? [String: Any],
                  let kdfType = kdf["type"] as? String, let salt = base64(kdf["salt"]),
                  let areaOffset = number(area["offset"]), let areaEncryption = area["encryption"] as? String,
                  let areaKey = number(area["key_size"]), let stripes = number(af["stripes"]), let afHash = af["hash"] as? String
            else { continue }
            var k = KDF(type: kdfType, salt: salt)
            switch kdfType {
            case "pbkdf2":
                k.hash = kdf["hash"] as? String ?? "sha256"
                k.iterations = Int(number(kdf["iterations"]) ?? 0)
            case "argon2i", "argon2id":
                k.iterations = Int(number(kdf["time"]) ?? 0)
                k.memory = Int(number(kdf["memory"]) ?? 0)
                k.cpus = Int(number(kdf["cpus"]) ?? 1)
            default: continue
            }
            keyslots.append(Keyslot(id: id, keyBytes: Int(keySize), kdf: k, areaOffset: areaOffset, areaEncryption: areaEncryption,
                                    areaKeyBytes: Int(areaKey), stripes: Int(stripes), afHash: afHash))
        }
        var digests: [Digest] = []
        for (_, value) in json["digests"] as? [String: Any] ?? [:] {
            guard let d = value as? [String: Any], d["type"] as? String == "pbkdf2", let salt = base64(d["salt"]),
                  let digest = base64(d["digest"]), let iterations = number(d["iterations"]) else { continue }
            let segs = (d["segments"] as? [String]) ?? []
            guard segs.contains(String(segmentID)) else { continue }
            digests.append(Digest(keyslots: (d["keyslots"] as? [String]) ?? [], hash: d["hash"] as? String ?? "sha256",
                                  iterations: Int(iterations), salt: salt, digest: digest))
        }
        let keyBytes = keyslots.first(where: { slot in digests.contains { $0.keyslots.contains(slot.id) } })?.keyBytes ?? 0
        let config = json["config"] as? [String: Any]
        let flags = (config?["flags"] as? [String]) ?? []
        return LUKSVolume(version: 2, uuid: "", cipher: encryption, keyBytes: keyBytes, offset: offset, size: size,
                          ivTweak: ivTweak, sectorSize: sectorSize, flags: flags, warnings: [], keyslots: keyslots, digests: digests)
    }

    /// What unlocks a volume, read as cryptsetup reads it: a passphrase file loses one trailing
    /// newline; a key file is every byte (at most 8 MiB, cryptsetup's limit). `option` names the flag
    /// in messages.
    public static func readSecret(path: String, keyFile: Bool, option: String) throws -> SecretBytes {
        var bytes: [UInt8]
        do {
            bytes = try readWholeFile(path)
        } catch let failure as IOFailure {
            throw IOFailure(path: path, operation: failure.operation, errno: failure.errno, exitStatus: .noInput,
                            hint: "the \(option) file cannot be read")
        }
        defer { SecretBytes.wipe(&bytes) }
        if !keyFile, bytes.last == UInt8(ascii: "\n") {
            bytes[bytes.count - 1] = 0
            bytes.removeLast()
        }
        guard !bytes.isEmpty else { throw Failure(description: "\(path) (\(option)): the passphrase is empty", exitStatus: .dataError) }
        guard bytes.count <= 8 << 20 else {
            throw Failure(description: "\(path) (\(option)): \(bytes.count) bytes, larger than a key file may be (8 MiB, cryptsetup's limit)", exitStatus: .dataError)
        }
        return SecretBytes(copying: bytes)
    }

    // MARK: unlocking

    /// The volume key from `passphrase`: each keyslot whose digest covers the data segment is tried
    /// in order. A passphrase that opens none is a `.noPermission` failure.
    public func unlock(image: some LUKSMedium, passphrase: SecretBytes) throws -> (key: SecretBytes, keyslot: String) {
        let usable = keyslots.filter { slot in digests.contains { $0.keyslots.contains(slot.id) } }
        guard !usable.isEmpty else {
            throw Failure(description: "\(image.path): LUKS\(version) volume has no active keyslot for its data segment", exitStatus: .dataError)
        }
        for slot in usable {
            guard let candidate = try open(slot, image: image, passphrase: passphrase) else { continue }
            for digest in digests where digest.keyslots.contains(slot.id) {
                let check = candidate.withBytes {
                    OpenSSLDigest.pbkdf2(hash: digest.hash, password: $0, salt: digest.salt, iterations: digest.iterations, length: digest.digest.count)
                }
                if let check, check.equals(SecretBytes(copying: digest.digest)) { return (candidate, slot.id) }
            }
        }
        throw Failure(description: "\(image.path): no keyslot opens with this passphrase (tried keyslot\(usable.count == 1 ? "" : "s") \(usable.map(\.id).joined(separator: ", ")))",
                      exitStatus: .noPermission)
    }

    /// The candidate volume key a keyslot gives for `passphrase` (not yet checked against a digest).
    func open(_ slot: Keyslot, image: some LUKSMedium, passphrase: SecretBytes) throws -> SecretBytes? {
        let where_ = "\(image.path): LUKS\(version) keyslot \(slot.id)"
        guard let derived = try derive(slot.kdf, passphrase: passphrase, length: slot.areaKeyBytes, place: where_) else { return nil }
        let materialBytes = slot.keyBytes * slot.stripes
        let sectors = (materialBytes + 511) / 512
        guard slot.stripes > 0, sectors > 0, materialBytes <= 64 << 20 else {
            throw Failure(description: "\(where_): \(slot.stripes) stripes of \(slot.keyBytes) bytes is not a key area", exitStatus: .dataError)
        }
        let area = SecretBytes(count: sectors * 512)
        let fileSize = try image.byteSize()
        guard slot.areaOffset + UInt64(sectors * 512) <= fileSize else {
            throw Failure(description: "\(where_): the key material at bytes \(slot.areaOffset)+\(sectors * 512) is past the image's end (\(fileSize) bytes): truncated", exitStatus: .dataError)
        }
        try area.withMutableBytes { try image.readExactly(into: $0, at: slot.areaOffset) }
        let transform: CryptTransform
        do {
            transform = try CryptTransform(spec: slot.areaEncryption, key: derived)
        } catch {
            throw Failure(description: "\(where_): key area cipher `\(slot.areaEncryption)`: \(error.message)\(error.detail.map { " (\($0))" } ?? "")", exitStatus: .dataError)
        }
        try area.withMutableBytes { try transform.transform($0, firstSector: 0, encrypt: false) }
        return area.withBytes { AntiForensic.merge($0, blockSize: slot.keyBytes, stripes: slot.stripes, hash: slot.afHash) }
    }

    func derive(_ kdf: KDF, passphrase: SecretBytes, length: Int, place: String) throws -> SecretBytes? {
        switch kdf.type {
        case "pbkdf2":
            guard let key = passphrase.withBytes({ OpenSSLDigest.pbkdf2(hash: kdf.hash, password: $0, salt: kdf.salt, iterations: kdf.iterations, length: length) }) else {
                throw Failure(description: "\(place): pbkdf2 with hash `\(kdf.hash)` and \(kdf.iterations) iterations cannot be computed", exitStatus: .dataError)
            }
            return key
        case "argon2i", "argon2id":
            let out = SecretBytes(count: length)
            let status = passphrase.withBytes { pw in
                out.withMutableBytes { o in
                    kdf.salt.withUnsafeBytes { s in
                        kdf.type == "argon2id"
                            ? argon2id_hash_raw(UInt32(kdf.iterations), UInt32(kdf.memory), UInt32(kdf.cpus), pw.baseAddress, pw.count,
                                                s.baseAddress, s.count, o.baseAddress, o.count)
                            : argon2i_hash_raw(UInt32(kdf.iterations), UInt32(kdf.memory), UInt32(kdf.cpus), pw.baseAddress, pw.count,
                                               s.baseAddress, s.count, o.baseAddress, o.count)
                    }
                }
            }
            guard status == ARGON2_OK.rawValue else {
                let message = String(cString: argon2_error_message(status))
                throw Failure(description: "\(place): \(kdf.type) (time \(kdf.iterations), memory \(kdf.memory) KiB, \(kdf.cpus) threads): \(message)", exitStatus: .dataError)
            }
            return out
        default:
            return nil
        }
    }

    // MARK: the table line

    /// The crypt line cryptsetup loads for this volume over `device` (`deviceSectors` long): the key
    /// as zeros unless `showKey`.
    public func tableLine(device: String, deviceSectors: UInt64, key: SecretBytes?, showKey: Bool) throws -> String {
        let start = offset / 512
        guard deviceSectors > start else {
            throw Failure(description: "\(device): the data segment starts at byte \(offset), past the image's end", exitStatus: .dataError)
        }
        let length = size.map { $0 / 512 } ?? deviceSectors - start
        let shown = showKey ? key?.hex ?? "" : String(repeating: "0", count: (key?.count ?? keyBytes) * 2)
        var options: [String] = []
        let names = ["allow-discards": "allow_discards", "same-cpu-crypt": "same_cpu_crypt", "submit-from-crypt-cpus": "submit_from_crypt_cpus",
                     "no-read-workqueue": "no_read_workqueue", "no-write-workqueue": "no_write_workqueue"]
        for flag in ["allow-discards", "same-cpu-crypt", "submit-from-crypt-cpus", "no-read-workqueue", "no-write-workqueue"] where flags.contains(flag) {
            options.append(names[flag]!)
        }
        if sectorSize != 512 { options.append("sector_size:\(sectorSize)") }
        let tail = options.isEmpty ? "" : " \(options.count) " + options.joined(separator: " ")
        return "0 \(length) crypt \(cipher) \(shown) \(ivTweak) \(device) \(start)\(tail)"
    }

    // MARK: bytes

    static func read(_ image: some LUKSMedium, at offset: UInt64, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try image.readExactly(into: $0, at: offset) }
        return bytes
    }

    static func be16(_ b: [UInt8], _ at: Int) -> UInt16 { UInt16(b[at]) << 8 | UInt16(b[at + 1]) }
    static func be32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 << 8 | UInt32(b[at + $1]) } }
    static func be64(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 << 8 | UInt64(b[at + $1]) } }
    static func cString(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
}
