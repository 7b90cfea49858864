/// The mapped device resolved to its leaves: an ordered, gap-free run of extents covering [0, size),
/// each an image range, zeros or an error, with the table line that made it. Every engine reads this.
///
/// Extents are produced on demand by walking the tables (binary search per layer, O(depth · log n) to
/// reach a sector), so memory stays proportional to the tables, not to the device: a striped set with
/// small chunks over terabytes is never expanded into a list.
public struct SectorMap: Sendable {
    /// The device the map resolves.
    public let top: MappedDevice

    /// The map of `top`, through every layer below it; nothing is resolved until walked.
    public init(top: MappedDevice) {
        self.top = top
    }

    /// The device's size in sectors.
    public var size: Sector { top.size }

    /// Calls `body` with the extents covering sectors [start, end) of the top device, in order, merged
    /// where adjacent pieces continue each other, and cut to the range.
    public func forEachExtent(from start: Sector = .zero, to end: Sector? = nil, _ body: (Extent) throws -> Void) rethrows {
        let end = min(end ?? size, size)
        guard start < end else { return }
        var pending: Extent?
        try Self.resolve(top, sector: start.value, count: (end - start).value, position: start.value, origin: nil) { extent in
            // Merged in place: copying the pending extent out and back cost retains of each of its
            // strings per extent.
            if pending != nil {
                if pending!.isContinued(by: extent) {
                    pending!.length += extent.length
                    return
                }
                try body(pending!)
            }
            pending = extent
        }
        if let pending { try body(pending) }
    }

    /// Walks `count` sectors of `device` from `sector`, which appear at `position` of the top device.
    static func resolve(_ device: MappedDevice, sector: UInt64, count: UInt64, position: UInt64, origin: Origin?,
                        _ emit: (Extent) throws -> Void) rethrows {
        try walk(.mapped(device), sector: sector, count: count, position: position,
                 origin: origin ?? Origin(table: device.tablePath, line: 0, target: ""), emit)
    }

    static func resolve(_ device: Device, sector: UInt64, count: UInt64, position: UInt64, origin: Origin,
                        _ emit: (Extent) throws -> Void) rethrows {
        try walk(device, sector: sector, count: count, position: position, origin: origin, emit)
    }

    /// What is still to do in a walk: a range of a device to resolve (`count` sectors of `device` from
    /// `sector`, at `position` of the top), or an extent a target produced, to emit in its turn.
    enum Pending {
        /// `step`: how many sectors the next `map` call of this range is given (see `sectorsPerStep`).
        case range(Device, sector: UInt64, count: UInt64, position: UInt64, origin: Origin, step: UInt64 = SectorMap.sectorsPerStep)
        case extent(Extent)
    }

    /// Sectors given to one `map` call; the rest of the range is left on the stack for later, so that
    /// the stack holds at most this many pieces per layer however small a striped chunk is. (Stopping a
    /// `map` call by throwing from its closure was miscompiled by Swift 6.3 on the error path.) A call
    /// that gave one piece doubles the step for the rest of its range, so a huge linear or zero segment
    /// (2^54 sectors) takes a few dozen calls, not 2^38.
    static let sectorsPerStep: UInt64 = 1 << 16

    /// The walk down the layers with a stack of its own instead of recursion, so that a chain of
    /// devices 100,000 deep costs memory, not call depth. Work is taken from the stack's top; a mapped
    /// range is replaced by the pieces of its first segment's part, in order, then the rest of it.
    static func walk(_ device: Device, sector: UInt64, count: UInt64, position: UInt64, origin: Origin,
                     _ emit: (Extent) throws -> Void) rethrows {
        var stack: [Pending] = [.range(device, sector: sector, count: count, position: position, origin: origin)]
        var pieces: [Pending] = []
        var origins = Origins()
        while let item = stack.popLast() {
            guard case .range(let device, let sector, let count, let position, let origin, let step) = item else {
                if case .extent(let extent) = item { try emit(extent) }
                continue
            }
            guard count > 0 else { continue }
            switch device {
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
            case .mapped(let mapped):
                // A device with no table (size 0, not bounds-checked by the kernel) fails reads with EIO.
                guard sector < mapped.size.value else {
                    try emit(Extent(start: Sector(position), length: Sector(count), source: .error, origin: origin))
                    continue
                }
                let segment = mapped.segments[mapped.segmentIndex(containing: sector)]
                let n = min(count, segment.start.value + segment.length.value - sector, step)
                let target = segment.target
                let name = target.name
                pieces.removeAll(keepingCapacity: true)
                var out = position
                target.map(offset: sector - segment.start.value, count: n) { piece in
                        if case .device(let lower, let token, let lowerSector, let pieceCount) = piece {
                            let here = origins.origin(mapped, segment.line, name, token)
                            if case .leaf(let leaf) = lower, lowerSector < leaf.size.value, pieceCount <= leaf.size.value - lowerSector {
                                // Wholly inside an image: the extent the leaf would give, made here
                                // rather than after another trip through the stack.
                                pieces.append(.extent(Extent(start: Sector(out), length: Sector(pieceCount),
                                                             source: .data(leaf, offset: Sector(lowerSector)), origin: here)))
                            } else {
                                pieces.append(.range(lower, sector: lowerSector, count: pieceCount, position: out, origin: here))
                            }
                            out += pieceCount
                            return
                        }
                        guard let (source, token, pieceCount) = piece.extentSource else { return }
                        pieces.append(.extent(Extent(start: Sector(out), length: Sector(pieceCount), source: source,
                                                     origin: origins.origin(mapped, segment.line, name, token))))
                        out += pieceCount
                }
                let covered = out - position
                // The pieces come before anything on the stack: extents leading them are emitted now, in
                // order (a thin device's or a striped set's pieces usually all are), the rest pushed.
                var first = 0
                while first < pieces.count, case .extent(let extent) = pieces[first] {
                    try emit(extent)
                    first += 1
                }
                if count > covered {
                    let next = pieces.count <= 1 && step < UInt64.max / 2 ? step * 2 : sectorsPerStep
                    stack.append(.range(device, sector: sector + covered, count: count - covered, position: out, origin: origin, step: next))
                }
                if first < pieces.count { stack.append(contentsOf: pieces[first...].reversed()) }
            }
        }
    }

    /// The origins of the segment the walk is in, made once rather than once per piece (thin gives a
    /// piece per block, alternating between the data device and zeros): one with the last device token
    /// seen, one without.
    struct Origins {
        var device: ObjectIdentifier?
        var line = -1
        var withToken: Origin?
        var withoutToken: Origin?

        mutating func origin(_ mapped: MappedDevice, _ line: Int, _ name: String, _ token: String?) -> Origin {
            let id = ObjectIdentifier(mapped)
            if id != device || line != self.line {
                device = id
                self.line = line
                withToken = nil
                withoutToken = nil
            }
            if let token {
                if let known = withToken, known.device == token { return known }
                let made = Origin(table: mapped.tablePath, line: line, target: name, device: token)
                withToken = made
                return made
            }
            if let known = withoutToken { return known }
            let made = Origin(table: mapped.tablePath, line: line, target: name, device: nil)
            withoutToken = made
            return made
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
