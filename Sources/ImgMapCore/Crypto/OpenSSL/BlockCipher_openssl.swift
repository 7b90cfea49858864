import CCrypto

/// The bulk ciphers dm-crypt uses that imgmap implements, all from OpenSSL's libcrypto (AES-NI and
/// VAES when the CPU has them), called through its provider's dispatch table, or EVP where that fails.
/// No cipher is written here: XTS with a 192-bit AES key, which OpenSSL lacks, is the XTS construction
/// (IEEE 1619) over OpenSSL's AES-192 block encryption.
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

    /// OpenSSL's name for the cipher with a `keyLength`-byte key, where OpenSSL has it (not XTS-AES-192).
    func openSSLName(keyLength: Int) -> String? {
        switch self {
        case .aesXTS: [32: "AES-128-XTS", 64: "AES-256-XTS"][keyLength]
        case .aesCBC: acceptsKeyLength(keyLength) ? "AES-\(keyLength * 8)-CBC" : nil
        case .aesECB: acceptsKeyLength(keyLength) ? "AES-\(keyLength * 8)-ECB" : nil
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

/// One cipher of OpenSSL's provider (the one `EVP_CIPHER_fetch` picks, normally "default"), called
/// through its dispatch table (provider-cipher(7)). OpenSSL still does all the AES and XTS work; what
/// is skipped is EVP's per-call overhead: setting an IV through `EVP_CipherInit_ex` costs ~114 ns per
/// 512-byte unit in OpenSSL 3.0 (parameter lookups by name), more than half of the AES itself.
struct ProviderCipher: @unchecked Sendable {   // immutable; OpenSSL's functions and provider context
    typealias Init = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<UInt8>?, Int, UnsafePointer<UInt8>?, Int, UnsafePointer<OSSL_PARAM>?) -> Int32
    typealias Cipher = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<Int>?, Int, UnsafePointer<UInt8>?, Int) -> Int32

    let providerContext: UnsafeMutableRawPointer?
    let newContext: @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer?
    let freeContext: @convention(c) (UnsafeMutableRawPointer?) -> Void
    let encryptInit: Init
    let decryptInit: Init
    let cipher: Cipher

    /// The provider implementations of the ciphers `CipherContext` keys, by OpenSSL name; empty where
    /// the lookup fails (a provider without them, or with another dispatch), and EVP is used instead.
    static let byName: [String: ProviderCipher] = {
        var found: [String: ProviderCipher] = [:]
        for name in ["AES-128-XTS", "AES-256-XTS", "AES-128-CBC", "AES-192-CBC", "AES-256-CBC", "AES-128-ECB", "AES-192-ECB", "AES-256-ECB"] {
            found[name] = lookUp(name)
        }
        return found
    }()

    /// The dispatch table of `name` in the provider EVP would use. The fetched EVP_CIPHER is never
    /// freed: it keeps that provider, whose functions and context are used from then on, loaded.
    private static func lookUp(_ name: String) -> ProviderCipher? {
        guard let fetched = EVP_CIPHER_fetch(nil, name, nil), let provider = EVP_CIPHER_get0_provider(fetched) else { return nil }
        var noStore: Int32 = 0
        guard let algorithms = OSSL_PROVIDER_query_operation(provider, OSSL_OP_CIPHER, &noStore) else { return nil }
        defer { OSSL_PROVIDER_unquery_operation(provider, OSSL_OP_CIPHER, algorithms) }
        var algorithm = algorithms
        while let names = algorithm.pointee.algorithm_names {
            // algorithm_names lists a cipher's names and OIDs, colon-separated.
            if String(cString: names).split(separator: ":").contains(where: { $0.uppercased() == name }),
               var entry = algorithm.pointee.implementation {
                var new: (@convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer?)?
                var free: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?
                var encryptInit: Init?, decryptInit: Init?, cipher: Cipher?
                while entry.pointee.function_id != 0 {
                    switch entry.pointee.function_id {
                    case OSSL_FUNC_CIPHER_NEWCTX: new = OSSL_FUNC_cipher_newctx(entry)
                    case OSSL_FUNC_CIPHER_FREECTX: free = OSSL_FUNC_cipher_freectx(entry)
                    case OSSL_FUNC_CIPHER_ENCRYPT_INIT: encryptInit = OSSL_FUNC_cipher_encrypt_init(entry)
                    case OSSL_FUNC_CIPHER_DECRYPT_INIT: decryptInit = OSSL_FUNC_cipher_decrypt_init(entry)
                    case OSSL_FUNC_CIPHER_CIPHER: cipher = OSSL_FUNC_cipher_cipher(entry)
                    default: break
                    }
                    entry += 1
                }
                guard let new, let free, let encryptInit, let decryptInit, let cipher else { return nil }
                return ProviderCipher(providerContext: OSSL_PROVIDER_get0_provider_ctx(provider), newContext: new,
                                      freeContext: free, encryptInit: encryptInit, decryptInit: decryptInit, cipher: cipher)
            }
            algorithm += 1
        }
        return nil
    }
}

/// One keyed OpenSSL context for one thread: encrypts or decrypts whole crypto units, each with its
/// own 16-byte IV. Not thread-safe; make one per worker. Freed (and its key schedule cleansed by
/// OpenSSL) on deinit.
final class CipherContext {
    let cipher: BulkCipher
    let encrypt: Bool
    private enum Engine {
        /// OpenSSL's provider implementation, called directly: keyed once, then per unit an init
        /// with only the IV (which, for XTS and the generic modes, copies the IV and keeps the key
        /// schedule) and one cipher call.
        case provider(ProviderCipher, UnsafeMutableRawPointer)
        case evp(OpaquePointer)
        /// XTS-AES-192: the data and tweak key contexts, ECB.
        case constructedXTS(data: OpaquePointer, tweak: OpaquePointer)
    }
    private let engine: Engine

    /// `constructedXTS` builds XTS over the block cipher for every key length (tests compare it with
    /// OpenSSL's own XTS); 48-byte keys always take that path. `throughEVP` keeps to the EVP calls
    /// (tests compare them with the provider calls), as when the provider lookup fails.
    init(cipher: BulkCipher, key: SecretBytes, encrypt: Bool, constructedXTS: Bool = false, throughEVP: Bool = false) throws {
        self.cipher = cipher
        self.encrypt = encrypt
        let constructed = cipher == .aesXTS && (key.count == 48 || constructedXTS)
        if !constructed, !throughEVP, let name = cipher.openSSLName(keyLength: key.count),
           let implementation = ProviderCipher.byName[name], let context = implementation.newContext(implementation.providerContext) {
            let initialise = encrypt ? implementation.encryptInit : implementation.decryptInit
            guard key.withBytes({ initialise(context, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), key.count, nil, 0, nil) }) == 1 else {
                implementation.freeContext(context)
                throw CipherFailure(description: "OpenSSL refused the \(key.count)-byte key")
            }
            engine = .provider(implementation, context)
            return
        }
        let ecb = [32: EVP_aes_128_ecb(), 48: EVP_aes_192_ecb(), 64: EVP_aes_256_ecb()]
        guard let evp = constructed ? ecb[key.count] ?? nil : cipher.evpCipher(keyLength: key.count), let ctx = EVP_CIPHER_CTX_new() else {
            throw CipherFailure(description: "no OpenSSL cipher for \(cipher) with a \(key.count)-byte key")
        }
        if constructed {
            guard let tweak = EVP_CIPHER_CTX_new() else {
                EVP_CIPHER_CTX_free(ctx)
                throw CipherFailure(description: "EVP_CIPHER_CTX_new failed")
            }
            engine = .constructedXTS(data: ctx, tweak: tweak)
            let ok = key.withBytes { k -> Bool in
                let p = k.baseAddress!.assumingMemoryBound(to: UInt8.self)
                return EVP_CipherInit_ex(ctx, evp, nil, p, nil, encrypt ? 1 : 0) == 1
                    && EVP_CipherInit_ex(tweak, evp, nil, p + key.count / 2, nil, 1) == 1
                    && EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 && EVP_CIPHER_CTX_set_padding(tweak, 0) == 1
            }
            guard ok else { throw CipherFailure(description: "OpenSSL refused the key") }
            return
        }
        engine = .evp(ctx)
        let ok = key.withBytes { k in
            EVP_CipherInit_ex(ctx, evp, nil, k.baseAddress!.assumingMemoryBound(to: UInt8.self), nil, encrypt ? 1 : 0) == 1
        }
        guard ok, EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 else {
            throw CipherFailure(description: "OpenSSL refused the \(key.count)-byte key")
        }
    }

    deinit {
        switch engine {
        case let .provider(implementation, context): implementation.freeContext(context)
        case let .evp(ctx): EVP_CIPHER_CTX_free(ctx)
        case let .constructedXTS(data, tweak):
            EVP_CIPHER_CTX_free(data)
            EVP_CIPHER_CTX_free(tweak)
        }
    }

    /// Whether `process` can read its input from another buffer than it writes (all but the XTS
    /// built over the block cipher, which works in place).
    var processesOutOfPlace: Bool {
        if case .constructedXTS = engine { return false }
        return true
    }

    /// Transforms `unit` in place (a multiple of 16 bytes) with `iv` (16 bytes; ignored by ECB).
    func process(_ unit: UnsafeMutableRawBufferPointer, iv: UnsafeRawPointer) throws {
        try process(unit, from: nil, iv: iv)
    }

    /// Transforms `source` (or, when nil, `unit` itself) into `unit`, a multiple of 16 bytes, with `iv`.
    /// Only the IV is set per call: the key schedule was made once, in `init`.
    func process(_ unit: UnsafeMutableRawBufferPointer, from source: UnsafeRawBufferPointer?, iv: UnsafeRawPointer) throws {
        let p = unit.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let input = source.map { $0.baseAddress!.assumingMemoryBound(to: UInt8.self) } ?? UnsafePointer(p)
        precondition(source == nil || source!.count == unit.count)
        let ivBytes = iv.assumingMemoryBound(to: UInt8.self)
        switch engine {
        case let .provider(implementation, context):
            var outLength = 0
            // ECB takes no IV (its init refuses one); the others get theirs, their key kept.
            let ivSet = cipher == .aesECB
                || (encrypt ? implementation.encryptInit : implementation.decryptInit)(context, nil, 0, ivBytes, 16, nil) == 1
            guard ivSet, implementation.cipher(context, p, &outLength, unit.count, input, unit.count) == 1, outLength == unit.count else {
                throw CipherFailure(description: "OpenSSL \(encrypt ? "encryption" : "decryption") failed")
            }
        case let .evp(ctx):
            var outLength: Int32 = 0
            guard EVP_CipherInit_ex(ctx, nil, nil, nil, ivBytes, -1) == 1,
                  EVP_CipherUpdate(ctx, p, &outLength, input, Int32(unit.count)) == 1, Int(outLength) == unit.count else {
                throw CipherFailure(description: "OpenSSL \(encrypt ? "encryption" : "decryption") failed")
            }
        case let .constructedXTS(data, tweak):
            precondition(source == nil, "the constructed XTS works in place")
            try xts(unit, iv: iv, data: data, tweak: tweak)
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
