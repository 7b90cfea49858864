import CZlib

/// Something `probe` reads metadata from: an image, a partition of one, an assembled md array, an LV.
/// `name` is how tables refer to it (the image path as given, or the dump's own device name); reads
/// go down through the layout to the images, so only the metadata sectors are ever touched.
public final class ProbeVolume: @unchecked Sendable {
    enum Layout {
        /// An image file, read with pread(2).
        case image(ImageFile)
        /// `length` bytes of another volume from `offset`.
        case slice(ProbeVolume, offset: UInt64)
        /// Pieces one after another: (volume, offset in it, length), all in bytes.
        case concat([(ProbeVolume, UInt64, UInt64)])
        /// Chunks of `chunk` bytes taken in turn from each (volume, offset).
        case striped([(ProbeVolume, UInt64)], chunk: UInt64)
        /// An md RAID4/5/6 array's data, by member role (nil: missing), members as (volume, data
        /// start in bytes).
        case parity(RaidGeometry, [(ProbeVolume, UInt64)?])
        /// An md RAID10 near layout: each chunk on `near` consecutive members.
        case near(near: Int, chunk: UInt64, [(ProbeVolume, UInt64)?])
        /// An opened LUKS volume's plaintext: the volume below from `offset`, decrypted by the crypt
        /// target's own transform (the cipher, key, IV offset and crypto unit of its crypt line).
        case decrypted(ProbeVolume, offset: UInt64, CryptTransform)
        /// A device of probe's own dump loaded by the engine (TableLoader) and read through its sector
        /// map with the targets' own logic: a thin, cache, snapshot, raid or mirror LV. `depth` is the
        /// deepest volume below it.
        case mapped(MapReader, depth: Int)
    }

    /// How tables refer to the volume: the image path as given, or the dump's device name.
    public let name: String
    /// The volume's size in bytes.
    public let size: UInt64
    let layout: Layout
    /// Bytes read from images through this volume and every volume built on it (shared counter).
    let counter: ReadCounter
    /// Layers above the image (a partition of an LV on an array is 3): bounded so that metadata
    /// nested in itself cannot go on for ever.
    let depth: Int
    /// A partition: its own partition table is not read (kpartx and the kernel do not either, and a
    /// partition starting at sector 0 would hold its parent's table again).
    var isPartition = false

    init(name: String, size: UInt64, layout: Layout, counter: ReadCounter) {
        self.name = name
        self.size = size
        self.layout = layout
        self.counter = counter
        switch layout {
        case .image: depth = 0
        case .slice(let parent, _), .decrypted(let parent, _, _): depth = parent.depth + 1
        case .concat(let pieces): depth = (pieces.map { $0.0.depth }.max() ?? 0) + 1
        case .striped(let members, _): depth = (members.map { $0.0.depth }.max() ?? 0) + 1
        case .parity(_, let members), .near(_, _, let members): depth = (members.compactMap { $0?.0.depth }.max() ?? 0) + 1
        case .mapped(_, let below): depth = below + 1
        }
    }

    /// `count` bytes at `offset`; past the end the result is short (never padded).
    public func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        guard offset < size, count > 0 else { return [] }
        let n = Int(min(UInt64(count), size - offset))
        var out = [UInt8](repeating: 0, count: n)
        try out.withUnsafeMutableBytes { try fill($0, at: offset) }
        return out
    }

    /// Reads exactly `count` bytes at `offset`, or throws a `ProbeProblem` naming what was wanted.
    func readExactly(at offset: UInt64, count: Int, what: String) throws -> [UInt8] {
        let bytes = try read(at: offset, count: count)
        guard bytes.count == count else {
            throw ProbeProblem(place: "\(name): bytes \(offset)+\(count)", message: "\(what) lies past the end of the device (\(size) bytes)")
        }
        return bytes
    }

    private func fill(_ buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        switch layout {
        case .image(let file):
            let n = try file.read(into: buffer, at: offset)
            counter.own += UInt64(n)
        case .mapped(let reader, _):
            try readMapped(buffer, at: offset, reader)
        case .slice(let parent, let base):
            try parent.fillChecked(buffer, at: base + offset)
        case .concat(let pieces):
            var done = 0
            var position = offset
            var pieceStart: UInt64 = 0
            for (volume, start, length) in pieces {
                defer { pieceStart += length }
                guard done < buffer.count, position < pieceStart + length, position >= pieceStart else { continue }
                let n = Int(min(UInt64(buffer.count - done), pieceStart + length - position))
                try volume.fillChecked(UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + n]), at: start + position - pieceStart)
                done += n
                position += UInt64(n)
            }
        case .parity(let geometry, let members):
            try readParity(buffer, at: offset, geometry: geometry, members: members)
        case .decrypted(let parent, let start, let transform):
            try readDecrypted(buffer, at: offset, from: parent, start: start, transform: transform)
        case .near(let copies, let chunk, let members):
            var done = 0
            var position = offset
            let n = UInt64(members.count)
            while done < buffer.count {
                let c = position / chunk, within = position % chunk
                let count = Int(min(UInt64(buffer.count - done), chunk - within))
                let first = c * UInt64(copies)
                guard let k = (0..<UInt64(copies)).first(where: { members[Int((first + $0) % n)] != nil }) else {
                    throw ProbeProblem(place: "md \(name)", message: "no copy of the chunk at array byte \(position) is present")
                }
                let (member, start) = members[Int((first + k) % n)]!
                try member.fillChecked(UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + count]),
                                       at: start + (first + k) / n * chunk + within)
                done += count
                position += UInt64(count)
            }
        case .striped(let members, let chunk):
            var done = 0
            var position = offset
            let count = UInt64(members.count)
            while done < buffer.count {
                let chunkIndex = position / chunk
                let within = position % chunk
                let (member, start) = members[Int(chunkIndex % count)]
                let n = Int(min(UInt64(buffer.count - done), chunk - within))
                try member.fillChecked(UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + n]),
                                       at: start + (chunkIndex / count) * chunk + within)
                done += n
                position += UInt64(n)
            }
        }
    }

    /// A read that must be complete: a lower volume shorter than its tables say is a data error.
    private func fillChecked(_ buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        guard offset + UInt64(buffer.count) <= size else {
            throw ProbeProblem(place: "\(name): bytes \(offset)+\(buffer.count)", message: "the layout above needs bytes past the end of the device (\(size) bytes)")
        }
        try fill(buffer, at: offset)
    }

    /// Plaintext from `offset`: the crypto units covering the range are read from `parent` and
    /// decrypted whole (a unit's IV is its first sector in the segment), then the range is copied out.
    private func readDecrypted(_ buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, from parent: ProbeVolume, start: UInt64,
                               transform: CryptTransform) throws {
        let unit = transform.unitSectors * 512
        let first = offset / unit * unit
        let end = (offset + UInt64(buffer.count) + unit - 1) / unit * unit
        let units = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(end - first), alignment: 16)
        defer {
            units.initializeMemory(as: UInt8.self, repeating: 0)   // plaintext does not linger in freed memory
            units.deallocate()
        }
        try parent.fillChecked(units, at: start + first)
        try transform.transform(units, firstSector: first / 512, encrypt: false)
        let skip = Int(offset - first)
        buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: units[skip..<skip + buffer.count]))
    }

    /// Bytes from `offset` of a device the engine loaded: the 512-byte sectors covering the range are
    /// read through its sector map (an error extent fails the read, as the kernel's read would).
    private func readMapped(_ buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, _ reader: MapReader) throws {
        let first = offset / 512 * 512
        let end = (offset + UInt64(buffer.count) + 511) / 512 * 512
        let sectors = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(end - first), alignment: 16)
        defer { sectors.deallocate() }
        try reader.read(into: sectors, at: Sector(first / 512))
        let skip = Int(offset - first)
        buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: sectors[skip..<skip + buffer.count]))
    }

    /// An md RAID4/5/6 array's bytes from `offset`, so probe can read the metadata of what the array
    /// holds without the raid target: a data chunk is read from its member (RaidGeometry says which,
    /// as md's raid5_compute_sector does) or, when that member is missing, rebuilt as the XOR of the
    /// rest of its row but Q (P is the XOR of the data).
    private func readParity(_ buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, geometry: RaidGeometry,
                            members: [(ProbeVolume, UInt64)?]) throws {
        let chunk = geometry.chunk * 512
        var done = 0
        var position = offset
        while done < buffer.count {
            let within = position % chunk
            let n = Int(min(UInt64(buffer.count - done), chunk - within))
            let (row, j, _, layout) = geometry.locate(position / 512)
            let d = layout.dataDisks[j]
            let memberOffset = row * chunk + within
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + n])
            if let (volume, start) = members[d] {
                let bytes = try volume.readExactly(at: start + memberOffset, count: n, what: "a data chunk")
                bytes.withUnsafeBytes { target.copyMemory(from: $0) }
            } else {
                let others = (0..<geometry.members).filter { $0 != d && $0 != layout.q }
                if others.contains(where: { members[$0] == nil }) {
                    throw ProbeProblem(place: "md \(name)", message: "a data chunk at array byte \(position) cannot be rebuilt: too many members missing")
                }
                target.initializeMemory(as: UInt8.self, repeating: 0)
                for i in others {
                    let (volume, start) = members[i]!
                    let bytes = try volume.readExactly(at: start + memberOffset, count: n, what: "a stripe chunk")
                    bytes.withUnsafeBytes { Parity.xor(target, $0) }
                }
            }
            done += n
            position += UInt64(n)
        }
    }
}

/// LUKS headers and key material are read through the layers below, as any metadata.
extension ProbeVolume: LUKSMedium {
    public var path: String { name }
    public func byteSize() -> UInt64 { size }
    public func readExactly(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try fillChecked(buffer, at: offset)
    }
}

/// Counts the bytes `probe` reads from images (for the report and the benchmark): its own reads,
/// and every pread of the images the engine opened to read LVs through their targets (table loads
/// that failed included: their constructors may have read metadata before refusing it).
final class ReadCounter: @unchecked Sendable {
    /// Bytes probe's own layouts read from the images it opened.
    var own: UInt64 = 0
    /// The image files the engine opened for probe's reads through LVs, by path: opened once, shared
    /// by every load.
    var engineImages: [String: ImageFile] = [:]
    /// All bytes read from images.
    var bytes: UInt64 { engineImages.values.reduce(own) { $0 + $1.bytesRead } }
}

/// A problem found in the metadata: where (image, structure, byte or sector range) and what.
public struct ProbeProblem: Error, CustomStringConvertible, Sendable {
    /// Where: the image or device, the structure, and the byte or sector range (`disk.img: GPT`).
    public var place: String
    /// What is wrong there.
    public var message: String
    /// A problem at `place`; the text is `place: message`.
    public init(place: String, message: String) {
        self.place = place
        self.message = message
    }
    public var description: String { "\(place): \(message)" }
}

// Little- and big-endian field readers over metadata bytes (bounds are the caller's: the structures
// are read whole before any field is taken).
extension Array where Element == UInt8 {
    func le16(_ at: Int) -> UInt16 { UInt16(self[at]) | UInt16(self[at + 1]) << 8 }
    func le32(_ at: Int) -> UInt32 { UInt32(le16(at)) | UInt32(le16(at + 2)) << 16 }
    func le64(_ at: Int) -> UInt64 { UInt64(le32(at)) | UInt64(le32(at + 4)) << 32 }
    func be16(_ at: Int) -> UInt16 { UInt16(self[at]) << 8 | UInt16(self[at + 1]) }
    func be32(_ at: Int) -> UInt32 { UInt32(be16(at)) << 16 | UInt32(be16(at + 2)) }
    func be64(_ at: Int) -> UInt64 { UInt64(be32(at)) << 32 | UInt64(be32(at + 4)) }
    /// A NUL-terminated (or full-width) ASCII/UTF-8 field.
    func cString(_ at: Int, _ width: Int) -> String {
        let field = self[at..<at + width]
        let end = field.firstIndex(of: 0) ?? field.endIndex
        return String(decoding: field[at..<end], as: UTF8.self)
    }
    func matches(_ ascii: String, at: Int) -> Bool {
        let bytes = Array(ascii.utf8)
        return at + bytes.count <= count && Array(self[at..<at + bytes.count]) == bytes
    }
    /// Lower-case hex of a byte range.
    func hex(_ at: Int, _ width: Int) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in self[at..<at + width] { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}

/// zlib's crc32 (the CRC-32 of GPT and gzip) of `bytes[range]`, continuing from `seed`.
func zlibCRC32(_ bytes: [UInt8], _ range: Range<Int>, seed: UInt32 = 0) -> UInt32 {
    bytes.withUnsafeBufferPointer { buffer in
        UInt32(truncatingIfNeeded: CZlib.crc32(uLong(seed), buffer.baseAddress! + range.lowerBound, uInt(range.count)))
    }
}

/// A GUID as text, mixed-endian as EFI and util-linux print it (first three fields little-endian).
func guidString(_ b: [UInt8], _ at: Int) -> String {
    let order = [3, 2, 1, 0, -1, 5, 4, -1, 7, 6, -1, 8, 9, -1, 10, 11, 12, 13, 14, 15]
    var text = ""
    for i in order {
        if i < 0 { text += "-"; continue }
        text += b.hex(at + i, 1)
    }
    return text.uppercased()
}

/// The UUID of 16 bytes in stored order, with dashes (md, LUKS1 store it this way).
func uuidString(_ b: [UInt8], _ at: Int) -> String {
    let h = b.hex(at, 16)
    let c = Array(h)
    return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32])
}
