/// dm-crypt: the segment reads as the decryption of a lower device (and writes encrypt).
///
/// ```
/// crypt <cipher> <key> <iv_offset> <device> <offset> [<#opt_params> <opt_params>...]
/// ```
///
/// Maps the segment onto the decryption of `device` from sector `offset` (dm-crypt.c). Each crypto unit
/// (512 bytes, or `sector_size:N`) is encrypted alone, with an IV made from the unit's first sector
/// relative to the segment start plus `iv_offset` (divided by N/512 with `iv_large_sectors`).
///
/// <cipher>  `cipher[:keycount]-chainmode-ivmode[:ivopts]` or `capi:<crypto API spec>-ivmode[:ivopts]`.
/// <key>     hex digits, `-` for none, or `:<size>:<logon|user|encrypted>:<description>` (a keyring key,
///           which imgmap cannot read: the key is supplied with `--key`). A key supplied for the device
///           also replaces a hex key (the zeros `dmsetup table` shows), which must then have its length.
/// options   allow_discards same_cpu_crypt submit_from_crypt_cpus no_read_workqueue no_write_workqueue
///           sector_size:<bytes> iv_large_sectors (integrity:… is refused: no dm-integrity here).
///
/// Checks run in the kernel's order (crypt_ctr): argument count, key size, optional parameters, the
/// cipher (crypt_ctr_cipher_old/new), the IV mode, the key, iv_offset, the device, the device sector.
public struct CryptTarget: Target {
    public static let name = "crypt"

    package let source: CryptSource
    let cipherText: String
    /// The key as the kernel table shows it (zeros, `-`, or the keyring reference).
    let shownKey: String
    let options: Options

    /// The optional parameters, as flags (repeats count once, as the kernel's set_bit).
    struct Options {
        var allowDiscards = false, sameCPU = false, noOffload = false, noReadQueue = false, noWriteQueue = false
        var sectorSize: UInt64 = 512
        var ivLargeSectors = false

        /// The kernel's status order (crypt_status).
        var normalForm: String {
            var words: [String] = []
            if allowDiscards { words.append("allow_discards") }
            if sameCPU { words.append("same_cpu_crypt") }
            if noOffload { words.append("submit_from_crypt_cpus") }
            if noReadQueue { words.append("no_read_workqueue") }
            if noWriteQueue { words.append("no_write_workqueue") }
            if sectorSize != 512 { words.append("sector_size:\(sectorSize)") }
            if ivLargeSectors { words.append("iv_large_sectors") }
            return words.isEmpty ? "" : " \(words.count) " + words.joined(separator: " ")
        }
    }

    /// What imgmap implements, for the refusal of what it does not.
    public static let supportedCiphers =
        "aes-xts-plain64, aes-xts-plain, aes-xts-plain64be, aes-xts-null, aes-cbc-plain64, aes-cbc-plain, "
        + "aes-cbc-plain64be, aes-cbc-null, aes-cbc-essiv:sha256, and their capi: forms (capi:xts(aes)-plain64, "
        + "capi:cbc(aes)-essiv:sha256 …)"

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        guard arguments.count >= 5 else {
            throw TargetError("Not enough arguments", detail: "crypt takes <cipher> <key> <iv_offset> <device> <offset> [<#opt_params> <opt_params>...], got \(arguments.count) arguments")
        }
        // get_key_size
        let keyText = arguments[1]
        let keySize: Int
        var keyring: String?
        if keyText.hasPrefix(":") {
            let rest = keyText.dropFirst()
            guard let colon = rest.firstIndex(of: ":"), let size = KernelNumber.sector(String(rest[..<colon])),
                  Int32(bitPattern: UInt32(truncatingIfNeeded: size)) >= 0 else {
                throw TargetError("Cannot parse key size", detail: "a keyring key is `:<size>:<logon|user|encrypted>:<description>`")
            }
            keySize = Int(UInt32(truncatingIfNeeded: size))
            keyring = String(rest[rest.index(after: colon)...])
        } else {
            keySize = keyText.utf8.count >> 1
        }

        // crypt_ctr_optional, before the cipher
        var options = Options()
        if arguments.count > 5 {
            options = try Self.parseOptions(Array(arguments[5...]), length: length.value)
        }

        let (cipher, iv) = try Self.parseCipher(arguments[0])

        // crypt_set_key
        let key = try Self.decodeKey(keyText, size: keySize, keyring: keyring, cipher: cipher, context: context)

        // crypt_ctr: iv_offset, device, device sector
        let unitSectors = options.sectorSize / 512
        guard let ivOffset = KernelNumber.sector(arguments[2]), ivOffset & (unitSectors - 1) == 0 else {
            throw TargetError("Invalid iv_offset sector", detail: KernelNumber.sector(arguments[2]) == nil
                ? "`\(arguments[2])` is not a decimal sector number"
                : "\(arguments[2]) is not a multiple of \(unitSectors) (sector_size:\(options.sectorSize) in 512-byte sectors)")
        }
        let device = try context.device(arguments[3])
        guard let offset = KernelNumber.sector(arguments[4]) else {
            throw TargetError("Invalid device sector", detail: "`\(arguments[4])` is not a decimal sector number")
        }
        let essiv: SecretBytes?
        if case .essiv = iv {
            essiv = key.withBytes { OpenSSLDigest.hash("sha256", $0) }
        } else {
            essiv = nil
        }
        source = CryptSource(device: device, token: arguments[3], lowerStart: offset, length: length.value,
                             cipherName: arguments[0], cipher: cipher, key: key, iv: iv, essivKey: essiv,
                             ivOffset: ivOffset, unitSectors: unitSectors, ivLargeSectors: options.ivLargeSectors)
        cipherText = arguments[0]
        if keyring != nil {
            shownKey = ":\(keySize):\(keyring!)"
        } else {
            shownKey = String(repeating: "0", count: keySize * 2)
        }
        self.options = options
    }

    static func parseOptions(_ arguments: [String], length: UInt64) throws(TargetError) -> Options {
        // dm_read_arg_group: a count of 0…8 that the remaining arguments can satisfy. Arguments past
        // the count are ignored, as the kernel does.
        guard let count = KernelNumber.unsigned32Scanf(arguments[0]), count <= 8, Int(count) <= arguments.count - 1 else {
            throw TargetError("Invalid number of feature args",
                              detail: "`\(arguments[0])`: a count of 0 to 8 optional parameters that follow")
        }
        var options = Options()
        for option in arguments[1..<1 + Int(count)] {
            switch option.lowercased() {
            case "allow_discards": options.allowDiscards = true
            case "same_cpu_crypt": options.sameCPU = true
            case "submit_from_crypt_cpus": options.noOffload = true
            case "no_read_workqueue": options.noReadQueue = true
            case "no_write_workqueue": options.noWriteQueue = true
            default:
                if option.hasPrefix("integrity:"), let tag = KernelNumber.leadingUnsigned(option.dropFirst("integrity:".count)) {
                    guard tag.value != 0, tag.value <= 480 else {
                        throw TargetError("Invalid integrity arguments", detail: "`\(option)`: the tag size must be 1 to 480 bytes")
                    }
                    let profile = tag.rest.drop(while: { $0 != ":" }).dropFirst()
                    guard ["aead", "none"].contains(profile.lowercased()) else {
                        throw TargetError("Unknown integrity profile", detail: "`\(option)`: the profile is aead or none")
                    }
                    throw TargetError("Unsupported feature", detail: "`\(option)`: authenticated encryption over dm-integrity; imgmap does not implement it",
                                      exitStatus: .dataError)
                } else if option.hasPrefix("sector_size:"), let size = KernelNumber.unsigned16Scanf(String(option.dropFirst("sector_size:".count))) {
                    guard size >= 512, size <= 4096, size & (size - 1) == 0 else {
                        throw TargetError("Invalid feature value for sector_size", detail: "`\(option)`: a power of two from 512 to 4096")
                    }
                    guard length & (UInt64(size) / 512 - 1) == 0 else {
                        throw TargetError("Device size is not multiple of sector_size feature",
                                          detail: "the segment's \(length) sectors are not a multiple of \(size / 512)")
                    }
                    options.sectorSize = UInt64(size)
                } else if option.lowercased() == "iv_large_sectors" {
                    options.ivLargeSectors = true
                } else {
                    throw TargetError("Invalid feature arguments", detail: "`\(option)`",
                                      hint: "crypt's optional parameters: allow_discards, same_cpu_crypt, submit_from_crypt_cpus, no_read_workqueue, no_write_workqueue, sector_size:<bytes>, iv_large_sectors, integrity:<bytes>:<type>")
                }
            }
        }
        return options
    }

    /// crypt_ctr_cipher_old / crypt_ctr_cipher_new, then the IV mode (crypt_ctr_ivmode).
    static func parseCipher(_ text: String) throws(TargetError) -> (BulkCipher, CryptIV) {
        var api: String
        var ivmode: String?
        var ivopts: String?
        if text.hasPrefix("capi:") {
            var tmp = Substring(text.dropFirst(5))
            if let colon = tmp.lastIndex(of: ":") {
                ivopts = String(tmp[tmp.index(after: colon)...])
                tmp = tmp[..<colon]
            }
            if let dash = tmp.lastIndex(of: "-") {
                ivmode = String(tmp[tmp.index(after: dash)...])
                tmp = tmp[..<dash]
            }
            api = String(tmp)
            if ivmode == "essiv" {
                guard let opts = ivopts else {
                    throw TargetError("Digest algorithm missing for ESSIV mode", detail: "`\(text)`: essiv needs a hash (essiv:sha256)")
                }
                api = "essiv(\(api),\(opts))"
            }
        } else {
            if text.contains("(") {
                throw TargetError("Bad cipher specification", detail: "`\(text)`: a crypto API name needs the capi: prefix")
            }
            // strsep semantics: each step splits at the first separator; a missing part is nil.
            var rest: Substring? = Substring(text)
            func strsep(_ s: inout Substring?, _ separator: Character) -> Substring? {
                guard let whole = s else { return nil }
                if let i = whole.firstIndex(of: separator) {
                    s = whole[whole.index(after: i)...]
                    return whole[..<i]
                }
                s = nil
                return whole
            }
            var keycount = strsep(&rest, "-")
            let cipher = strsep(&keycount, ":") ?? ""
            if let keycount {
                guard let count = KernelNumber.unsigned32Scanf(String(keycount)), count != 0, count & (count - 1) == 0 else {
                    throw TargetError("Bad cipher key count specification", detail: "`\(keycount)` in `\(text)`: a power of two")
                }
                if count != 1 {
                    throw TargetError("Unsupported cipher", detail: "`\(text)`: imgmap does not implement several keys per cipher (:\(count))",
                                      hint: "imgmap implements \(supportedCiphers)")
                }
            }
            var chain = strsep(&rest, "-").map(String.init)
            ivmode = strsep(&rest, ":").map(String.init)
            ivopts = rest.map(String.init)
            if chain == nil || (chain == "plain" && ivmode == nil) {
                chain = "cbc"
                ivmode = "plain"
            }
            if chain != "ecb" && ivmode == nil {
                throw TargetError("IV mechanism required", detail: "`\(text)`: cipher-chainmode-ivmode, for example aes-xts-plain64")
            }
            if ivmode == "essiv" {
                guard let opts = ivopts else {
                    throw TargetError("Digest algorithm missing for ESSIV mode", detail: "`\(text)`: essiv needs a hash (essiv:sha256)")
                }
                api = "essiv(\(chain!)(\(cipher)),\(opts))"
            } else {
                api = "\(chain!)(\(cipher))"
            }
        }

        // crypt_alloc_tfms: what the kernel's crypto API would find.
        let bulk: BulkCipher
        switch api {
        case "xts(aes)": bulk = .aesXTS
        case "cbc(aes)", "essiv(cbc(aes),sha256)": bulk = .aesCBC
        default:
            guard KernelCrypto.knows(api) else {
                throw TargetError("Error allocating crypto tfm", detail: "`\(text)`: the kernel has no \(api)",
                                  hint: "imgmap implements \(supportedCiphers)")
            }
            throw TargetError("Unsupported cipher", detail: "`\(text)` (\(api)): the kernel has it, imgmap does not implement it",
                              hint: "imgmap implements \(supportedCiphers)")
        }

        // crypt_ctr_ivmode
        let iv: CryptIV
        switch ivmode {
        case "plain": iv = .plain
        case "plain64": iv = .plain64
        case "plain64be": iv = .plain64be
        case "null": iv = .null
        case "essiv": iv = .essiv
        case "benbi", "eboiv", "lmk", "tcw", "random", nil:
            throw TargetError("Unsupported cipher", detail: "`\(text)`: imgmap does not implement the \(ivmode.map { "\($0) IV mode" } ?? "cipher without an IV mode")",
                              hint: "imgmap implements \(supportedCiphers)")
        default:
            throw TargetError("Invalid IV mode", detail: "`\(ivmode!)` in `\(text)`",
                              hint: "the kernel's IV modes: plain, plain64, plain64be, essiv:<hash>, benbi, null, eboiv, lmk, tcw, random")
        }
        return (bulk, iv)
    }

    /// crypt_set_key: the key bytes, or the kernel's refusal. A key supplied for the device replaces
    /// the table's; key bytes never appear in a message.
    static func decodeKey(_ text: String, size: Int, keyring: String?, cipher: BulkCipher, context: TargetContext) throws(TargetError) -> SecretBytes {
        let phrase = "Error decoding and setting key"
        let device = context.deviceName.map { "device \($0)" } ?? "the device"
        if size == 0 {
            throw TargetError(phrase, detail: text == "-" ? "`-` means no key, and \(cipher.kernelName) needs one" : "the key has no hex digits")
        }
        var key: SecretBytes
        if let keyring {
            let type = keyring.prefix(while: { $0 != ":" })
            let description = keyring.dropFirst(type.count + 1)
            guard !type.isEmpty, keyring.contains(":"), !description.isEmpty, ["logon", "user", "encrypted"].contains(type) else {
                throw TargetError(phrase, detail: "a keyring key is `:<size>:<logon|user|encrypted>:<description>`")
            }
            guard let supplied = context.suppliedKey else {
                throw TargetError(phrase, detail: "the key is in the kernel keyring (\(type):\(description)), which imgmap cannot read",
                                  hint: "supply the \(size)-byte key for \(device) with --key NAME=FILE (the file holds the raw key bytes)",
                                  exitStatus: .usage)
            }
            guard supplied.count == size else {
                throw TargetError(phrase, detail: "the key supplied for \(device) is \(supplied.count) bytes; the table's keyring key is \(size)")
            }
            key = supplied
        } else {
            // hex2bin of `size` bytes: a trailing odd digit is not read, as in the kernel.
            let decoded = SecretBytes(count: size)
            let ok = decoded.withMutableBytes { out -> Bool in
                var digits = text.utf8.makeIterator()
                for i in 0..<size {
                    guard let hi = digits.next().flatMap(hexValue), let lo = digits.next().flatMap(hexValue) else { return false }
                    out[i] = hi << 4 | lo
                }
                return true
            }
            guard ok else { throw TargetError(phrase, detail: "the key has a character that is not a hex digit") }
            key = decoded
            if let supplied = context.suppliedKey {
                guard supplied.count == size else {
                    throw TargetError(phrase, detail: "the key supplied for \(device) is \(supplied.count) bytes; the table's key is \(size)")
                }
                key = supplied
            }
        }
        guard cipher.acceptsKeyLength(key.count) else {
            throw TargetError(phrase, detail: "a \(key.count)-byte key: \(cipher.kernelName) takes \(cipher.keyLengths) bytes")
        }
        return key
    }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {
        try body(DeviceArea(device: source.device, token: source.token, start: source.lowerStart, length: source.length))
    }

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        try body(.computed(source, token: source.token, sector: offset, count: count))
    }

    public var tableArguments: String {
        "\(cipherText) \(shownKey) \(source.ivOffset) \(source.token) \(source.lowerStart)\(options.normalForm)"
    }
}

private func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
    default: nil
    }
}

extension BulkCipher {
    var kernelName: String {
        switch self {
        case .aesXTS: "xts(aes)"
        case .aesCBC: "cbc(aes)"
        case .aesECB: "ecb(aes)"
        }
    }
    var keyLengths: String {
        switch self {
        case .aesXTS: "32, 48 or 64"
        case .aesCBC, .aesECB: "16, 24 or 32"
        }
    }
}

/// The names the kernel's crypto API resolves that matter for refusals: a spec the kernel has but
/// imgmap does not implement is refused as unsupported, a spec the kernel lacks with its phrase.
enum KernelCrypto {
    static let modes: Set<String> = ["cbc", "ecb", "xts", "ctr", "lrw", "pcbc", "cts", "ofb", "cfb", "xctr", "hctr2"]
    static let ciphers: Set<String> = ["aes", "serpent", "twofish", "camellia", "cast5", "cast6", "des", "des3_ede",
                                       "blowfish", "sm4", "anubis", "khazad", "tea", "xtea", "xeta", "fcrypt", "seed",
                                       "aria", "cipher_null"]
    static let hashes: Set<String> = ["sha1", "sha224", "sha256", "sha384", "sha512", "md5", "rmd160", "sm3",
                                      "streebog256", "streebog512", "wp256", "wp384", "wp512", "blake2b-256", "blake2b-512"]

    static func knows(_ api: String) -> Bool {
        if api.hasPrefix("essiv("), api.hasSuffix(")") {
            let inner = api.dropFirst(6).dropLast()
            guard let comma = inner.lastIndex(of: ",") else { return false }
            return knowsMode(String(inner[..<comma])) && hashes.contains(String(inner[inner.index(after: comma)...]))
        }
        return knowsMode(api) || ["adiantum(xchacha12,aes)", "adiantum(xchacha20,aes)"].contains(api)
    }

    static func knowsMode(_ api: String) -> Bool {
        guard let open = api.firstIndex(of: "("), api.hasSuffix(")") else { return false }
        let mode = String(api[..<open])
        let cipher = String(api[api.index(after: open)..<api.index(before: api.endIndex)])
        return modes.contains(mode) && ciphers.contains(cipher)
    }
}

/// How a unit's IV is made from its IV sector number (crypt_iv_*_gen).
public enum CryptIV: Sendable {
    /// The low 32 bits, little-endian, zero-padded (wraps at 2^32).
    case plain
    /// 64-bit little-endian, zero-padded.
    case plain64
    /// 64-bit big-endian in the IV's last 8 bytes.
    case plain64be
    /// All zeros.
    case null
    /// The plain64 block encrypted with AES keyed by SHA-256 of the whole key.
    case essiv

    var name: String {
        switch self {
        case .plain: "plain"
        case .plain64: "plain64"
        case .plain64be: "plain64be"
        case .null: "null"
        case .essiv: "essiv"
        }
    }
}
