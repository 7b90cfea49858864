extension SectorMap {
    /// Calls `visit` with every segment that sectors [start, end) of the top device reach, through every
    /// layer, top first: the segment, its device, and the range of the segment (relative to its start).
    /// A lower device is entered after `visit` returns, with the mapping `map` gives then (the write
    /// path lets a target allocate before its lower devices are reached).
    public func forEachSegment(from start: Sector, to end: Sector,
                               _ visit: (Segment, MappedDevice, _ offset: UInt64, _ count: UInt64) throws -> Void) throws {
        let end = min(end, size)
        guard start < end else { return }
        try Self.walkSegments(top, sector: start.value, count: (end - start).value, visit)
    }

    static func walkSegments(_ device: MappedDevice, sector: UInt64, count: UInt64,
                             _ visit: (Segment, MappedDevice, UInt64, UInt64) throws -> Void) throws {
        var index = device.segmentIndex(containing: sector)
        var s = sector
        let end = sector + count
        while s < end {
            let segment = device.segments[index]
            let segmentEnd = segment.start.value + segment.length.value
            let n = min(end, segmentEnd) - s
            let offset = s - segment.start.value
            try visit(segment, device, offset, n)
            try segment.target.map(offset: offset, count: n) { piece in
                if case .device(.mapped(let next), _, let sector, let pieceCount) = piece {
                    try walkSegments(next, sector: sector, count: pieceCount, visit)
                }
            }
            s += n
            index += 1
        }
    }
}

extension Device {
    /// The images under the device, each once.
    public var leaves: [LeafFile] {
        switch self {
        case .leaf(let leaf): return [leaf]
        case .mapped(let device):
            var seen = Set<ObjectIdentifier>()
            var result: [LeafFile] = []
            for segment in device.segments {
                for area in segment.target.deviceAreas {
                    for leaf in area.device.leaves where seen.insert(ObjectIdentifier(leaf)).inserted { result.append(leaf) }
                }
            }
            return result
        }
    }
}
