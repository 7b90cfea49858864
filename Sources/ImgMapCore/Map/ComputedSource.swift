#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A range of a mapped device whose bytes are computed from other devices rather than copied from
/// one: the decryption of a lower range (crypt), a chunk rebuilt from the other members of a parity
/// set (raid), data checked against a hash tree (verity). A target returns one from `map` as a
/// `MappedPiece.computed`; every engine reads and writes it through the same two calls, so no engine
/// knows which target made it.
///
/// A source has its own sector address space (usually the target's segment: sector 0 is the
/// segment's first sector). `read` and `write` may be asked for any range of it, aligned or not, and
/// do their own I/O on the lower devices through `DeviceIO`; they may spread CPU work over cores.
/// `map` itself stays arithmetic: constructing a source does no I/O.
public protocol ComputedSource: AnyObject, Sendable {
    /// Fills `buffer` (a whole number of sectors) with sectors `sector ..< sector + buffer.count / 512`.
    /// Reads of the lower devices go through `io`; a lower read error propagates as it is.
    func read(into buffer: UnsafeMutableRawBufferPointer, at sector: UInt64, io: DeviceIO) throws

    /// Writes `bytes` (a whole number of sectors) at `sector`, as the kernel's write through the target
    /// would change the lower devices. Only called when `writeRefusal(sector:count:)` is nil.
    func write(_ bytes: UnsafeRawBufferPointer, at sector: UInt64, io: DeviceIO) throws

    /// Why sectors `sector ..< sector + count` cannot be written offline (nil: they can). Scatter asks
    /// before writing anything.
    func writeRefusal(sector: UInt64, count: UInt64) -> String?

    /// The smallest unit reads and writes are computed in, in sectors (a crypt `sector_size`, 1 for
    /// most). After a failed read, engines retry unit by unit to find the sectors that really fail.
    var unitSectors: UInt64 { get }

    /// Calls `body` with each lower device range that sectors `sector ..< sector + count` are computed
    /// from (device, its token in the table, first sector, count), in order. Engines use it to find
    /// the images a write touches and what lies under a range; no I/O.
    func forEachLowerArea(sector: UInt64, count: UInt64, _ body: (Device, String, UInt64, UInt64) throws -> Void) rethrows

    /// Where sectors `sector ..< sector + count` come from, for `map` and `verify`: for example
    /// `decrypted (aes-xts-plain64) from A sector 7000`. Never shows key material.
    func describe(sector: UInt64, count: UInt64) -> String
}

extension ComputedSource {
    public var unitSectors: UInt64 { 1 }
}

/// Reads and writes sectors of any device (an image or a mapped device, through its tables) for a
/// computed source. Reads resolve the lower device's own map: image data by pread, zero extents as
/// zeros, error extents as EIO (`MappedReadError`), nested computed pieces through their sources.
/// Writes (scatter only) go to the images opened for writing in `writers`. Immutable, so a source may
/// use one from several threads at once (crypt reads and decrypts parts of a request on every core).
public final class DeviceIO: Sendable {
    /// Each writable image by `ObjectIdentifier(LeafFile)`; empty for reads.
    let writers: [ObjectIdentifier: ImageFile]

    /// Reads only, or writes too into the images in `writers` (by `ObjectIdentifier` of their `LeafFile`).
    public init(writers: [ObjectIdentifier: ImageFile] = [:]) {
        self.writers = writers
    }

    /// Fills `buffer` (whole sectors) from `sector` of `device`.
    public func read(_ device: Device, into buffer: UnsafeMutableRawBufferPointer, at sector: UInt64) throws {
        let count = UInt64(buffer.count) / sectorSize
        try Self.forEachExtent(of: device, sector: sector, count: count) { extent in
            let at = Int((extent.start.value - sector) * sectorSize)
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[at..<at + Int(extent.length.bytes)])
            switch extent.source {
            case .data(let leaf, let offset):
                try MapReader.readLeaf(leaf, into: slice, at: offset)
            case .zero:
                slice.initializeMemory(as: UInt8.self, repeating: 0)
            case .error:
                throw MappedReadError(range: SectorRange(start: extent.start.value, length: extent.length.value), origin: extent.origin)
            case .computed(let source, let at):
                try source.read(into: slice, at: at, io: self)
            }
        }
    }

    /// Writes `bytes` (whole sectors) at `sector` of `device`: into the images, dropped on zero
    /// extents, EIO on error extents, through the source of computed pieces.
    public func write(_ device: Device, _ bytes: UnsafeRawBufferPointer, at sector: UInt64) throws {
        let count = UInt64(bytes.count) / sectorSize
        try Self.forEachExtent(of: device, sector: sector, count: count) { extent in
            let at = Int((extent.start.value - sector) * sectorSize)
            let slice = UnsafeRawBufferPointer(rebasing: bytes[at..<at + Int(extent.length.bytes)])
            switch extent.source {
            case .data(let leaf, let offset):
                guard let writer = writers[ObjectIdentifier(leaf)] else {
                    throw PlainFailure("\(leaf.path) was not opened for writing (a target's write needs it)", .cannotCreate)
                }
                try writer.write(slice, at: offset.bytes)
            case .zero:
                break
            case .error:
                throw MappedReadError(range: SectorRange(start: extent.start.value, length: extent.length.value), origin: extent.origin)
            case .computed(let source, let at):
                try source.write(slice, at: at, io: self)
            }
        }
    }

    /// The extents of `count` sectors of `device` from `sector`, positioned in the device's own
    /// sectors (not the top device's).
    static func forEachExtent(of device: Device, sector: UInt64, count: UInt64, _ body: (Extent) throws -> Void) throws {
        guard count > 0 else { return }
        switch device {
        case .mapped(let mapped):
            try SectorMap(top: mapped).forEachExtent(from: Sector(sector), to: Sector(sector + count), body)
        case .leaf:
            try SectorMap.resolve(device, sector: sector, count: count, position: sector,
                                  origin: Origin(table: "", line: 0, target: "", device: nil), body)
        }
    }
}

extension SectorMap {
    /// Calls `body` with the image extents (data leaves, or zero/error) under sectors [start, end) of
    /// the top device, looking through computed pieces to the lower ranges they are computed from.
    /// Positions are those of the lowest device each extent lies in, so only the leaf and the kind of
    /// extent are meaningful: it answers "which images, which error or read-only ranges are under here".
    public func forEachLeafExtent(from start: Sector, to end: Sector, _ body: (Extent) throws -> Void) rethrows {
        try forEachExtent(from: start, to: end) { extent in
            try Self.descend(extent, body)
        }
    }

    static func descend(_ extent: Extent, _ body: (Extent) throws -> Void) rethrows {
        guard case .computed(let source, let at) = extent.source else { return try body(extent) }
        try source.forEachLowerArea(sector: at, count: extent.length.value) { device, _, sector, count in
            switch device {
            case .mapped(let lower):
                try SectorMap(top: lower).forEachExtent(from: Sector(sector), to: Sector(sector + count)) { try descend($0, body) }
            case .leaf:
                try resolve(device, sector: sector, count: count, position: sector, origin: extent.origin) { try descend($0, body) }
            }
        }
    }
}
