#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What reading an error extent does.
public enum ErrorPolicy: String, Sendable, CaseIterable {
    /// Fail with EIO, as the kernel's read would (exit 74).
    case fail
    /// Read zeros there and record the range.
    case zero
}

/// Reading an `error` extent (or past an image's end) under `ErrorPolicy.fail`.
public struct MappedReadError: ImgMapFailure, Equatable {
    /// The error extent's sectors in the mapped device.
    public var range: SectorRange
    /// The table line that made it.
    public var origin: Origin
    public var exitStatus: ExitStatus { .ioError }

    public var description: String {
        "sectors \(range.start)+\(range.length) (\(origin.description)): Input/output error, as the kernel's read returns there"
            + " (use --on-error zero to read zeros and list the ranges with --errors FILE)"
    }
}

/// Reads the mapped device's bytes by sector through the sector map: pread from images, zeros for
/// zero extents, the error policy for error extents. Works on any range, in any order.
public final class MapReader {
    /// The device read.
    public let map: SectorMap
    /// What an error extent does to a read.
    public let onError: ErrorPolicy
    /// Error ranges met so far with `.zero` (merged when read in increasing order).
    public private(set) var errors = SectorRangeList()
    /// How computed pieces read their lower devices.
    let io = DeviceIO()

    /// A reader of `map`.
    public init(map: SectorMap, onError: ErrorPolicy) {
        self.map = map
        self.onError = onError
    }

    /// Fills `buffer` (a multiple of 512 bytes) with the device's bytes from `sector`. The range must lie
    /// inside the device.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at sector: Sector) throws {
        let count = UInt64(buffer.count) / sectorSize
        try map.forEachExtent(from: sector, to: sector + Sector(count)) { extent in
            let at = Int((extent.start - sector).bytes)
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[at..<at + Int(extent.length.bytes)])
            switch extent.source {
            case .data(let leaf, let offset):
                try Self.readLeaf(leaf, into: slice, at: offset)
            case .zero:
                slice.initializeMemory(as: UInt8.self, repeating: 0)
            case .error:
                if onError == .fail {
                    throw MappedReadError(range: SectorRange(start: extent.start.value, length: extent.length.value), origin: extent.origin)
                }
                slice.initializeMemory(as: UInt8.self, repeating: 0)
                errors.append(start: extent.start.value, length: extent.length.value)
            case .computed(let source, let at):
                try readComputed(source, at: at, extent: extent, into: slice)
            }
        }
    }

    /// Hands the bytes of `extent` to `body` in order, a buffer at a time (read through the map, so
    /// computed pieces are computed and the error policy applies). An extent of three buffers or more
    /// is read ahead on a background thread (`ReadAhead`) while `body` writes the chunk before: the
    /// computation (decryption on every core) then overlaps the output's writes. Memory: `buffer` and
    /// `aheadSlots - 1` more of its size, allocated once per reader.
    public func forEachChunk(of extent: Extent, buffer: IOBuffer, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let chunkSectors = UInt64(buffer.count) / sectorSize
        let chunks = Int((extent.length.value + chunkSectors - 1) / chunkSectors)
        func chunk(_ k: Int) -> (at: Sector, bytes: Int) {
            let at = extent.start + Sector(UInt64(k) * chunkSectors)
            return (at, Int(min(chunkSectors, (extent.end - at).value) * sectorSize))
        }
        guard chunks >= 3 else {
            for k in 0..<chunks {
                let (at, n) = chunk(k)
                try read(into: buffer.prefix(n), at: at)
                try body(UnsafeRawBufferPointer(buffer.prefix(n)))
            }
            return
        }
        let ring = aheadRing(buffer)
        // Only the producer thread calls `read` (and so updates `errors`) while the pipeline runs.
        nonisolated(unsafe) let reader = self
        try ReadAhead.run(count: chunks, slots: ring.count, produce: { k, slot in
            let (at, n) = chunk(k)
            try reader.read(into: ring[slot].prefix(n), at: at)
        }, consume: { k, slot in
            try body(UnsafeRawBufferPointer(ring[slot].prefix(chunk(k).bytes)))
        })
    }

    /// Chunks in flight when reading ahead: one being written, one ready, one being computed.
    static let aheadSlots = 3
    private var aheadBuffers: [IOBuffer] = []

    /// `buffer` and the reader's other read-ahead buffers of its size (made on first use, kept).
    private func aheadRing(_ buffer: IOBuffer) -> [IOBuffer] {
        if aheadBuffers.first?.count != buffer.count {
            aheadBuffers = (1..<Self.aheadSlots).map { _ in IOBuffer(size: buffer.count) }
        }
        return [buffer] + aheadBuffers
    }

    /// Reads a computed piece. When a lower device fails with EIO somewhere under it, the piece is read
    /// again unit by unit, so that, as with the kernel, only the units whose inputs fail are errors.
    func readComputed(_ source: any ComputedSource, at: UInt64, extent: Extent, into slice: UnsafeMutableRawBufferPointer) throws {
        do {
            return try source.read(into: slice, at: at, io: io)
        } catch is MappedReadError {}
        let unit = max(1, source.unitSectors)
        var sector: UInt64 = 0
        let count = extent.length.value
        while sector < count {
            // Units are aligned in the source's own space.
            let n = min(count - sector, unit - (at + sector) % unit)
            let part = UnsafeMutableRawBufferPointer(rebasing: slice[Int(sector * sectorSize)..<Int((sector + n) * sectorSize)])
            do {
                try source.read(into: part, at: at + sector, io: io)
            } catch is MappedReadError {
                let range = SectorRange(start: extent.start.value + sector, length: n)
                if onError == .fail { throw MappedReadError(range: range, origin: extent.origin) }
                part.initializeMemory(as: UInt8.self, repeating: 0)
                errors.append(start: range.start, length: range.length)
            }
            sector += n
        }
    }

    /// Reads sectors of an image; an image that ended early (truncated while in use) is an I/O error.
    static func readLeaf(_ leaf: LeafFile, into buffer: UnsafeMutableRawBufferPointer, at offset: Sector) throws {
        switch leaf.backing {
        case .raw:
            try leaf.image.readExactly(into: buffer, at: offset.bytes)
        case .bgzf(let compressed):
            let n = try compressed.read(into: buffer, at: offset.bytes)
            if n < buffer.count {
                throw IOFailure(path: leaf.path, operation: "inflate at uncompressed offset \(offset.bytes + UInt64(n))", errno: EIO,
                                hint: "the compressed image ended early: was it truncated while in use?")
            }
        }
    }
}

/// A page-aligned buffer allocated once and reused for a whole run.
public final class IOBuffer {
    /// The buffer's memory.
    public let bytes: UnsafeMutableRawBufferPointer

    /// `size` zeroed bytes, aligned to 4 KiB (fit for O_DIRECT).
    public init(size: Int) {
        bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
        bytes.initializeMemory(as: UInt8.self, repeating: 0)
    }

    deinit { bytes.deallocate() }

    /// The buffer's size in bytes.
    public var count: Int { bytes.count }

    /// The first `count` bytes.
    public func prefix(_ count: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: bytes[0..<count])
    }
}
