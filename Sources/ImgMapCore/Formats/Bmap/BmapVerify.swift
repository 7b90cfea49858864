#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One way an image disagrees with its bmap.
public enum BmapMismatch: Equatable, Sendable, CustomStringConvertible {
    /// The image's size differs from `ImageSize` (a block device may be larger: that is not reported).
    case imageSize(expected: UInt64, actual: UInt64)
    /// The bytes of a range hash differently from its checksum (a range cut short by the end of the image
    /// hashes what there is).
    case range(BmapRange, bytes: Range<UInt64>, expected: String, actual: String)

    public var description: String {
        switch self {
        case let .imageSize(expected, actual):
            "image is \(actual) bytes, the bmap says \(expected)"
        case let .range(range, bytes, expected, actual):
            "blocks \(range) (bytes \(bytes.lowerBound)-\(bytes.upperBound - 1)) hash to \(actual), the bmap says \(expected)"
        }
    }
}

/// Checks `image` against `bmap`: its size, and the checksum of every range that has one. Returns every
/// mismatch in block order; empty means the image agrees. Reads only mapped bytes, with pread(2) into
/// one 1 MiB buffer; ranges without checksums (format < 1.3, `--no-checksum`) are not read.
/// Throws `IOFailure` when the image cannot be read.
public func verifyBmap(bmap: BmapFile, image: ImageFile) throws(IOFailure) -> [BmapMismatch] {
    var mismatches: [BmapMismatch] = []
    let size = try image.byteSize()
    let isDevice = (try image.status().st_mode & S_IFMT) == S_IFBLK
    if size != bmap.imageSize && !(isDevice && size > bmap.imageSize) {
        mismatches.append(.imageSize(expected: bmap.imageSize, actual: size))
    }
    guard let type = bmap.checksumType else { return mismatches }
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bmapReadBufferSize, alignment: 4096)
    defer { buffer.deallocate() }
    for range in bmap.ranges {
        guard let expected = range.checksum else { continue }
        let bytes = bmap.byteRange(of: range)
        var hasher = BmapHasher(type)
        var offset = bytes.lowerBound
        while offset < bytes.upperBound {
            let want = Int(min(UInt64(buffer.count), bytes.upperBound - offset))
            let got = try image.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), at: offset)
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
            if got < want { break }  // the image ends early
            offset += UInt64(got)
        }
        let actual = hasher.finalizeHex()
        if actual != expected {
            mismatches.append(.range(range, bytes: bytes, expected: expected, actual: actual))
        }
    }
    return mismatches
}
