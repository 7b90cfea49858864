// .gzi: the BGZF index htslib's `bgzip -i` writes next to FILE.gz as FILE.gz.gzi.
// Layout (all little-endian u64): count, then count pairs (compressed offset, uncompressed offset),
// one per member start except the first (always 0, 0); the EOF member has no entry. For an empty input
// bgzip 1.16 writes count 0xffffffffffffffff and no pairs; imgmap writes 0 and reads both.

/// Where each BGZF member starts, in the compressed file and in the uncompressed data: the content of
/// a `.gzi` file. 16 bytes per 64 KiB member (256 KiB per GiB of data).
public struct BGZFIndex: Equatable, Sendable {
    /// One member start, as a `.gzi` pair.
    public struct Entry: Equatable, Sendable {
        /// Byte offset of the member in the BGZF file.
        public var compressedOffset: UInt64
        /// Byte offset of the member's first byte in the uncompressed data.
        public var uncompressedOffset: UInt64

        /// A member start at these two byte offsets.
        public init(compressedOffset: UInt64, uncompressedOffset: UInt64) {
            self.compressedOffset = compressedOffset
            self.uncompressedOffset = uncompressedOffset
        }
    }

    /// Every member start but the first, in file order.
    public var entries: [Entry]

    /// An index of these member starts (the first member's, at 0/0, is implied).
    public init(entries: [Entry] = []) { self.entries = entries }

    /// The `.gzi` file's bytes: 8 + 16 × entries.count.
    public func gziBytes() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 8 + 16 * entries.count)
        bytes.withUnsafeMutableBytes { out in
            let base = out.baseAddress!
            writeLE64(UInt64(entries.count), to: base)
            for (i, entry) in entries.enumerated() {
                writeLE64(entry.compressedOffset, to: base + 8 + 16 * i)
                writeLE64(entry.uncompressedOffset, to: base + 16 + 16 * i)
            }
        }
        return bytes
    }

    /// Writes the `.gzi` bytes to `file` at its current position (write(2): a file or a pipe).
    public func write(to file: ImageFile) throws(IOFailure) {
        let bytes = gziBytes()
        var failure: IOFailure?
        bytes.withUnsafeBytes { raw in
            do throws(IOFailure) { try file.append(raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Parses `.gzi` bytes read from `path` (named in errors), checking the layout only: the size matches
    /// the count, compressed offsets strictly increase, uncompressed offsets never decrease, and no step
    /// exceeds one member (64 KiB) in either. Whether the entries fit a BGZF file is the reader's check.
    public static func parse(gzi bytes: UnsafeRawBufferPointer, path: String) throws(BGZFError) -> BGZFIndex {
        guard bytes.count >= 8 else {
            throw BGZFError(path: path, "\(bytes.count) bytes: too short for a .gzi index (it starts with an 8-byte count)")
        }
        let declared = readLE64(bytes, at: 0)
        // bgzip writes an all-ones count (−1) for an empty input.
        if declared == UInt64.max && bytes.count == 8 { return BGZFIndex() }
        let available = UInt64(bytes.count - 8) / 16
        guard declared == available, (bytes.count - 8) % 16 == 0 else {
            throw BGZFError(path: path, "\(bytes.count) bytes but a count of \(declared) entries needs "
                + (declared <= (UInt64.max - 8) / 16 ? "\(8 + 16 * declared)" : "more than exist")
                + ": not a .gzi index, or a truncated one")
        }
        var entries: [Entry] = []
        entries.reserveCapacity(Int(declared))
        var previous = Entry(compressedOffset: 0, uncompressedOffset: 0)
        for i in 0..<Int(declared) {
            let entry = Entry(compressedOffset: readLE64(bytes, at: 8 + 16 * i),
                              uncompressedOffset: readLE64(bytes, at: 16 + 16 * i))
            let where_ = UInt64(8 + 16 * i)
            guard entry.compressedOffset > previous.compressedOffset,
                  entry.compressedOffset - previous.compressedOffset <= UInt64(bgzfMaxMemberSize)
            else {
                throw BGZFError(path: path, offset: where_, "entry \(i): compressed offset \(entry.compressedOffset) "
                    + "does not follow \(previous.compressedOffset) by 1 to \(bgzfMaxMemberSize) bytes")
            }
            guard entry.uncompressedOffset >= previous.uncompressedOffset,
                  entry.uncompressedOffset - previous.uncompressedOffset <= UInt64(bgzfMaxMemberInput)
            else {
                throw BGZFError(path: path, offset: where_, "entry \(i): uncompressed offset \(entry.uncompressedOffset) "
                    + "does not follow \(previous.uncompressedOffset) by 0 to \(bgzfMaxMemberInput) bytes")
            }
            entries.append(entry)
            previous = entry
        }
        return BGZFIndex(entries: entries)
    }

    /// Reads and parses the whole `.gzi` file (one pread(2) of its size).
    public static func read(from file: ImageFile) throws -> BGZFIndex {
        let size = try file.byteSize()
        guard size <= UInt64(Int.max / 2) else {
            throw BGZFError(path: file.path, "\(size) bytes: too large for a .gzi index")
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(size), alignment: 8)
        defer { buffer.deallocate() }
        try file.readExactly(into: buffer, at: 0)
        return try parse(gzi: UnsafeRawBufferPointer(buffer), path: file.path)
    }
}
