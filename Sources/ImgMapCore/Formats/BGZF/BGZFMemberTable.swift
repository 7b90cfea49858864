import Synchronization

/// Where every data member of one BGZF file starts, compressed and uncompressed, plus a sentinel for
/// the end (the EOF member's start, the total size). Built once per file, from its `.gzi` or by walking
/// member headers, then shared read-only by any number of readers. 16 bytes per member.
final class BGZFMemberTable: Sendable {
    /// Member starts in the file, then the sentinel: count = members + 1.
    let compressedStarts: [UInt64]
    /// Member starts in the uncompressed data, then the total size.
    let uncompressedStarts: [UInt64]
    /// The `.gzi` the table came from, for messages when a member disagrees with it.
    let indexPath: String?

    /// How many members from the first are known to agree with the table: all of them for a table built
    /// by walking; for one from a `.gzi`, those checked so far by `checkIndex(through:file:)`.
    private let checkedCount: Mutex<Int>

    var memberCount: Int { compressedStarts.count - 1 }
    var uncompressedSize: UInt64 { uncompressedStarts[memberCount] }

    private init(compressedStarts: [UInt64], uncompressedStarts: [UInt64], indexPath: String?) {
        self.compressedStarts = compressedStarts
        self.uncompressedStarts = uncompressedStarts
        self.indexPath = indexPath
        self.checkedCount = Mutex(indexPath == nil ? compressedStarts.count - 1 : 0)
    }

    /// A `.gzi` can be plausible and wrong (every uncompressed offset shifted by 512, say): each member
    /// read checks its own header and ISIZE against its entry, but only a walk from the start shows that
    /// the offsets are the sums of the ISIZEs before them. So before member `member` is used, the
    /// members before it not yet checked are walked (header and ISIZE, two small preads each, once per
    /// table), and an entry that disagrees is a `BGZFError` naming the index (exit 65).
    func checkIndex(through member: Int, file: ImageFile) throws {
        guard let indexPath else { return }
        try checkedCount.withLock { (checked: inout Int) throws -> Void in
            // `member` itself is checked by the reader that inflates it (its header, size and ISIZE).
            guard checked < member else { return }
            var walker = BGZFHeaderWalker(file: file, fileSize: try file.byteSize())
            for m in checked..<member {
                let found = try walker.member(at: compressedStarts[m], expectedBy: indexPath)
                let size = compressedStarts[m + 1] - compressedStarts[m]
                let isize = uncompressedStarts[m + 1] - uncompressedStarts[m]
                guard UInt64(found.size) == size, UInt64(found.uncompressedSize) == isize else {
                    throw BGZFError(path: indexPath, "says member \(m) of \(file.path) (at offset \(compressedStarts[m])) holds "
                        + "\(size) bytes for uncompressed bytes \(uncompressedStarts[m])+\(uncompressedStarts[m + 1] - uncompressedStarts[m]), but it holds "
                        + "\(found.size) bytes for \(found.uncompressedSize) (ISIZE): the index belongs to another file or a different "
                        + "version of it (delete it or rebuild it)")
                }
                checked = m + 1
            }
        }
    }

    /// The member holding uncompressed byte `offset` (< uncompressedSize): the last one starting at or
    /// before it, which skips empty members. Binary search, O(log members).
    func member(containing offset: UInt64) -> Int {
        var low = 0
        var high = memberCount  // invariant: uncompressedStarts[low] <= offset < uncompressedStarts[high]
        while high - low > 1 {
            let middle = (low + high) / 2
            if uncompressedStarts[middle] <= offset { low = middle } else { high = middle }
        }
        return low
    }

    /// Builds the table for `file`: from `index` (a parsed `.gzi` read from `indexPath`) when given, else
    /// by walking every member header from the start. Either way the members after the last known start
    /// are walked to the end, which must be the EOF member. Reads two small preads per member walked
    /// (header, ISIZE); inflates nothing.
    static func build(file: ImageFile, index: BGZFIndex?, indexPath: String?) throws -> BGZFMemberTable {
        let fileSize = try file.byteSize()
        guard fileSize > 0 else {
            throw BGZFError(path: file.path, "empty file: not BGZF (even an empty BGZF file holds the 28-byte EOF member)")
        }
        var compressed: [UInt64] = [0]
        var uncompressed: [UInt64] = [0]
        var walker = BGZFHeaderWalker(file: file, fileSize: fileSize)
        // Check the first member whatever the index says, so plain gzip gets its own message.
        _ = try walker.member(at: 0, expectedBy: nil)
        if let index {
            compressed.reserveCapacity(index.entries.count + 1)
            uncompressed.reserveCapacity(index.entries.count + 1)
            for entry in index.entries {
                guard entry.compressedOffset < fileSize else {
                    throw BGZFError(path: indexPath ?? file.path, "entry at compressed offset \(entry.compressedOffset) "
                        + "lies beyond the end of \(file.path) (\(fileSize) bytes): the index belongs to another file")
                }
                compressed.append(entry.compressedOffset)
                uncompressed.append(entry.uncompressedOffset)
            }
        }
        // Walk from the last known member start to the end of the file. The last member walked must be the
        // EOF member; its entry (start, total size) is the sentinel.
        var position = compressed.removeLast()
        var total = uncompressed.removeLast()
        var blameIndex = !(index?.entries.isEmpty ?? true)
        var lastWasEOF = false
        while position < fileSize {
            let member = try walker.member(at: position, expectedBy: blameIndex ? indexPath : nil)
            blameIndex = false
            lastWasEOF = try walker.isEOFMember(at: position, size: member.size)
            compressed.append(position)
            uncompressed.append(total)
            position += UInt64(member.size)
            total += UInt64(member.uncompressedSize)
        }
        guard lastWasEOF else {
            throw BGZFError(path: file.path, "no BGZF end-of-file member at the end: the file is truncated or its "
                + "writer did not finish (recompress it, or check the transfer)")
        }
        return BGZFMemberTable(compressedStarts: compressed, uncompressedStarts: uncompressed, indexPath: index == nil ? nil : indexPath)
    }
}

/// Reads member headers and trailers of one file by pread(2), checking sizes against the file.
struct BGZFHeaderWalker {
    let file: ImageFile
    let fileSize: UInt64

    /// A member's size in the file and its declared uncompressed size (ISIZE).
    struct Member {
        var size: Int
        var uncompressedSize: Int
    }

    /// Parses the member starting at `position`. `expectedBy` names a `.gzi` that said a member starts
    /// here, so a bad header is blamed on the index. Two preads: the header (18 bytes typically) and ISIZE.
    mutating func member(at position: UInt64, expectedBy indexPath: String?) throws -> Member {
        let header = try readHeader(at: position, expectedBy: indexPath)
        guard UInt64(header.memberSize) <= fileSize - position else {
            throw BGZFError(path: file.path, offset: position, "member of \(header.memberSize) bytes runs past the end "
                + "of the file (\(fileSize) bytes): the file is truncated")
        }
        var trailer = (UInt32(0), UInt32(0))
        try withUnsafeMutableBytes(of: &trailer) { bytes in
            try file.readExactly(into: bytes, at: position + UInt64(header.memberSize) - UInt64(bgzfTrailerSize))
        }
        let isize = Int(UInt32(littleEndian: trailer.1))
        guard isize <= bgzfMaxMemberInput else {
            throw BGZFError(path: file.path, offset: position, "member declares \(isize) uncompressed bytes (ISIZE), "
                + "more than BGZF's \(bgzfMaxMemberInput): corrupt or not BGZF")
        }
        return Member(size: header.memberSize, uncompressedSize: isize)
    }

    /// True when the `size` bytes at `position` are exactly the standard EOF member.
    func isEOFMember(at position: UInt64, size: Int) throws -> Bool {
        guard size == bgzfEOFMember.count else { return false }
        var bytes = [UInt8](repeating: 0, count: size)
        try bytes.withUnsafeMutableBytes { try file.readExactly(into: $0, at: position) }
        return bytes == bgzfEOFMember
    }

    private func readHeader(at position: UInt64, expectedBy indexPath: String?) throws -> BGZFMemberHeader {
        var wanted = bgzfHeaderSize
        var buffer = [UInt8](repeating: 0, count: wanted)
        while true {
            let available = Int(min(UInt64(wanted), fileSize - position))
            if buffer.count < wanted { buffer = [UInt8](repeating: 0, count: wanted) }
            try buffer.withUnsafeMutableBytes {
                try file.readExactly(into: UnsafeMutableRawBufferPointer(rebasing: $0[..<available]), at: position)
            }
            let parsed = buffer.withUnsafeBytes { BGZFMemberHeader.parse(UnsafeRawBufferPointer(rebasing: $0[..<available])) }
            switch parsed {
            case .success(let header):
                return header
            case .failure(.short(let needed)) where needed > available && available == wanted:
                wanted = needed
            case .failure(let problem):
                throw describe(problem, at: position, available: available, expectedBy: indexPath)
            }
        }
    }

    private func describe(_ problem: BGZFMemberHeader.Problem, at position: UInt64, available: Int,
                          expectedBy indexPath: String?) -> BGZFError {
        if let indexPath, !problem.isShort {
            return BGZFError(path: indexPath, "says a BGZF member starts at offset \(position) of \(file.path), but "
                + "none does: the index belongs to another file or a different version of it (delete it or rebuild it)")
        }
        switch problem {
        case .short:
            return BGZFError(path: file.path, offset: position, "member header cut short after \(available) bytes: "
                + "the file is truncated")
        case .notGzip where position == 0:
            return BGZFError(path: file.path, "not a gzip file (it does not start with 1f 8b 08), so not BGZF")
        case .gzipWithoutBC where position == 0:
            return BGZFError(path: file.path, "is a gzip file but not BGZF (no BC extra field): convert it with "
                + "`imgmap compress`")
        case .notGzip:
            return BGZFError(path: file.path, offset: position, "no gzip member starts here: trailing garbage or corrupt")
        case .gzipWithoutBC:
            return BGZFError(path: file.path, offset: position, "gzip member without the BGZF BC extra field")
        case .badBSIZE(let bsize):
            return BGZFError(path: file.path, offset: position, "member size BSIZE \(bsize) is smaller than its own header")
        }
    }
}
