/// Writes a bmap 2.0 file (sha256 checksums) from mapped block ranges pushed in ascending order, hashing
/// each range's bytes as they are fed: one pass, no reads of its own. Memory: one running digest plus
/// the `<Range>` lines written so far (about 100 bytes per range).
///
/// ```
/// var builder = try BmapBuilder(imageSize: size)
/// try builder.beginRange(first: 0)
/// builder.update(bytesOfBlocks0to9)          // any number of calls, any sizes
/// try builder.endRange(last: 9)
/// let xml = try builder.finish()
/// ```
///
/// The output matches `bmaptool create` byte for byte for the same ranges: same comments, spacing and
/// `BmapFileChecksum`. Ranges pushed back to back (`first == previous last + 1`) are merged into one,
/// as bmaptool's hole scan would find them, so a caller may push block by block.
public struct BmapBuilder {
    /// bmaptool's block size on the usual 4 KiB-block filesystems (it asks the filesystem, FIGETBSZ).
    public static let defaultBlockSize: UInt64 = 4096

    /// The image's size in bytes (`ImageSize`).
    public let imageSize: UInt64
    /// Bytes per block (`BlockSize`).
    public let blockSize: UInt64
    /// Blocks covering the image; the last may be partial.
    public let blocksCount: UInt64
    /// Whether `<Range>` lines carry `chksum=` (bmaptool's `--no-checksum` turns them off).
    public let checksums: Bool
    /// Name used in errors.
    public let path: String
    /// Blocks in ranges ended so far.
    public private(set) var mappedBlocksCount: UInt64 = 0

    /// Finished `<Range>` lines.
    private var body: [UInt8] = []
    /// The range being fed: its first block and the next byte offset expected.
    private var open: (first: UInt64, position: UInt64)?
    /// The last ended range, kept unwritten so that a range starting right after it can extend it.
    private var pending: (first: UInt64, last: UInt64)?
    /// Digest of the open or pending range.
    private var hasher = BmapHasher(.sha256)
    private var finished = false
    /// Set when bytes were fed outside a range; reported by `finish()`.
    private var strayBytes: UInt64 = 0

    /// Starts a bmap of an image of `imageSize` bytes (> 0, as bmaptool refuses empty images).
    public init(imageSize: UInt64, blockSize: UInt64 = BmapBuilder.defaultBlockSize, checksums: Bool = true,
                path: String = "bmap") throws(BmapError) {
        guard imageSize > 0 else { throw BmapError(path: path, "cannot make a bmap of an empty image") }
        guard blockSize > 0 else { throw BmapError(path: path, "block size must be positive") }
        self.imageSize = imageSize
        self.blockSize = blockSize
        self.blocksCount = imageSize / blockSize + (imageSize % blockSize == 0 ? 0 : 1)
        self.checksums = checksums
        self.path = path
    }

    /// Byte offset where block `block` ends in the image: the last block stops at `imageSize`.
    private func endOffset(ofBlock block: UInt64) -> UInt64 {
        min((block + 1) * blockSize, imageSize)
    }

    /// Opens a range at block `first`, which must lie after every range pushed so far.
    public mutating func beginRange(first: UInt64) throws(BmapError) {
        guard !finished else { throw BmapError(path: path, "beginRange after finish") }
        if let open { throw BmapError(path: path, "beginRange(first: \(first)) while the range from block \(open.first) is open") }
        guard first < blocksCount else {
            throw BmapError(path: path, "block \(first) is past the image's last block \(blocksCount - 1)")
        }
        if let pending {
            guard first > pending.last else {
                throw BmapError(path: path, "block \(first) is not after the previous range \(pending.first)-\(pending.last)")
            }
            if first == pending.last + 1 {
                // Back to back: keep hashing into the same digest.
                self.pending = nil
                open = (pending.first, first * blockSize)
                return
            }
            flushPending()
        }
        hasher = BmapHasher(.sha256)
        open = (first, first * blockSize)
    }

    /// Feeds the next bytes of the open range, in image order. Costs one SHA-256 update. Bytes fed with
    /// no range open are a caller error, reported by `finish()`.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var current = open else { strayBytes += UInt64(bytes.count); return }
        if checksums { hasher.update(bytes) }
        current.position += UInt64(bytes.count)
        open = current
    }

    /// Closes the open range at block `last` (inclusive). Every byte of blocks `first...last` must have
    /// been fed: up to `imageSize` for the last block of the image.
    public mutating func endRange(last: UInt64) throws(BmapError) {
        guard let current = open else { throw BmapError(path: path, "endRange(last: \(last)) without an open range") }
        guard last < blocksCount else {
            throw BmapError(path: path, "block \(last) is past the image's last block \(blocksCount - 1)")
        }
        guard last >= current.first, current.position == endOffset(ofBlock: last) else {
            throw BmapError(path: path, "range \(current.first)-\(last): fed bytes up to offset \(current.position), "
                + "but block \(last) ends at offset \(endOffset(ofBlock: last))")
        }
        open = nil
        pending = (current.first, last)
    }

    /// Writes out the pending range's line.
    private mutating func flushPending() {
        guard let range = pending else { return }
        pending = nil
        mappedBlocksCount += range.last - range.first + 1
        let line = BmapText.range(first: range.first, last: range.last, checksum: checksums ? hasher.finalizeHex() : nil)
        body.append(contentsOf: line.utf8)
    }

    /// The complete bmap text, `BmapFileChecksum` filled in. Fails if a range is still open.
    public mutating func finish() throws(BmapError) -> String {
        guard !finished else { throw BmapError(path: path, "finish called twice") }
        if let open { throw BmapError(path: path, "finish while the range from block \(open.first) is open") }
        if strayBytes > 0 { throw BmapError(path: path, "\(strayBytes) bytes were fed outside any range") }
        flushPending()
        finished = true

        // bmaptool writes blanks where the mapped counts go, then overwrites them in place: a shorter value
        // leaves trailing blanks, a longer one runs over what follows. Do the same.
        let imageHuman = BmapText.humanSize(imageSize)
        var text = Array(BmapText.start(imageSize: imageSize, blockSize: blockSize, blocksCount: blocksCount).utf8)
        text += "    <!-- Count of mapped blocks: ".utf8
        let mappedCommentAt = text.count
        text += (String(repeating: " ", count: imageHuman.utf8.count) + " or " + String(repeating: " ", count: 6)
            + "   -->\n    <MappedBlocksCount> ").utf8
        let mappedCountAt = text.count
        text += (String(repeating: " ", count: String(blocksCount).utf8.count) + " </MappedBlocksCount>\n\n").utf8
        text += BmapText.checksumTypeComment.utf8
        text += "    <ChecksumType> sha256 </ChecksumType>\n\n".utf8
        text += BmapText.bmapFileChecksumComment.utf8
        text += "    <BmapFileChecksum> ".utf8
        let checksumAt = text.count
        text += (String(repeating: "0", count: BmapChecksumType.sha256.hexLength) + " </BmapFileChecksum>\n\n").utf8
        text += BmapText.blockMapComment.utf8
        text += body
        text += BmapText.end.utf8

        let mappedPercent = Double(mappedBlocksCount) * 100.0 / Double(blocksCount)
        let mappedHuman = BmapText.humanSize(mappedBlocksCount * blockSize)
        Self.overwrite(&text, at: mappedCommentAt, with: mappedHuman + " or " + BmapText.formatOneDecimal(mappedPercent) + "%")
        Self.overwrite(&text, at: mappedCountAt, with: String(mappedBlocksCount))

        var fileHasher = BmapHasher(.sha256)
        text.withUnsafeBytes { fileHasher.update($0) }
        Self.overwrite(&text, at: checksumAt, with: fileHasher.finalizeHex())
        body = []
        return String(decoding: text, as: UTF8.self)
    }

    /// Writes `value` over `text` from `offset`, extending it if needed (a file write after a seek).
    private static func overwrite(_ text: inout [UInt8], at offset: Int, with value: String) {
        for (i, byte) in value.utf8.enumerated() {
            if offset + i < text.count { text[offset + i] = byte } else { text.append(byte) }
        }
    }
}
