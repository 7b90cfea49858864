/// A range of sectors `start ..< start + length`, printed as `start length` in errors files.
public struct SectorRange: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// First sector.
    public var start: UInt64
    /// Sectors in the range.
    public var length: UInt64

    /// Sectors `start` to `start + length - 1`.
    public init(start: UInt64, length: UInt64) {
        self.start = start
        self.length = length
    }

    /// The sector after the range.
    public var end: UInt64 { start + length }
    public var description: String { "\(start) \(length)" }
}

/// Ranges in increasing order, merged when they touch.
public struct SectorRangeList: Sendable, Equatable {
    /// The ranges, in increasing order, none touching another.
    public private(set) var ranges: [SectorRange] = []

    /// No ranges.
    public init() {}

    /// Adds a range that starts at or after the end of the last one.
    public mutating func append(start: UInt64, length: UInt64) {
        guard length > 0 else { return }
        if let last = ranges.last, last.end == start {
            ranges[ranges.count - 1].length += length
        } else {
            ranges.append(SectorRange(start: start, length: length))
        }
    }

    /// Whether there are no ranges.
    public var isEmpty: Bool { ranges.isEmpty }

    /// Adds ranges that may lie anywhere (met on another pass over the device), keeping the list
    /// ordered and merged.
    public mutating func append(contentsOf other: SectorRangeList) {
        guard !other.isEmpty else { return }
        let all = (ranges + other.ranges).sorted { $0.start < $1.start }
        ranges = []
        for range in all {
            if let last = ranges.last, last.end >= range.start {
                ranges[ranges.count - 1].length = max(last.end, range.end) - last.start
            } else {
                ranges.append(range)
            }
        }
    }

    /// One `start length` line per range, as the golden vectors and the kernel oracle write them.
    public var text: String { ranges.map { "\($0.start) \($0.length)\n" }.joined() }
}

extension SectorMap {
    /// The ranges that read as EIO, merged.
    public func errorRanges() -> SectorRangeList {
        var list = SectorRangeList()
        forEachExtent { extent in
            if case .error = extent.source { list.append(start: extent.start.value, length: extent.length.value) }
        }
        return list
    }

    /// The first extent that reads as EIO, if any.
    public func firstError() -> Extent? {
        struct Found: Error { let extent: Extent }
        do {
            try forEachExtent { extent in
                if case .error = extent.source { throw Found(extent: extent) }
            }
        } catch let found as Found {
            return found.extent
        } catch {}
        return nil
    }
}
