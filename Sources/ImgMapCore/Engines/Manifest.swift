/// The `manifest` engine: a bmap 2.0 file for the mapped device, without composing it. Mapped blocks
/// are the device's data: image data through data extents (holes in the images and zero extents are
/// unmapped; error extents count as data and read by the error policy). Each mapped block is read once
/// through the sector map and hashed.
public struct Manifest {
    /// The mapped device described.
    public let map: SectorMap
    /// What error extents read as when hashed: `.fail` stops at the first, `.zero` hashes zeros.
    public let onError: ErrorPolicy
    /// Also leave unmapped the 4 KiB blocks of data that are all zeros (`--zeros-as-holes`).
    public let zerosAsHoles: Bool

    /// A manifest of the device `map` describes; ``bmap(path:progress:)`` reads and hashes it.
    public init(map: SectorMap, onError: ErrorPolicy = .fail, zerosAsHoles: Bool = false) {
        self.map = map
        self.onError = onError
        self.zerosAsHoles = zerosAsHoles
    }

    /// The bmap text; `path` names the device in messages.
    public func bmap(path: String, progress: Progress? = nil) throws -> String {
        let reader = MapReader(map: map, onError: onError)
        var runs: [ObjectIdentifier: DataRuns] = [:]
        return try createBmap(
            size: map.size.bytes, path: path, zerosAsHoles: zerosAsHoles,
            dataRuns: { body in
                try map.forEachExtent { extent in
                    let start = extent.start.bytes
                    switch extent.source {
                    case .zero:
                        break
                    case .error, .computed:
                        try body(start..<extent.end.bytes)
                    case .data(let leaf, let offset):
                        let key = ObjectIdentifier(leaf)
                        var cursor = runs[key] ?? DataRuns(leaf: leaf)
                        defer { runs[key] = cursor }
                        let from = offset.bytes
                        let to = from + extent.length.bytes
                        var pos = from
                        while pos < to, let run = try cursor.nextData(from: pos), run.lowerBound < to {
                            let end = min(run.upperBound, to)
                            try body(start + (run.lowerBound - from)..<start + (end - from))
                            pos = end
                        }
                    }
                }
            },
            read: { buffer, offset in
                try reader.read(into: buffer, at: Sector(offset / sectorSize))
            }, progress: progress)
    }
}
