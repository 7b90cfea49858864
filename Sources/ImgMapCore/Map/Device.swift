/// A device a table can name: an image file (a leaf) or another mapped device (stacking).
public enum Device: Sendable {
    /// An image file.
    case leaf(LeafFile)
    /// A device made by another table (a lower layer).
    case mapped(MappedDevice)

    /// Size in whole sectors.
    public var size: Sector {
        switch self {
        case .leaf(let file): file.size
        case .mapped(let device): device.size
        }
    }
}

import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How a leaf's bytes are stored.
public enum LeafBacking: Sendable {
    /// A raw image: device sector s is at byte s × 512.
    case raw
    /// A BGZF file: device sector s is at byte s × 512 of its uncompressed content.
    case bgzf(CompressedImage)

    /// Whether the leaf is a raw image (not BGZF).
    public var isRaw: Bool {
        if case .raw = self { return true }
        return false
    }
}

/// A BGZF image read by uncompressed offset. Each reader caches its last inflated member, so sequential
/// reads inflate every member once; a large read is split among one reader per core, which inflate
/// their parts side by side (members are independent). A lock keeps each read to one caller at a time.
public final class CompressedImage: @unchecked Sendable {
    /// Guarded by `lock`: the readers' member caches are not thread-safe. `readers[i]` is used only by
    /// worker i of a read.
    let readers: [BGZFReader]
    let lock = Mutex<Void>(())

    /// Reads smaller than this are not worth splitting: a few members.
    static let splitThreshold = 4 * bgzfMaxInputPerBlock

    init(reader: BGZFReader, threads: Int = activeProcessorCount()) {
        readers = [reader] + (1..<max(1, threads)).map { _ in reader.makeSibling() }
    }

    /// Bytes of uncompressed content.
    public var uncompressedSize: UInt64 { readers[0].uncompressedSize }

    /// Fills `buffer` from uncompressed byte `offset`; returns fewer bytes only at the end.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        try lock.withLock { _ in
            let parts = readers.count
            guard parts > 1, buffer.count >= Self.splitThreshold * parts else {
                return try readers[0].read(into: buffer, at: offset)
            }
            let size = readers[0].uncompressedSize
            let want = offset >= size ? 0 : Int(min(UInt64(buffer.count), size - offset))
            let share = (want + parts - 1) / parts
            let failure = Mutex<Error?>(nil)
            nonisolated(unsafe) let buffer = buffer
            nonisolated(unsafe) let readers = readers
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                let start = min(want, part * share)
                let end = min(want, start + share)
                guard start < end else { return }
                do {
                    let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[start..<end])
                    let n = try readers[part].read(into: slice, at: offset + UInt64(start))
                    if n < end - start {
                        throw BGZFError(path: readers[part].file.path, offset: nil, "the image ended early: was it truncated while in use?")
                    }
                } catch {
                    failure.withLock { if $0 == nil { $0 = error } }
                }
            }
            if let error = failure.withLock({ $0 }) { throw error }
            return want
        }
    }
}

extension CompressedImage {
    /// Ranges at least this long are streamed through the inflate queue (its threads cost a little to
    /// start); shorter ones are read through `read(into:at:)`.
    static let streamThreshold: UInt64 = 8 << 20

    /// Hands the uncompressed bytes of `range` to `body` in order, in chunks of about 1 MiB, inflating
    /// ahead on every core (a fixed window of chunks in flight) while `body` writes the previous ones.
    func stream(_ range: Range<UInt64>, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        try lock.withLock { _ in
            let reader = readers[0]
            let queue = BGZFInflateQueue(file: reader.file, table: reader.table, library: reader.library, range: range,
                                         threads: readers.count, slotsPerThread: 8, chunkSize: 16 * bgzfMaxInputPerBlock)
            defer { queue.stop() }
            for chunk in 0..<queue.chunkCount {
                let bytes = try queue.waitForChunk(chunk)
                try body(bytes)
                queue.release(chunk)
            }
        }
    }
}

/// Cores to use for work split among threads.
func activeProcessorCount() -> Int {
    max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
}

/// An image file bound as a device: opened once, shared by every table line that names it.
public final class LeafFile: Sendable, Hashable {
    /// The path as the user gave it (for messages and `map`).
    public let path: String
    /// The open image.
    public let image: ImageFile
    /// Whole 512-byte sectors; a partial tail sector is not part of the device (as with losetup).
    public let size: Sector
    /// How the device's bytes are stored in the image.
    public let backing: LeafBacking
    /// Whether the size is known. In `check` without `--dev`, an image that cannot be opened is still a
    /// device, of unknown size, whose bounds are not checked (the kernel skips a zero-sized device too).
    public let sizeKnown: Bool

    /// A leaf over `image` opened from `path`, `size` whole sectors.
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
///
/// `@unchecked Sendable`: `segments` is only written in `deinit`, of a device no one else holds.
public final class MappedDevice: @unchecked Sendable {
    /// The device's name (a dump's `NAME:`, `--table NAME=`, or the table file for the top).
    public let name: String
    /// The table file it came from, for messages.
    public let tablePath: String
    /// Its segments, in order of start.
    public private(set) var segments: [Segment]
    /// Start sectors of `segments`, for binary search.
    let starts: [UInt64]
    /// Size in sectors: the end of the last segment.
    public let size: Sector

    init(name: String, tablePath: String, segments: [Segment]) {
        self.name = name
        self.tablePath = tablePath
        self.segments = segments
        self.starts = segments.map(\.start.value)
        self.size = segments.last.map { $0.start + $0.length } ?? .zero
    }

    /// Releases a chain of lower devices one at a time: left to Swift, freeing the top of a chain of
    /// devices 100,000 deep would free each lower device from inside the one above it, 100,000 calls
    /// deep. Each lower device this one was the last holder of is emptied (its own lower devices taken
    /// out first) before it goes, so its deinit has nothing left to free below it.
    deinit {
        var pending: [MappedDevice] = []
        Self.takeLowerDevices(of: segments, into: &pending)
        segments = []
        while var device = pending.popLast() {
            if isKnownUniquelyReferenced(&device) {
                Self.takeLowerDevices(of: device.segments, into: &pending)
                device.segments = []
            }
        }
    }

    private static func takeLowerDevices(of segments: [Segment], into pending: inout [MappedDevice]) {
        for segment in segments {
            segment.target.forEachDeviceArea { area in
                if case .mapped(let lower) = area.device { pending.append(lower) }
            }
        }
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
    /// First sector of the segment in its device.
    public let start: Sector
    /// Sectors the segment spans.
    public let length: Sector
    /// 1-based line of the table file that defined it.
    public let line: Int
    /// The constructed target.
    public let target: any Target
}
