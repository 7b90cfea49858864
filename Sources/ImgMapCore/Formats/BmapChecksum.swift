import Crypto

/// The checksum functions a bmap file may name in `<ChecksumType>` that imgmap can compute. bmaptool
/// writes sha256; format 1.3 used sha1 (with `BmapFileSHA1` and `sha1=`); 2.0 allows any hashlib name,
/// of which sha512 is the other one seen in practice.
public enum BmapChecksumType: String, Sendable, CaseIterable {
    case sha1, sha256, sha512

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
    private enum State {
        case sha1(Insecure.SHA1)
        case sha256(SHA256)
        case sha512(SHA512)
    }

    private var state: State

    init(_ type: BmapChecksumType) {
        switch type {
        case .sha1: state = .sha1(Insecure.SHA1())
        case .sha256: state = .sha256(SHA256())
        case .sha512: state = .sha512(SHA512())
        }
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        switch state {
        case .sha1(var h): h.update(bufferPointer: bytes); state = .sha1(h)
        case .sha256(var h): h.update(bufferPointer: bytes); state = .sha256(h)
        case .sha512(var h): h.update(bufferPointer: bytes); state = .sha512(h)
        }
    }

    /// The digest in lowercase hexadecimal, as bmap files spell it (Python's `hexdigest()`).
    func finalizeHex() -> String {
        switch state {
        case .sha1(let h): hexString(h.finalize())
        case .sha256(let h): hexString(h.finalize())
        case .sha512(let h): hexString(h.finalize())
        }
    }
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
