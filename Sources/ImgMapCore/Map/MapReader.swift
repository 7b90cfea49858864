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
    public var range: SectorRange
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
    public let map: SectorMap
    public let onError: ErrorPolicy
    /// Error ranges met so far with `.zero` (merged when read in increasing order).
    public private(set) var errors = SectorRangeList()

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
            }
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
    public let bytes: UnsafeMutableRawBufferPointer

    public init(size: Int) {
        bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
        bytes.initializeMemory(as: UInt8.self, repeating: 0)
    }

    deinit { bytes.deallocate() }

    public var count: Int { bytes.count }

    /// The first `count` bytes.
    public func prefix(_ count: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: bytes[0..<count])
    }
}
