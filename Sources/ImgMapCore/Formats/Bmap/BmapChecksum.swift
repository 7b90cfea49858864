/// The checksum functions a bmap file may name in `<ChecksumType>` that imgmap can compute. bmaptool
/// writes sha256; format 1.3 used sha1 (with `BmapFileSHA1` and `sha1=`); 2.0 allows any hashlib name,
/// of which sha512 is the other one seen in practice.
public enum BmapChecksumType: String, Sendable, CaseIterable {
    /// SHA-1: formats 1.0–1.3 (`sha1=`, `BmapFileSHA1`).
    case sha1
    /// SHA-256: what bmaptool writes, and imgmap too.
    case sha256
    /// SHA-512, which format 2.0 allows.
    case sha512

    /// Length of the lowercase hexadecimal digest: what `BmapFileChecksum` and `chksum=` hold.
    public var hexLength: Int {
        switch self {
        case .sha1: 40
        case .sha256: 64
        case .sha512: 128
        }
    }
}

/// One running digest of a `BmapChecksumType`, fed by raw buffers (no copies, no Foundation `Data`).
struct BmapHasher {
    private let digest: MessageDigest

    init(_ type: BmapChecksumType) {
        switch type {
        case .sha1: digest = MessageDigest(.sha1)
        case .sha256: digest = MessageDigest(.sha256)
        case .sha512: digest = MessageDigest(.sha512)
        }
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) { digest.update(bytes) }

    /// The digest in lowercase hexadecimal, as bmap files spell it (Python's `hexdigest()`). Call once.
    func finalizeHex() -> String { hexString(digest.finalize()) }
}

/// Lowercase hexadecimal of a byte sequence.
func hexString<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(128)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0xf)])
    }
    return String(decoding: out, as: UTF8.self)
}
