/// The mapped device resolved to its leaves: an ordered, gap-free run of extents covering [0, size),
/// each an image range, zeros or an error, with the table line that made it. Every engine reads this.
///
/// Extents are produced on demand by walking the tables (binary search per layer, O(depth · log n) to
/// reach a sector), so memory stays proportional to the tables, not to the device: a striped set with
/// small chunks over terabytes is never expanded into a list.
public struct SectorMap: Sendable {
    public let top: MappedDevice

    public init(top: MappedDevice) {
        self.top = top
    }

    public var size: Sector { top.size }

    /// Calls `body` with the extents covering sectors [start, end) of the top device, in order, merged
    /// where adjacent pieces continue each other, and cut to the range.
    public func forEachExtent(from start: Sector = .zero, to end: Sector? = nil, _ body: (Extent) throws -> Void) rethrows {
        let end = min(end ?? size, size)
        guard start < end else { return }
        var pending: Extent?
        try Self.resolve(top, sector: start.value, count: (end - start).value, position: start.value, origin: nil) { extent in
            if var current = pending {
                if current.isContinued(by: extent) {
                    current.length += extent.length
                    pending = current
                    return
                }
                try body(current)
            }
            pending = extent
        }
        if let pending { try body(pending) }
    }

    /// Walks `count` sectors of `device` from `sector`, which appear at `position` of the top device.
    static func resolve(_ device: MappedDevice, sector: UInt64, count: UInt64, position: UInt64, origin: Origin?,
                        _ emit: (Extent) throws -> Void) rethrows {
        var index = device.segmentIndex(containing: sector)
        var s = sector
        var out = position
        let end = sector + count
        while s < end {
            let segment = device.segments[index]
            let segmentEnd = segment.start.value + segment.length.value
            let n = min(end, segmentEnd) - s
            let target = segment.target
            try target.map(offset: s - segment.start.value, count: n) { piece in
                if case .device(let lower, let token, let lowerSector, let pieceCount) = piece {
                    let here = Origin(table: device.tablePath, line: segment.line, target: target.name, device: token)
                    try resolve(lower, sector: lowerSector, count: pieceCount, position: out, origin: here, emit)
                    out += pieceCount
                    return
                }
                guard let (source, token, pieceCount) = piece.extentSource else { return }
                try emit(Extent(start: Sector(out), length: Sector(pieceCount), source: source,
                                origin: Origin(table: device.tablePath, line: segment.line, target: target.name, device: token)))
                out += pieceCount
            }
            s += n
            index += 1
        }
    }

    static func resolve(_ device: Device, sector: UInt64, count: UInt64, position: UInt64, origin: Origin,
                        _ emit: (Extent) throws -> Void) rethrows {
        switch device {
        case .mapped(let lower):
            // A lower device is at least as large as every area on it (checked at load), so the range fits.
            try resolve(lower, sector: sector, count: count, position: position, origin: origin, emit)
        case .leaf(let leaf):
            // Past the end of an image (only reachable for a zero-sized or unopened one, which the
            // kernel does not bounds-check) reads fail with EIO.
            let size = leaf.size.value
            let inside = sector < size ? min(count, size - sector) : 0
            if inside > 0 {
                try emit(Extent(start: Sector(position), length: Sector(inside), source: .data(leaf, offset: Sector(sector)), origin: origin))
            }
            if count > inside {
                try emit(Extent(start: Sector(position + inside), length: Sector(count - inside), source: .error, origin: origin))
            }
        }
    }

    /// The extent holding `sector`, cut to start there; nil past the end of the device. O(depth · log n)
    /// plus the pieces merged into the extent.
    public func extent(at sector: Sector) -> Extent? {
        struct Found: Error { let extent: Extent }
        do {
            try forEachExtent(from: sector) { throw Found(extent: $0) }
        } catch let found as Found {
            return found.extent
        } catch {}
        return nil
    }
}

extension MappedPiece {
    /// What a piece that is not a device range becomes in an extent, with its lower token and length
    /// (nil for a device range, which is resolved further). Kept out of `resolve`'s closure: a switch
    /// there binding the computed source was miscompiled by Swift 6.3 (a trap on the error path when
    /// an engine's closure threw).
    var extentSource: (Extent.Source, String?, UInt64)? {
        switch self {
        case .zero(let count): (.zero, nil, count)
        case .error(let count): (.error, nil, count)
        case .computed(let source, let token, let sector, let count): (.computed(source, at: sector), token, count)
        case .device: nil
        }
    }
}
