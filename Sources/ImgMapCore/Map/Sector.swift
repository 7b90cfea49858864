/// Bytes in a device-mapper sector: tables, offsets and error ranges all count in these.
public let sectorSize: UInt64 = 512

/// The kernel's limit on a mapped device's end (`start + length`), in sectors: LLONG_MAX >> SECTOR_SHIFT,
/// i.e. 2^54 − 1. Anything larger is refused with "too large device".
public let maxDeviceSectors: UInt64 = UInt64(Int64.max) >> 9

/// A count or position in 512-byte sectors. Kept apart from byte counts so the two cannot be mixed up.
public struct Sector: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The sector number or count.
    public var value: UInt64

    /// `value` sectors.
    @inlinable public init(_ value: UInt64) { self.value = value }

    /// Whole sectors in `bytes`; a trailing partial sector does not count (as with losetup).
    @inlinable public init(wholeSectorsIn bytes: UInt64) { self.value = bytes / sectorSize }

    /// The byte offset or count. Sectors inside a valid device (< 2^54) always fit.
    @inlinable public var bytes: UInt64 { value &* sectorSize }

    /// Sector 0, or no sectors.
    public static let zero = Sector(0)

    @inlinable public static func < (a: Sector, b: Sector) -> Bool { a.value < b.value }
    /// The sum (traps on overflow).
    @inlinable public static func + (a: Sector, b: Sector) -> Sector { Sector(a.value + b.value) }
    /// The difference (traps when `b` > `a`).
    @inlinable public static func - (a: Sector, b: Sector) -> Sector { Sector(a.value - b.value) }
    /// Adds `b` to `a`.
    @inlinable public static func += (a: inout Sector, b: Sector) { a.value += b.value }
    /// Subtracts `b` from `a`.
    @inlinable public static func -= (a: inout Sector, b: Sector) { a.value -= b.value }

    public var description: String { String(value) }
}
