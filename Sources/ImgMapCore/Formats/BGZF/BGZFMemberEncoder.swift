import Foundation

/// Encodes one input block (≤ 0xff00 bytes) as a complete BGZF member with a thread's deflate backend.
/// CPU only, no I/O: about 1 ms per block at level 6 with zlib, half that with libdeflate.
struct BGZFMemberEncoder {
    let level: Int

    /// Writes the member for `input` into `output` (≥ 65536 bytes) and returns its size. Data that
    /// deflate cannot shrink enough is stored (BTYPE 00), which always fits because the input is
    /// at most `bgzfMaxInputPerBlock`.
    func encode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer,
                backend: any DeflateBackend) -> Int {
        precondition(input.count <= bgzfMaxInputPerBlock && output.count >= bgzfMaxMemberSize)
        let base = output.baseAddress!
        let payload = UnsafeMutableRawBufferPointer(start: base + bgzfHeaderSize, count: bgzfMaxDeflateSize)
        let deflated = backend.compress(input, level: level, into: payload) ?? deflateStored(input, into: payload)!
        let memberSize = bgzfHeaderSize + deflated + bgzfTrailerSize
        BGZFMemberHeader.write(memberSize: memberSize, into: base)
        writeLE32(backend.crc32(input, seed: 0), to: base + bgzfHeaderSize + deflated)
        writeLE32(UInt32(input.count), to: base + bgzfHeaderSize + deflated + 4)
        return memberSize
    }

    /// The member for a block of `bgzfMaxInputPerBlock` zero bytes at this level: one deflate call.
    /// Writers take it from `BGZFZeroMemberCache`, so zero blocks skip deflate entirely.
    func zeroBlockMember(backend: any DeflateBackend) -> [UInt8] {
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: bgzfMaxInputPerBlock, alignment: 16)
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        defer { zeros.deallocate() }
        var member = [UInt8](repeating: 0, count: bgzfMaxMemberSize)
        let size = member.withUnsafeMutableBytes { encode(UnsafeRawBufferPointer(zeros), into: $0, backend: backend) }
        member.removeSubrange(size...)
        return member
    }
}

/// Zero-block members by library and level, computed once per process and shared by every writer.
final class BGZFZeroMemberCache: @unchecked Sendable {  // `members` is guarded by `lock`
    static let shared = BGZFZeroMemberCache()
    private let lock = NSLock()
    private var members: [String: [UInt8]] = [:]

    /// The zero-block member for `level` made with `library`: one deflate call the first time, then a lookup.
    func member(level: Int, library: DeflateLibrary) -> [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        let key = "\(library.rawValue) \(level)"
        if let member = members[key] { return member }
        let member = BGZFMemberEncoder(level: level).zeroBlockMember(backend: library.makeBackend())
        members[key] = member
        return member
    }
}
