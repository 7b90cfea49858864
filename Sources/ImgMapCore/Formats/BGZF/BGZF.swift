// BGZF (SAMv1 §4.1): a series of gzip members, each at most 64 KiB compressed and uncompressed, whose
// header carries the member size in a "BC" extra subfield, ending with a fixed 28-byte empty member.
// Any gzip reader decompresses it; a BGZF reader seeks to any member without inflating the ones before.

/// Input bytes per member, as htslib writes them (BGZF_BLOCK_SIZE): small enough that even stored
/// (incompressible) data fits the 64 KiB member limit.
public let bgzfMaxInputPerBlock = 0xff00
/// Largest member, header to trailer (BSIZE is a u16 holding size − 1).
public let bgzfMaxMemberSize = 0x10000
/// Largest uncompressed size a member may declare in ISIZE.
public let bgzfMaxMemberInput = 0x10000
/// Header bytes of a member written by imgmap or htslib: gzip fixed header + XLEN 6 + "BC" subfield.
public let bgzfHeaderSize = 18
/// CRC32 and ISIZE after the deflate data.
public let bgzfTrailerSize = 8
/// Room for deflate data in the largest member.
public let bgzfMaxDeflateSize = bgzfMaxMemberSize - bgzfHeaderSize - bgzfTrailerSize

/// The standard end-of-file member: an empty BGZF member, byte for byte as htslib writes it.
public let bgzfEOFMember: [UInt8] = [
    0x1f, 0x8b, 0x08, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x06, 0x00, 0x42, 0x43, 0x02, 0x00,
    0x1b, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
]

/// The fixed part of a gzip header (RFC 1952 §2.3): magic, CM, FLG, MTIME, XFL, OS, then XLEN.
enum GzipHeader {
    /// ID1 ID2 (the gzip magic) and CM 8 (deflate).
    static let magicAndMethod: [UInt8] = [0x1f, 0x8b, 0x08]
    static let flagExtra: UInt8 = 0x04
    /// FHCRC, FNAME, FCOMMENT: BGZF members never set them.
    static let flagsNotInBGZF: UInt8 = 0x02 | 0x08 | 0x10
    /// Bytes before the extra field: magic(2) CM FLG MTIME(4) XFL OS XLEN(2).
    static let fixedSize = 12
}

/// The header of one BGZF member, as parsed from its first bytes.
struct BGZFMemberHeader: Equatable {
    /// Bytes from the member start to its deflate data (12 + XLEN).
    var headerSize: Int
    /// The whole member, header to trailer: BSIZE + 1.
    var memberSize: Int

    /// Why some bytes are not a BGZF member header.
    enum Problem: Error, Equatable {
        /// Fewer bytes than the header needs; `needed` is the header size when known.
        case short(needed: Int)
        case notGzip
        case gzipWithoutBC
        case badBSIZE(Int)

        var isShort: Bool {
            if case .short = self { return true }
            return false
        }
    }

    /// Parses the member header at the start of `bytes`; needs 12 + XLEN bytes (18 for common files).
    /// Costs a scan of the extra field; no I/O.
    static func parse(_ bytes: UnsafeRawBufferPointer) -> Result<BGZFMemberHeader, Problem> {
        for i in 0..<min(3, bytes.count) where bytes[i] != GzipHeader.magicAndMethod[i] { return .failure(.notGzip) }
        guard bytes.count >= 4 else { return .failure(.short(needed: GzipHeader.fixedSize)) }
        let flags = bytes[3]
        guard flags & GzipHeader.flagExtra != 0, flags & GzipHeader.flagsNotInBGZF == 0 else {
            return .failure(.gzipWithoutBC)
        }
        guard bytes.count >= GzipHeader.fixedSize else { return .failure(.short(needed: GzipHeader.fixedSize)) }
        let extraLength = Int(readLE16(bytes, at: 10))
        let headerSize = GzipHeader.fixedSize + extraLength
        guard bytes.count >= headerSize else { return .failure(.short(needed: headerSize)) }
        // Walk the subfields (SI1 SI2 SLEN data) looking for BC with SLEN 2.
        var at = GzipHeader.fixedSize
        while at + 4 <= headerSize {
            let fieldLength = Int(readLE16(bytes, at: at + 2))
            if bytes[at] == 0x42 && bytes[at + 1] == 0x43 && fieldLength == 2 && at + 6 <= headerSize {
                let memberSize = Int(readLE16(bytes, at: at + 4)) + 1
                guard memberSize >= headerSize + bgzfTrailerSize else { return .failure(.badBSIZE(memberSize - 1)) }
                return .success(BGZFMemberHeader(headerSize: headerSize, memberSize: memberSize))
            }
            at += 4 + fieldLength
        }
        return .failure(.gzipWithoutBC)
    }

    /// Writes imgmap's 18-byte header for a member of `memberSize` bytes (≤ 65536) into `out`.
    static func write(memberSize: Int, into out: UnsafeMutableRawPointer) {
        let fixed: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 0x06, 0x00, 0x42, 0x43, 0x02, 0x00)
        withUnsafeBytes(of: fixed) { out.copyMemory(from: $0.baseAddress!, byteCount: 16) }
        writeLE16(UInt16(memberSize - 1), to: out + 16)
    }
}

@inline(__always) func readLE16(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt16 {
    UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
}

@inline(__always) func readLE32(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt32 {
    UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
        | UInt32(bytes[offset + 3]) << 24
}

@inline(__always) func readLE64(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt64 {
    UInt64(readLE32(bytes, at: offset)) | UInt64(readLE32(bytes, at: offset + 4)) << 32
}

@inline(__always) func writeLE16(_ value: UInt16, to out: UnsafeMutableRawPointer) {
    out.storeBytes(of: value.littleEndian, as: UInt16.self)
}

@inline(__always) func writeLE32(_ value: UInt32, to out: UnsafeMutableRawPointer) {
    out.storeBytes(of: value.littleEndian, as: UInt32.self)
}

@inline(__always) func writeLE64(_ value: UInt64, to out: UnsafeMutableRawPointer) {
    out.storeBytes(of: value.littleEndian, as: UInt64.self)
}

