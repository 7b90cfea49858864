import CCrypto

/// The bulk ciphers dm-crypt uses that imgmap implements, all from OpenSSL's libcrypto through EVP
/// (AES-NI and VAES when the CPU has them). No cipher is written here: XTS with a 192-bit AES key,
/// which OpenSSL lacks, is the XTS construction (IEEE 1619) over OpenSSL's AES-192 block encryption.
public enum BulkCipher: Sendable, Equatable {
    /// XTS-AES (dm-crypt `xts`): the key is the data key then the tweak key, 32, 48 or 64 bytes.
    case aesXTS   // key: data key ‖ tweak key, 32/48/64 bytes
    /// CBC-AES (dm-crypt `cbc`): 16, 24 or 32-byte keys.
    case aesCBC   // key: 16/24/32 bytes
    /// AES on single blocks: ESSIV encrypts each IV with it.
    case aesECB   // one block at a time; ESSIV's IV cipher

    /// Whether a key of `length` bytes fits the cipher (the kernel's key-size check).
    public func acceptsKeyLength(_ length: Int) -> Bool {
        switch self {
        case .aesXTS: [32, 48, 64].contains(length)
        case .aesCBC, .aesECB: [16, 24, 32].contains(length)
        }
    }

    func evpCipher(keyLength: Int) -> OpaquePointer? {
        switch (self, keyLength) {
        case (.aesXTS, 32): EVP_aes_128_xts()
        case (.aesXTS, 64): EVP_aes_256_xts()
        case (.aesXTS, 48): EVP_aes_192_ecb()   // XTS built over the block cipher, below
        case (.aesCBC, 16): EVP_aes_128_cbc()
        case (.aesCBC, 24): EVP_aes_192_cbc()
        case (.aesCBC, 32): EVP_aes_256_cbc()
        case (.aesECB, 16): EVP_aes_128_ecb()
        case (.aesECB, 24): EVP_aes_192_ecb()
        case (.aesECB, 32): EVP_aes_256_ecb()
        default: nil
        }
    }
}

/// libcrypto refused an operation (a context, a key, an update); `description` says which.
public struct CipherFailure: Error, CustomStringConvertible {
    public var description: String
}

/// One keyed OpenSSL context for one thread: encrypts or decrypts whole crypto units, each with its
/// own 16-byte IV. Not thread-safe; make one per worker. Freed (and its key schedule cleansed by
/// OpenSSL) on deinit.
final class CipherContext {
    let cipher: BulkCipher
    let encrypt: Bool
    private let ctx: OpaquePointer
    /// XTS-AES-192 only: the data and tweak key contexts, ECB.
    private var xts192: (data: OpaquePointer, tweak: OpaquePointer)?

    /// `constructedXTS` builds XTS over the block cipher for every key length (tests compare it with
    /// OpenSSL's own XTS); 48-byte keys always take that path.
    init(cipher: BulkCipher, key: SecretBytes, encrypt: Bool, constructedXTS: Bool = false) throws {
        self.cipher = cipher
        self.encrypt = encrypt
        let constructed = cipher == .aesXTS && (key.count == 48 || constructedXTS)
        let ecb = [32: EVP_aes_128_ecb(), 48: EVP_aes_192_ecb(), 64: EVP_aes_256_ecb()]
        guard let evp = constructed ? ecb[key.count] ?? nil : cipher.evpCipher(keyLength: key.count), let ctx = EVP_CIPHER_CTX_new() else {
            throw CipherFailure(description: "no OpenSSL cipher for \(cipher) with a \(key.count)-byte key")
        }
        self.ctx = ctx
        if constructed {
            guard let data = EVP_CIPHER_CTX_new(), let tweak = EVP_CIPHER_CTX_new() else {
                throw CipherFailure(description: "EVP_CIPHER_CTX_new failed")
            }
            xts192 = (data, tweak)
            let ok = key.withBytes { k -> Bool in
                let p = k.baseAddress!.assumingMemoryBound(to: UInt8.self)
                return EVP_CipherInit_ex(data, evp, nil, p, nil, encrypt ? 1 : 0) == 1
                    && EVP_CipherInit_ex(tweak, evp, nil, p + key.count / 2, nil, 1) == 1
                    && EVP_CIPHER_CTX_set_padding(data, 0) == 1 && EVP_CIPHER_CTX_set_padding(tweak, 0) == 1
            }
            guard ok else { throw CipherFailure(description: "OpenSSL refused the key") }
            return
        }
        let ok = key.withBytes { k in
            EVP_CipherInit_ex(ctx, evp, nil, k.baseAddress!.assumingMemoryBound(to: UInt8.self), nil, encrypt ? 1 : 0) == 1
        }
        guard ok, EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 else {
            throw CipherFailure(description: "OpenSSL refused the \(key.count)-byte key")
        }
    }

    deinit {
        EVP_CIPHER_CTX_free(ctx)
        if let (a, b) = xts192 {
            EVP_CIPHER_CTX_free(a)
            EVP_CIPHER_CTX_free(b)
        }
    }

    /// Whether `process` can read its input from another buffer than it writes (all but the XTS
    /// built over the block cipher, which works in place).
    var processesOutOfPlace: Bool { xts192 == nil }

    /// Transforms `unit` in place (a multiple of 16 bytes) with `iv` (16 bytes; ignored by ECB).
    func process(_ unit: UnsafeMutableRawBufferPointer, iv: UnsafeRawPointer) throws {
        try process(unit, from: nil, iv: iv)
    }

    /// Transforms `source` (or, when nil, `unit` itself) into `unit`, a multiple of 16 bytes, with `iv`.
    /// Only the IV is set per call (`EVP_CipherInit_ex` with no cipher and no key): the key schedule
    /// was made once, in `init`.
    func process(_ unit: UnsafeMutableRawBufferPointer, from source: UnsafeRawBufferPointer?, iv: UnsafeRawPointer) throws {
        let p = unit.baseAddress!.assumingMemoryBound(to: UInt8.self)
        if let (data, tweak) = xts192 {
            precondition(source == nil, "the constructed XTS works in place")
            return try xts(unit, iv: iv, data: data, tweak: tweak)
        }
        let input = source.map { $0.baseAddress!.assumingMemoryBound(to: UInt8.self) } ?? UnsafePointer(p)
        precondition(source == nil || source!.count == unit.count)
        var outLength: Int32 = 0
        guard EVP_CipherInit_ex(ctx, nil, nil, nil, iv.assumingMemoryBound(to: UInt8.self), -1) == 1,
              EVP_CipherUpdate(ctx, p, &outLength, input, Int32(unit.count)) == 1, Int(outLength) == unit.count else {
            throw CipherFailure(description: "OpenSSL \(encrypt ? "encryption" : "decryption") failed")
        }
    }

    /// XTS (IEEE 1619, no ciphertext stealing: units are whole blocks): T = E_K2(IV); each block is
    /// E_K1(P ⊕ T) ⊕ T (D_K1 to decrypt), then T is multiplied by x in GF(2^128), little-endian.
    private func xts(_ unit: UnsafeMutableRawBufferPointer, iv: UnsafeRawPointer, data: OpaquePointer, tweak: OpaquePointer) throws {
        var t = (UInt64(0), UInt64(0))
        var n: Int32 = 0
        let ok = withUnsafeMutableBytes(of: &t) { tp -> Bool in
            let tb = tp.baseAddress!.assumingMemoryBound(to: UInt8.self)
            return EVP_CipherUpdate(tweak, tb, &n, iv.assumingMemoryBound(to: UInt8.self), 16) == 1
        }
        guard ok, n == 16 else { throw CipherFailure(description: "OpenSSL tweak encryption failed") }
        t = (UInt64(littleEndian: t.0), UInt64(littleEndian: t.1))
        let blocks = unit.count / 16
        let words = unit.baseAddress!.assumingMemoryBound(to: UInt64.self)
        // XOR with T, run the block cipher over the whole unit in one ECB call, XOR with T again.
        var tweaks = [(UInt64, UInt64)](repeating: (0, 0), count: blocks)
        for b in 0..<blocks {
            tweaks[b] = t
            words[2 * b] ^= t.0.littleEndian
            words[2 * b + 1] ^= t.1.littleEndian
            let carry = t.1 >> 63
            t.1 = (t.1 << 1) | (t.0 >> 63)
            t.0 = (t.0 << 1) ^ (carry * 0x87)
        }
        let p = unit.baseAddress!.assumingMemoryBound(to: UInt8.self)
        guard EVP_CipherUpdate(data, p, &n, p, Int32(unit.count)) == 1, Int(n) == unit.count else {
            throw CipherFailure(description: "OpenSSL block cipher failed")
        }
        for b in 0..<blocks {
            words[2 * b] ^= tweaks[b].0.littleEndian
            words[2 * b + 1] ^= tweaks[b].1.littleEndian
        }
    }
}

nonisolated(unsafe) private let emptyPassword: UnsafeMutablePointer<CChar> = {
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: 1)
    p.initialize(to: 0)
    return p
}()

/// Digests and key derivation from libcrypto.
public enum OpenSSLDigest {
    /// The libcrypto digest named `name` (sha1, sha224, sha256, sha384, sha512, ripemd160; any case), or nil.
    public static func evp(_ name: String) -> OpaquePointer? {
        switch name.lowercased() {
        case "sha1": EVP_sha1()
        case "sha256": EVP_sha256()
        case "sha512": EVP_sha512()
        case "sha384": EVP_sha384()
        case "sha224": EVP_sha224()
        case "ripemd160": EVP_get_digestbyname("ripemd160")
        default: nil
        }
    }

    /// The digest size in bytes of the hash named `name`, or nil for a hash libcrypto lacks.
    public static func size(_ name: String) -> Int? {
        evp(name).map { Int(EVP_MD_get_size($0)) }
    }

    /// The digest of `bytes` with the named hash.
    public static func hash(_ name: String, _ bytes: UnsafeRawBufferPointer) -> SecretBytes? {
        guard let md = evp(name) else { return nil }
        let out = SecretBytes(count: Int(EVP_MD_get_size(md)))
        var n: UInt32 = 0
        let ok = out.withMutableBytes { o in
            EVP_Digest(bytes.baseAddress, bytes.count, o.baseAddress!.assumingMemoryBound(to: UInt8.self), &n, md, nil) == 1
        }
        return ok ? out : nil
    }

    /// PBKDF2-HMAC (PKCS5_PBKDF2_HMAC) of `password` with `salt`, `iterations`, `length` bytes out.
    public static func pbkdf2(hash: String, password: UnsafeRawBufferPointer, salt: [UInt8], iterations: Int, length: Int) -> SecretBytes? {
        guard let md = evp(hash), iterations > 0, iterations <= Int(Int32.max), length > 0 else { return nil }
        let out = SecretBytes(count: length)
        // An empty passphrase still needs a valid pointer.
        let passwordPointer = password.baseAddress?.assumingMemoryBound(to: CChar.self) ?? UnsafePointer(emptyPassword)
        let ok = out.withMutableBytes { o in
            salt.withUnsafeBufferPointer { s in
                PKCS5_PBKDF2_HMAC(passwordPointer, Int32(password.count),
                                  s.baseAddress, Int32(s.count), Int32(iterations), md,
                                  Int32(length), o.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 1
            }
        }
        return ok ? out : nil
    }
}
