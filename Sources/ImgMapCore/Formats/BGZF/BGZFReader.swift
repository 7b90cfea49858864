#if canImport(Glibc)
import Glibc
#endif

/// Random access to the uncompressed content of a BGZF file. Opening reads the `.gzi` index or walks
/// member headers (no inflating) and checks the file ends with the EOF member; `read(into:at:)` inflates
/// only the members a range touches and keeps the last one, so sequential reads inflate each member once.
///
/// One reader serves one thread at a time (it owns buffers and a deflate backend). For several threads
/// make one reader each with `makeSibling()`: siblings share the file and the member table, and cost
/// 128 KiB of buffers each.
public final class BGZFReader {
    /// Where the member index comes from.
    public enum IndexSource: Sendable {
        /// `FILE.gzi` (the BGZF path plus ".gzi") when it exists, else walk the headers.
        case automatic
        /// Walk the member headers; ignore any `.gzi`.
        case walkHeaders
        /// This `.gzi` file, which must exist.
        case gzi(path: String)
    }

    /// The BGZF file read.
    public let file: ImageFile
    /// The deflate library in use.
    public let library: DeflateLibrary
    let table: BGZFMemberTable
    private let backend: any DeflateBackend
    /// One member as read from the file (≤ 64 KiB).
    private let compressed: UnsafeMutableRawBufferPointer
    /// The inflated member `cachedMember` (≤ 64 KiB).
    private let inflated: UnsafeMutableRawBufferPointer
    private var cachedMember = -1

    /// Opens `file` as BGZF. Bad data is a `BGZFError` (exit 65) saying what is wrong: not gzip, plain gzip,
    /// truncated, oversized member, missing EOF member, empty file, a `.gzi` that does not fit the file.
    public convenience init(file: ImageFile, index: IndexSource = .automatic, library: DeflateLibrary? = nil) throws {
        let chosen = try library ?? DeflateLibrary.fromEnvironment()
        try chosen.checkAvailable()
        let gzi: (BGZFIndex, String)?
        switch index {
        case .walkHeaders:
            gzi = nil
        case .gzi(let path):
            gzi = (try BGZFIndex.read(from: try ImageFile(openRegularFile: path)), path)
        case .automatic:
            let path = file.path + ".gzi"
            if PathCalls.access(path, F_OK) == 0 {
                gzi = (try BGZFIndex.read(from: try ImageFile(openRegularFile: path)), path)
            } else {
                gzi = nil
            }
        }
        let table = try BGZFMemberTable.build(file: file, index: gzi?.0, indexPath: gzi?.1)
        self.init(file: file, table: table, library: chosen)
    }

    /// A reader over an already built table: no I/O.
    init(file: ImageFile, table: BGZFMemberTable, library: DeflateLibrary) {
        self.file = file
        self.table = table
        self.library = library
        backend = library.makeBackend()
        compressed = .allocate(byteCount: bgzfMaxMemberSize, alignment: 64)
        inflated = .allocate(byteCount: bgzfMaxMemberInput, alignment: 64)
    }

    deinit {
        compressed.deallocate()
        inflated.deallocate()
    }

    /// Another reader of the same file for another thread: shares the file and member table (no I/O).
    public func makeSibling() -> BGZFReader {
        BGZFReader(file: file, table: table, library: library)
    }

    /// Bytes of uncompressed content.
    public var uncompressedSize: UInt64 { table.uncompressedSize }

    /// Data members (the EOF member not counted).
    public var memberCount: Int { table.memberCount }

    /// The index of this file, as a `.gzi` would hold it.
    public var index: BGZFIndex {
        BGZFIndex(entries: (1..<max(1, table.memberCount)).map {
            BGZFIndex.Entry(compressedOffset: table.compressedStarts[$0], uncompressedOffset: table.uncompressedStarts[$0])
        })
    }

    /// Fills `buffer` with uncompressed bytes from `offset`, or fewer at the end of the content; returns
    /// the count. Reads each needed member with one pread(2) and inflates it, checking CRC32 and ISIZE;
    /// the last member stays cached.
    @discardableResult
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        var done = 0
        var position = offset
        while done < buffer.count && position < table.uncompressedSize {
            let member = table.member(containing: position)
            try load(member: member)
            let start = Int(position - table.uncompressedStarts[member])
            let available = Int(table.uncompressedStarts[member + 1] - table.uncompressedStarts[member]) - start
            let count = min(available, buffer.count - done)
            (buffer.baseAddress! + done).copyMemory(from: inflated.baseAddress! + start, byteCount: count)
            done += count
            position += UInt64(count)
        }
        return done
    }

    /// Reads and inflates `member` into `inflated` unless it is already there.
    private func load(member: Int) throws {
        guard member != cachedMember else { return }
        cachedMember = -1
        try table.checkIndex(through: member, file: file)
        let start = table.compressedStarts[member]
        let size = Int(table.compressedStarts[member + 1] - start)
        let expectedSize = Int(table.uncompressedStarts[member + 1] - table.uncompressedStarts[member])
        guard size <= bgzfMaxMemberSize else { throw disagreement(at: start, "spans \(size) bytes to the next member") }
        let bytes = UnsafeMutableRawBufferPointer(rebasing: compressed[..<size])
        try file.readExactly(into: bytes, at: start)
        let raw = UnsafeRawBufferPointer(bytes)
        guard case .success(let header) = BGZFMemberHeader.parse(raw), header.memberSize == size else {
            throw disagreement(at: start, "is not a BGZF member of \(size) bytes")
        }
        let storedCRC = readLE32(raw, at: size - 8)
        let storedSize = Int(readLE32(raw, at: size - 4))
        guard storedSize == expectedSize else {
            throw disagreement(at: start, "holds \(storedSize) bytes (ISIZE), not \(expectedSize)")
        }
        let deflated = UnsafeRawBufferPointer(rebasing: raw[header.headerSize..<(size - bgzfTrailerSize)])
        let output = UnsafeMutableRawBufferPointer(rebasing: inflated[..<expectedSize])
        guard backend.inflate(deflated, into: output) else {
            throw BGZFError(path: file.path, offset: start, "member's deflate data is corrupt or does not inflate to "
                + "its ISIZE of \(expectedSize) bytes")
        }
        let crc = backend.crc32(UnsafeRawBufferPointer(output), seed: 0)
        guard crc == storedCRC else {
            throw BGZFError(path: file.path, offset: start, "member's CRC32 mismatch: stored \(hex(storedCRC)), "
                + "computed \(hex(crc)) from the inflated data: the file is corrupt")
        }
        cachedMember = member
    }

    /// A member that does not match the table: the `.gzi` was wrong when there is one, else the file
    /// changed since it was opened.
    private func disagreement(at start: UInt64, _ what: String) -> BGZFError {
        if let indexPath = table.indexPath {
            return BGZFError(path: indexPath, "disagrees with \(file.path): the member at offset \(start) \(what) "
                + "(delete or rebuild the index)")
        }
        return BGZFError(path: file.path, offset: start, "member \(what): the file changed while open?")
    }

    private func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
    }
}
