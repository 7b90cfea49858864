/// A device a table can name: an image file (a leaf) or another mapped device (stacking).
public enum Device: Sendable {
    case leaf(LeafFile)
    case mapped(MappedDevice)

    /// Size in whole sectors.
    public var size: Sector {
        switch self {
        case .leaf(let file): file.size
        case .mapped(let device): device.size
        }
    }
}

import Synchronization

/// How a leaf's bytes are stored.
public enum LeafBacking: Sendable {
    /// A raw image: device sector s is at byte s × 512.
    case raw
    /// A BGZF file: device sector s is at byte s × 512 of its uncompressed content.
    case bgzf(CompressedImage)

    public var isRaw: Bool {
        if case .raw = self { return true }
        return false
    }
}

/// A BGZF image read by uncompressed offset. The reader caches the last inflated member; a lock keeps
/// it to one thread at a time.
public final class CompressedImage: @unchecked Sendable {
    /// Guarded by `lock`: the reader's member cache is not thread-safe.
    let reader: BGZFReader
    let lock = Mutex<Void>(())

    init(reader: BGZFReader) {
        self.reader = reader
    }

    public var uncompressedSize: UInt64 { reader.uncompressedSize }

    /// Fills `buffer` from uncompressed byte `offset`; returns fewer bytes only at the end.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        try lock.withLock { _ in try reader.read(into: buffer, at: offset) }
    }
}

/// An image file bound as a device: opened once, shared by every table line that names it.
public final class LeafFile: Sendable, Hashable {
    /// The path as the user gave it (for messages and `map`).
    public let path: String
    public let image: ImageFile
    /// Whole 512-byte sectors; a partial tail sector is not part of the device (as with losetup).
    public let size: Sector
    public let backing: LeafBacking
    /// Whether the size is known. In `check` without `--dev`, an image that cannot be opened is still a
    /// device, of unknown size, whose bounds are not checked (the kernel skips a zero-sized device too).
    public let sizeKnown: Bool

    public init(path: String, image: ImageFile, size: Sector, backing: LeafBacking = .raw, sizeKnown: Bool = true) {
        self.path = path
        self.image = image
        self.size = size
        self.backing = backing
        self.sizeKnown = sizeKnown
    }

    public static func == (a: LeafFile, b: LeafFile) -> Bool { a === b }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}

/// A device defined by a table: its segments, sorted and gap-free from sector 0.
public final class MappedDevice: Sendable {
    public let name: String
    /// The table file it came from, for messages.
    public let tablePath: String
    public let segments: [Segment]
    /// Start sectors of `segments`, for binary search.
    let starts: [UInt64]
    public let size: Sector

    init(name: String, tablePath: String, segments: [Segment]) {
        self.name = name
        self.tablePath = tablePath
        self.segments = segments
        self.starts = segments.map(\.start.value)
        self.size = segments.last.map { $0.start + $0.length } ?? .zero
    }

    /// Index of the segment holding `sector` (which must be < size). O(log n).
    func segmentIndex(containing sector: UInt64) -> Int {
        var lo = 0
        var hi = starts.count
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if starts[mid] <= sector { lo = mid } else { hi = mid }
        }
        return lo
    }
}

/// One line of a table, constructed.
public struct Segment: Sendable {
    public let start: Sector
    public let length: Sector
    public let line: Int
    public let target: any Target
}
