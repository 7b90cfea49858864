/// One `<Range>` of a bmap: blocks `first...last` (inclusive), mapped, with the checksum of exactly their
/// bytes when the file carries checksums.
public struct BmapRange: Equatable, Sendable, CustomStringConvertible {
    /// First block of the range.
    public var first: UInt64
    /// Last block of the range (inclusive).
    public var last: UInt64
    /// Lowercase hexadecimal digest of the range's bytes (`chksum=`, or `sha1=` in format 1.3).
    public var checksum: String?
    /// Line of the `<Range>` element in the bmap file (0 when not read from a file).
    public var line: Int

    /// Blocks `first...last`, with their checksum when known.
    public init(first: UInt64, last: UInt64, checksum: String? = nil, line: Int = 0) {
        self.first = first
        self.last = last
        self.checksum = checksum
        self.line = line
    }

    /// Blocks in the range.
    public var blockCount: UInt64 { last - first + 1 }

    /// As written in the file: `a-b`, or `a` for one block.
    public var description: String { first == last ? "\(first)" : "\(first)-\(last)" }
}
