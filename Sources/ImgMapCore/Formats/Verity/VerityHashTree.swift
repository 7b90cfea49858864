import CCrypto

/// The shape of a dm-verity hash tree, computed as verity_ctr computes it (drivers/md/dm-verity-target.c,
/// Linux 6.1). Level 0 is the level next to the data: its hash blocks hold the digests of data blocks;
/// the highest level is one hash block, whose digest is the root digest. The highest level comes first on
/// the hash device, from `hashStart`, then each lower level. With one data block there are no levels:
/// the root digest is that block's digest.
package struct VerityGeometry: Sendable, Equatable {
    /// 0: digests packed, salt after the data (Chromium OS); 1: each digest in a power-of-two slot,
    /// salt before the data.
    package let version: UInt32
    package let dataBlockBits: Int
    package let hashBlockBits: Int
    package let dataBlocks: UInt64
    /// First hash block of the tree (in hash blocks; a superblock, when there is one, lies before it).
    package let hashStart: UInt64
    package let digestSize: Int
    /// log2 of the digests one hash block holds, rounded down (the kernel's `__fls`).
    package let hashPerBlockBits: Int
    package let levels: Int
    /// `hash_level_block[i]`: the first hash block of level i.
    package let levelStart: [UInt64]
    /// One past the tree's last hash block (`hash_blocks`): the hash device must hold this many.
    package let hashBlocks: UInt64

    /// The kernel's limit (DM_VERITY_MAX_LEVELS).
    static let maxLevels = 63

    /// The tree for these parameters, or the kernel's refusal (`Too many tree levels`, `Hash device
    /// offset overflow`). The block sizes are powers of two and `2 × digestSize ≤ hash block size`
    /// (checked by the constructor before).
    package init(version: UInt32, dataBlockBits: Int, hashBlockBits: Int, dataBlocks: UInt64, hashStart: UInt64,
                digestSize: Int) throws(TargetError) {
        self.version = version
        self.dataBlockBits = dataBlockBits
        self.hashBlockBits = hashBlockBits
        self.dataBlocks = dataBlocks
        self.hashStart = hashStart
        self.digestSize = digestSize
        let perBlock = UInt64(1 << hashBlockBits) / UInt64(digestSize)
        hashPerBlockBits = 63 - perBlock.leadingZeroBitCount
        var levels = 0
        if dataBlocks > 0 {
            while hashPerBlockBits * levels < 64 && (dataBlocks - 1) >> UInt64(hashPerBlockBits * levels) != 0 {
                levels += 1
            }
        }
        guard levels <= Self.maxLevels else {
            throw TargetError("Too many tree levels", detail: "\(levels) levels for \(dataBlocks) data blocks; the kernel allows \(Self.maxLevels)")
        }
        self.levels = levels
        var starts = [UInt64](repeating: 0, count: levels)
        var position = hashStart
        for i in stride(from: levels - 1, through: 0, by: -1) {
            starts[i] = position
            // Blocks of level i: data blocks / 2^((i+1)·bits), rounded up. The kernel's shifts are
            // 64-bit x86 shifts, whose count is taken modulo 64 (`&<<`, `&>>` do the same).
            let shift = UInt64((i + 1) * hashPerBlockBits)
            let blocks = (dataBlocks &+ (1 &<< shift) &- 1) &>> shift
            let (next, overflow) = position.addingReportingOverflow(blocks)
            guard !overflow else {
                throw TargetError("Hash device offset overflow", detail: "level \(i) of the hash tree (\(blocks) blocks) starts at hash block \(position) and ends past 2^64")
            }
            position = next
        }
        levelStart = starts
        hashBlocks = position
    }

    package var dataBlockSize: Int { 1 << dataBlockBits }
    package var hashBlockSize: Int { 1 << hashBlockBits }
    /// 512-byte sectors in a data block: the unit reads are verified in.
    package var dataBlockSectors: UInt64 { UInt64(1) << UInt64(dataBlockBits - 9) }
    package var hashBlockSectors: UInt64 { UInt64(1) << UInt64(hashBlockBits - 9) }

    /// Where the digest of data block `block`'s subtree at `level` lies: the hash block and the byte
    /// offset in it (verity_hash_at_level). `level` < `levels`.
    package func digestPosition(of block: UInt64, level: Int) -> (hashBlock: UInt64, offset: Int) {
        let position = block >> UInt64(level * hashPerBlockBits)
        let hashBlock = levelStart[level] + (position >> UInt64(hashPerBlockBits))
        let index = Int(position & ((1 << UInt64(hashPerBlockBits)) - 1))
        let offset = version == 0 ? index * digestSize : index << (hashBlockBits - hashPerBlockBits)
        return (hashBlock, offset)
    }
}

/// A hash the kernel's crypto API names (`crypto_alloc_ahash`), computed by libcrypto. Never written
/// here: every digest is OpenSSL's EVP.
package struct VerityHashAlgorithm: @unchecked Sendable {
    /// The name as the table spells it (the kernel shows it back unchanged).
    package let name: String
    /// libcrypto's EVP_MD: a static object, shared by every thread.
    let md: OpaquePointer
    package let digestSize: Int

    package enum Lookup {
        case found(VerityHashAlgorithm)
        /// The kernel has a hash of that name that imgmap does not compute: why.
        case notImplemented(String)
        /// The kernel has no hash of that name (`Cannot initialize hash function`, -ENOENT).
        case unknown
    }

    /// Kernel names (and their `-generic` and x86 driver names) → libcrypto names.
    static let implemented: [String: String] = [
        "sha1": "SHA1", "sha224": "SHA224", "sha256": "SHA256", "sha384": "SHA384", "sha512": "SHA512",
        "md5": "MD5", "rmd160": "RIPEMD160", "sm3": "SM3",
        "sha3-224": "SHA3-224", "sha3-256": "SHA3-256", "sha3-384": "SHA3-384", "sha3-512": "SHA3-512",
        "blake2b-512": "BLAKE2B-512",
    ]
    /// x86 drivers of the same algorithms (the kernel finds an algorithm by its driver name too).
    static let drivers: [String: [String]] = [
        "sha1": ["ssse3", "avx", "avx2", "ni"], "sha224": ["ssse3", "avx", "avx2", "ni"], "sha256": ["ssse3", "avx", "avx2", "ni"],
        "sha384": ["ssse3", "avx", "avx2"], "sha512": ["ssse3", "avx", "avx2"], "sm3": ["avx"],
    ]
    /// Hashes the 6.1 kernel has that libcrypto does not compute the kernel's way (or at all).
    static let kernelOnly: Set<String> = [
        "md4", "wp256", "wp384", "wp512", "tgr128", "tgr160", "tgr192", "streebog256", "streebog512",
        "blake2b-160", "blake2b-256", "blake2b-384", "crc32", "crc32c", "crct10dif", "crc64-rocksoft", "xxhash64",
        "michael_mic", "ghash", "poly1305", "nhpoly1305",
    ]

    /// What the kernel's crypto API would find for `name` (names are case-sensitive there).
    package static func lookup(_ name: String) -> Lookup {
        var base = name
        if name.hasSuffix("-generic") {
            base = String(name.dropLast("-generic".count))
        } else if let dash = name.lastIndex(of: "-"), let suffixes = drivers[String(name[..<dash])],
                  suffixes.contains(String(name[name.index(after: dash)...])) {
            base = String(name[..<dash])
        }
        if let evpName = implemented[base] {
            guard let md = EVP_get_digestbyname(evpName), Self.works(md) else {
                return .notImplemented("this machine's libcrypto cannot compute \(evpName) (is the provider that has it loaded?)")
            }
            return .found(VerityHashAlgorithm(name: name, md: md, digestSize: Int(EVP_MD_get_size(md))))
        }
        if kernelOnly.contains(base) {
            return .notImplemented("the kernel has `\(name)`; imgmap computes " + implemented.keys.sorted().joined(separator: ", "))
        }
        // Keyed templates (hmac(sha256), cmac(aes) …): the kernel builds them, but verity never sets a
        // key, so every hash it computes would fail.
        if let open = name.firstIndex(of: "("), name.hasSuffix(")") {
            let template = String(name[..<open])
            let inner = String(name[name.index(after: open)..<name.index(before: name.endIndex)])
            let knownInner = implemented[inner] != nil || kernelOnly.contains(inner) || KernelCrypto.ciphers.contains(inner)
            if ["hmac", "cmac", "xcbc", "vmac64", "cbcmac"].contains(template) && knownInner {
                return .notImplemented("`\(name)` is a keyed hash, and verity sets no key: the kernel would fail every read (-ENOKEY)")
            }
        }
        return .unknown
    }

    /// Whether libcrypto can start a digest with `md` (a name may resolve to an algorithm whose provider
    /// is not loaded).
    private static func works(_ md: OpaquePointer) -> Bool {
        guard let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        return EVP_DigestInit_ex(ctx, md, nil) == 1
    }
}

package struct VerityHashFailure: ImgMapFailure {
    package var description: String
    package var exitStatus: ExitStatus { .ioError }
}

/// One thread's digest context: verity's salted digest of a block. Not thread-safe: one per worker.
final class VerityHasher {
    let algorithm: VerityHashAlgorithm
    let salt: [UInt8]
    /// Version 1 hashes salt ‖ block, version 0 block ‖ salt (verity_hash_init / verity_hash_final).
    let saltFirst: Bool
    private let ctx: OpaquePointer

    init(algorithm: VerityHashAlgorithm, salt: [UInt8], version: UInt32) throws {
        guard let ctx = EVP_MD_CTX_new() else { throw VerityHashFailure(description: "EVP_MD_CTX_new failed") }
        self.ctx = ctx
        self.algorithm = algorithm
        self.salt = salt
        self.saltFirst = version >= 1
    }

    deinit { EVP_MD_CTX_free(ctx) }

    /// Writes the digest of `block` (with the salt) to `out` (`digestSize` bytes).
    func digest(_ block: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) throws {
        var ok = EVP_DigestInit_ex(ctx, algorithm.md, nil) == 1
        if ok && saltFirst && !salt.isEmpty { ok = salt.withUnsafeBytes { EVP_DigestUpdate(ctx, $0.baseAddress, $0.count) } == 1 }
        if ok { ok = EVP_DigestUpdate(ctx, block.baseAddress, block.count) == 1 }
        if ok && !saltFirst && !salt.isEmpty { ok = salt.withUnsafeBytes { EVP_DigestUpdate(ctx, $0.baseAddress, $0.count) } == 1 }
        var length: UInt32 = 0
        if ok { ok = EVP_DigestFinal_ex(ctx, out.assumingMemoryBound(to: UInt8.self), &length) == 1 }
        guard ok, Int(length) == algorithm.digestSize else {
            throw VerityHashFailure(description: "libcrypto failed to compute \(algorithm.name)")
        }
    }

    /// The digest of `block` as bytes.
    func digest(_ block: UnsafeRawBufferPointer) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: algorithm.digestSize)
        try out.withUnsafeMutableBytes { try digest(block, into: $0.baseAddress!) }
        return out
    }
}
