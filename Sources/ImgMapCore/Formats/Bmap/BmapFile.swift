/// A parsed and checked bmap file (bmap-tools' block map), formats 1.x and 2.x.
///
/// Parsing checks what `bmaptool copy` checks and more: the version (major 1 or 2), every number,
/// `BlocksCount` against `ImageSize`, `BmapFileChecksum` (computed over the file with its own value
/// replaced by zeros), ranges sorted, non-overlapping and inside `BlocksCount`, `MappedBlocksCount`
/// equal to the blocks in the ranges, and the form of every checksum. Format 1.3 uses sha1 with
/// `BmapFileSHA1` and `sha1=`; 1.4 is 2.0 under another number; 1.0–1.2 have no file checksum but
/// their ranges may carry `sha1=`.
/// Cost: linear in the file's size, which is held in memory while parsing.
public struct BmapFile: Equatable, Sendable {
    /// The `version` attribute as written, e.g. `2.0`.
    public var version: String
    /// The version's major number: 1 or 2.
    public var versionMajor: Int
    /// The version's minor number.
    public var versionMinor: Int
    /// `ImageSize`: the image's size in bytes.
    public var imageSize: UInt64
    /// `BlockSize`: bytes per block (4096 from bmaptool on the usual filesystems).
    public var blockSize: UInt64
    /// `BlocksCount`: blocks covering the image, the last possibly partial.
    public var blocksCount: UInt64
    /// `MappedBlocksCount`: blocks in the ranges (checked against them).
    public var mappedBlocksCount: UInt64
    /// SHA-1 for every 1.x format before 1.4 (whose ranges may carry `sha1=`).
    public var checksumType: BmapChecksumType?
    /// The file's own checksum as written (already verified).
    public var fileChecksum: String?
    /// The mapped ranges, ascending and disjoint; every other block is a hole.
    public var ranges: [BmapRange]
    /// Where the text came from, for messages.
    public var path: String

    /// Bytes of `range` in the image: from its first block up to the end of its last, which for the
    /// image's last block stops at `imageSize`.
    public func byteRange(of range: BmapRange) -> Range<UInt64> {
        (range.first * blockSize)..<min((range.last + 1) * blockSize, imageSize)
    }

    /// Reads and parses the bmap file at `path`. Throws `IOFailure` if it cannot be read, `BmapError`
    /// if it is not a valid bmap.
    public init(contentsOf path: String) throws {
        let file = try ImageFile(openForReading: path)
        let size = try file.byteSize()
        guard size <= bmapMaxFileSize else {
            throw BmapError(path: path, "file is \(size) bytes, more than the \(bmapMaxFileSize) a bmap may have here")
        }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        let count = try bytes.withUnsafeMutableBytes { buffer throws(IOFailure) in try file.read(into: buffer, at: 0) }
        bytes.removeLast(bytes.count - count)
        try self.init(bytes: bytes, path: path)
    }

    /// Parses bmap text; `path` names it in errors.
    public init(text: String, path: String = "bmap") throws(BmapError) {
        try self.init(bytes: Array(text.utf8), path: path)
    }

    /// Parses the bytes of a bmap file; `path` names it in errors.
    public init(bytes: [UInt8], path: String = "bmap") throws(BmapError) {
        var reader = BmapXMLReader(bytes: bytes, path: path)
        let root = try reader.parseDocument()
        func fail(_ element: BmapXMLElement, _ message: String) -> BmapError {
            BmapError(path: path, line: element.line, element: element.name, message)
        }
        guard root.name == "bmap" else { throw fail(root, "the root element must be <bmap>") }
        self.path = path

        // Version: "major.minor", both decimal.
        guard let version = root.attribute("version") else { throw fail(root, "no 'version' attribute") }
        let parts = version.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let major = Self.decimal(parts[0]), let minor = Self.decimal(parts[1]),
              major < 1000, minor < 1000 else {
            throw fail(root, "version '\(version)' is not of the form major.minor")
        }
        guard major == 1 || major == 2 else {
            throw fail(root, "bmap format version \(version) is not supported (only 1.x and 2.x)")
        }
        self.version = version
        versionMajor = Int(major)
        versionMinor = Int(minor)

        // Top-level elements: each at most once; unknown ones are left alone (later minor versions).
        var byName: [String: BmapXMLElement] = [:]
        for child in root.children {
            if let earlier = byName[child.name] { throw fail(child, "appears twice (also at line \(earlier.line))") }
            byName[child.name] = child
        }
        func required(_ name: String) throws(BmapError) -> BmapXMLElement {
            guard let element = byName[name] else {
                throw BmapError(path: path, line: root.line, element: "bmap", "no <\(name)> element")
            }
            return element
        }
        func number(_ name: String) throws(BmapError) -> UInt64 {
            let element = try required(name)
            guard let value = Self.decimal(Substring(Self.trimmed(element.text))) else {
                throw fail(element, "'\(Self.trimmed(element.text))' is not a decimal number")
            }
            return value
        }

        imageSize = try number("ImageSize")
        blockSize = try number("BlockSize")
        blocksCount = try number("BlocksCount")
        mappedBlocksCount = try number("MappedBlocksCount")
        guard blockSize > 0 else { throw fail(try required("BlockSize"), "block size must be positive") }
        let expectedBlocks = imageSize / blockSize + (imageSize % blockSize == 0 ? 0 : 1)
        guard blocksCount == expectedBlocks else {
            throw fail(try required("BlocksCount"), "image size does not match blocks count "
                + "(\(imageSize) bytes != \(blocksCount) blocks * \(blockSize) bytes)")
        }

        // Checksum type and the names that go with the format version.
        let fileChecksumName: String?
        let rangeChecksumName: String?
        if major == 2 || (major == 1 && minor == 4) {
            let element = try required("ChecksumType")
            let name = Self.trimmed(element.text)
            guard let type = BmapChecksumType(rawValue: name) else {
                throw fail(element, "checksum type '\(name)' is not supported (sha1, sha256, sha512)")
            }
            checksumType = type
            fileChecksumName = "BmapFileChecksum"
            rangeChecksumName = "chksum"
        } else if major == 1 && minor == 3 {
            checksumType = .sha1
            fileChecksumName = "BmapFileSHA1"
            rangeChecksumName = "sha1"
        } else {
            // 1.0–1.2 have no checksum of the file itself, but a range may carry `sha1=` (bmaptool reads
            // it as SHA-1 for every 1.x file): checked like any other, never reported as passed unseen.
            checksumType = .sha1
            fileChecksumName = nil
            rangeChecksumName = "sha1"
        }

        // The file's own checksum: the value's bytes replaced by '0's, then hashed.
        if let type = checksumType, let fileChecksumName {
            let element = try required(fileChecksumName)
            let value = Self.trimmed(element.text)
            guard Self.isHex(value, length: type.hexLength) else {
                throw fail(element, "'\(value)' is not a \(type.rawValue) checksum (\(type.hexLength) lowercase hexadecimal digits)")
            }
            guard let raw = element.textBytes,
                  let at = Self.find(Array(value.utf8), in: bytes, within: raw) else {
                throw fail(element, "the checksum must be written as plain text")
            }
            var zeroed = bytes
            for i in at..<(at + type.hexLength) { zeroed[i] = UInt8(ascii: "0") }
            var hasher = BmapHasher(type)
            zeroed.withUnsafeBytes { hasher.update($0) }
            let computed = hasher.finalizeHex()
            guard computed == value else {
                throw fail(element, "checksum mismatch: the file hashes to \(computed), it says \(value)")
            }
            fileChecksum = value
        } else {
            fileChecksum = nil
        }

        // The block map.
        let blockMap = try required("BlockMap")
        var ranges: [BmapRange] = []
        var mapped: UInt64 = 0
        for element in blockMap.children {
            guard element.name == "Range" else { throw fail(element, "unexpected element in <BlockMap>") }
            let text = Self.trimmed(element.text)
            let bounds = text.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count),
                  let first = Self.decimal(Substring(Self.trimmed(String(bounds[0])))),
                  let last = bounds.count == 2 ? Self.decimal(Substring(Self.trimmed(String(bounds[1])))) : first else {
                throw fail(element, "'\(text)' is not a block number or range 'first-last'")
            }
            guard first <= last else { throw fail(element, "range \(text) is reversed") }
            guard last < blocksCount else {
                throw fail(element, "range \(text) goes past the last block \(blocksCount - 1) (BlocksCount \(blocksCount))")
            }
            if let previous = ranges.last, first <= previous.last {
                throw fail(element, "range \(text) overlaps or comes before range \(previous) of line \(previous.line)")
            }
            var checksum: String?
            if let type = checksumType, let rangeChecksumName, let value = element.attribute(rangeChecksumName) {
                guard Self.isHex(value, length: type.hexLength) else {
                    throw fail(element, "\(rangeChecksumName)='\(value)' is not a \(type.rawValue) checksum")
                }
                checksum = value
            }
            ranges.append(BmapRange(first: first, last: last, checksum: checksum, line: element.line))
            mapped += last - first + 1
        }
        guard mapped == mappedBlocksCount else {
            throw fail(try required("MappedBlocksCount"), "says \(mappedBlocksCount) blocks, the ranges hold \(mapped)")
        }
        self.ranges = ranges
    }

    /// Decimal digits only (no sign, no spaces), within UInt64.
    private static func decimal(_ text: Substring) -> UInt64? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return UInt64(text)
    }

    /// Without leading and trailing XML whitespace.
    private static func trimmed(_ text: String) -> String {
        let space: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0D]
        let utf8 = Array(text.utf8)
        guard let start = utf8.firstIndex(where: { !space.contains($0) }) else { return "" }
        let end = utf8.lastIndex(where: { !space.contains($0) })!
        return String(decoding: utf8[start...end], as: UTF8.self)
    }

    private static func isHex(_ text: String, length: Int) -> Bool {
        text.utf8.count == length && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// Offset of `needle` inside `haystack[range]`.
    private static func find(_ needle: [UInt8], in haystack: [UInt8], within range: Range<Int>) -> Int? {
        guard needle.count <= range.count else { return nil }
        for start in range.lowerBound...(range.upperBound - needle.count)
        where haystack[start..<start + needle.count].elementsEqual(needle) {
            return start
        }
        return nil
    }
}

/// Largest bmap file `BmapFile(contentsOf:)` reads (a bmap has ~100 bytes per range).
public let bmapMaxFileSize: UInt64 = 256 << 20
