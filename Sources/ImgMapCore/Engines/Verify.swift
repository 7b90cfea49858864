#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Compares an image with the mapped device without writing anything, and reports every range that
/// differs, merged, with where the expected bytes come from. Ranges that are zeros or holes on both
/// sides (a zero extent or an image hole against a hole in the image) are known equal and not read.
public struct Verify {
    /// How verify reads and what it expects on error extents.
    public struct Options {
        /// `.zero` expects zeros on error extents; `.fail` reports them as unverifiable.
        public var onError: ErrorPolicy = .fail
        /// Where to show bytes compared so far (nil: nowhere).
        public var progress: Progress?
        /// Bytes read from each side per step (4 MiB); a whole number of sectors.
        public var bufferSize = 4 << 20

        /// Options with the default buffer size.
        public init(onError: ErrorPolicy = .fail, progress: Progress? = nil) {
            self.onError = onError
            self.progress = progress
        }
    }

    /// A range of the device where the image is not what the table says.
    public struct Mismatch: Sendable, Equatable {
        /// What is wrong with the range; the raw value is the word the report prints.
        public enum Kind: String, Sendable {
            /// The image's bytes differ.
            case differs
            /// An error extent: the kernel's read fails there, so nothing can be compared.
            case unverifiable
            /// The image ends before the device does.
            case missing
        }

        /// What is wrong with the range.
        public var kind: Kind
        /// The device's sectors concerned, merged across reads (512-byte sectors of the mapped device).
        public var range: SectorRange
        /// The table line (and device) the expected bytes come from, at the range's first sector.
        public var origin: Origin
        /// The image and sector the expected bytes come from (data extents).
        public var file: String?
        /// The sector of `file` that the range's first sector comes from (nil without `file`).
        public var fileSector: UInt64?

        /// `sectors 2048+16 differ — table.txt:3 linear A (a.img) sector 7000`.
        public var description: String {
            var text = "sectors \(range.start)+\(range.length) \(kind == .differs ? "differ" : kind.rawValue) — \(origin.table):\(origin.line) \(origin.target)"
            if let device = origin.device { text += " \(device)" }
            if let file, let fileSector {
                text += file == origin.device ? " sector \(fileSector)" : " (\(file)) sector \(fileSector)"
            } else if kind == .unverifiable {
                text += " (reads fail with EIO; --on-error zero expects zeros there)"
            } else if origin.target == ZeroTarget.name || origin.target == ErrorTarget.name {
                text += " (expected zeros)"
            }
            return text
        }

        /// The mismatch as one JSON object (`verify --json`): kind, start, length, table, line, target,
        /// device, file, offset (the file sector), with null for what is unknown.
        public var json: String {
            var text = "{\"kind\":\"\(kind.rawValue)\",\"start\":\(range.start),\"length\":\(range.length),"
                + "\"table\":\(jsonString(origin.table)),\"line\":\(origin.line),\"target\":\(jsonString(origin.target))"
            text += ",\"device\":" + (origin.device.map(jsonString) ?? "null")
            text += ",\"file\":" + (file.map(jsonString) ?? "null")
            text += ",\"offset\":" + (fileSector.map { String($0) } ?? "null")
            return text + "}"
        }
    }

    /// What a verify run found, complete once `run` returns.
    public struct Report: Sendable {
        /// The mapped device's size in bytes.
        public var deviceBytes: UInt64
        /// Bytes the image holds (for a stream, as far as it was read: see `imageBytesAtLeast`).
        public var imageBytes: UInt64
        /// Mismatches reported (merged ranges).
        public var ranges = 0
        /// Sectors in those ranges.
        public var sectors: UInt64 = 0
        /// A stream is read to at most one byte past the device's end (an endless `/dev/zero` must not
        /// hang verify): when that byte came, `imageBytes` is device + 1 and only a lower bound.
        public var imageBytesAtLeast = false
        /// No range differs and the image is exactly as long as the device.
        public var identical: Bool { ranges == 0 && deviceBytes == imageBytes }

        /// `identical: …`, or what differs.
        public var summary: String {
            if identical { return "identical: \(deviceBytes) bytes (\(counted(deviceBytes / sectorSize, "sector")))" }
            var parts: [String] = []
            if ranges > 0 { parts.append("\(counted(ranges, "range")) (\(counted(sectors, "sector"))) differ\(ranges == 1 ? "s" : "")") }
            if imageBytes < deviceBytes {
                parts.append("the image is \(deviceBytes - imageBytes) bytes shorter than the device (\(imageBytes) < \(deviceBytes))")
            } else if imageBytes > deviceBytes && imageBytesAtLeast {
                parts.append("the image is longer than the device (it goes on past byte \(deviceBytes))")
            } else if imageBytes > deviceBytes {
                parts.append("the image is \(imageBytes - deviceBytes) bytes longer than the device (\(imageBytes) > \(deviceBytes))")
            }
            return "different: " + parts.joined(separator: "; ")
        }

        /// The report as one JSON object (`verify --json`'s last line).
        public var json: String {
            "{\"identical\":\(identical),\"ranges\":\(ranges),\"sectors\":\(sectors),\"device_bytes\":\(deviceBytes),\"image_bytes\":\(imageBytes)" + (imageBytesAtLeast ? ",\"image_bytes_at_least\":true}" : "}")
        }
    }

    /// The mapped device the image is compared with.
    public let map: SectorMap
    /// How the comparison reads.
    public let options: Options

    /// A comparison of images with the device `map` describes; ``run(image:isStream:report:)`` does it.
    public init(map: SectorMap, options: Options) {
        self.map = map
        self.options = options
    }

    /// Compares `image` (a regular file or block device read by offset, or a stream read in order) with
    /// the device. Calls `report` for each merged mismatch, in order, as soon as it is complete.
    public func run(image: ImageFile, isStream: Bool, report: (Mismatch) throws -> Void) throws -> Report {
        let deviceBytes = map.size.bytes
        return try withoutActuallyEscaping(report) { report in
            var state = State(image: image, isStream: isStream, bufferSize: options.bufferSize,
                              reader: MapReader(map: map, onError: options.onError), emit: report)
            state.progress = options.progress
            state.imageBytes = isStream ? UInt64.max : try image.byteSize()
            try map.forEachExtent { extent in
                try state.compare(extent, onError: options.onError)
                options.progress?.update(extent.end.bytes)
            }
            try state.flush()
            var result = Report(deviceBytes: deviceBytes, imageBytes: 0, ranges: state.ranges, sectors: state.sectors)
            if isStream {
                result.imageBytes = state.streamPos + (state.streamEnded ? 0 : try state.drain())
                result.imageBytesAtLeast = result.imageBytes > deviceBytes
            } else {
                result.imageBytes = state.imageBytes
            }
            options.progress?.finish(deviceBytes)
            return result
        }
    }

    struct State {
        let image: ImageFile
        let isStream: Bool
        let expected: IOBuffer
        let actual: IOBuffer
        let emit: (Mismatch) throws -> Void
        /// Computes the expected bytes of computed extents.
        let reader: MapReader
        var imageBytes: UInt64 = 0
        var imageRuns: DataRuns
        var sourceRuns: [ObjectIdentifier: DataRuns] = [:]
        var pending: Mismatch?
        /// The extent the pending mismatch lies in: ranges merge only within one extent, so that the
        /// file sector reported stays right.
        var pendingExtentStart: Sector = .zero
        var ranges = 0
        var sectors: UInt64 = 0
        var streamPos: UInt64 = 0
        var streamEnded = false
        var progress: Progress?

        init(image: ImageFile, isStream: Bool, bufferSize: Int, reader: MapReader, emit: @escaping (Mismatch) throws -> Void) {
            self.image = image
            self.reader = reader
            self.isStream = isStream
            self.expected = IOBuffer(size: bufferSize)
            self.actual = IOBuffer(size: bufferSize)
            self.emit = emit
            self.imageRuns = DataRuns(file: image)
        }

        mutating func compare(_ extent: Extent, onError: ErrorPolicy) throws {
            var pos = extent.start.bytes
            let end = extent.end.bytes
            while pos < end {
                var windowEnd = min(end, pos + UInt64(expected.count))
                var expectedHole: Bool
                switch extent.source {
                case .zero:
                    expectedHole = true
                case .error:
                    if onError == .fail {
                        try skipImage(to: end)
                        try note(.unverifiable, extent, from: pos, to: end)
                        return
                    }
                    expectedHole = true
                case .computed:
                    expectedHole = false
                case .data(let leaf, let offset):
                    let key = ObjectIdentifier(leaf)
                    var runs = sourceRuns[key] ?? DataRuns(leaf: leaf)
                    let sourcePos = offset.bytes + (pos - extent.start.bytes)
                    let runEnd = try runs.runEnd(from: sourcePos)
                    expectedHole = try runs.isHole(sourcePos..<sourcePos + 1)
                    sourceRuns[key] = runs
                    if runEnd != UInt64.max { windowEnd = min(windowEnd, pos + (runEnd - sourcePos)) }
                }
                if !isStream {
                    guard pos < imageBytes else {
                        try note(.missing, extent, from: pos, to: end)
                        return
                    }
                    windowEnd = min(windowEnd, imageBytes)
                    let imageRunEnd = try imageRuns.runEnd(from: pos)
                    if imageRunEnd != UInt64.max { windowEnd = min(windowEnd, imageRunEnd) }
                    if try expectedHole && imageRuns.isHole(pos..<pos + 1) {
                        pos = windowEnd
                        continue
                    }
                }
                let n = Int(windowEnd - pos)
                let got = try readImage(into: actual.prefix(n), at: pos)
                if got < n {
                    try compareWindow(extent, at: pos, count: got, expectedHole: expectedHole)
                    try note(.missing, extent, from: pos + UInt64(got) / sectorSize * sectorSize, to: end)
                    return
                }
                try compareWindow(extent, at: pos, count: n, expectedHole: expectedHole)
                pos = windowEnd
                progress?.update(pos)
            }
        }

        mutating func compareWindow(_ extent: Extent, at pos: UInt64, count n: Int, expectedHole: Bool) throws {
            guard n > 0 else { return }
            let want = expected.prefix(n)
            var failed: [SectorRange] = []
            if expectedHole {
                want.initializeMemory(as: UInt8.self, repeating: 0)
            } else if case .data(let leaf, let offset) = extent.source {
                try MapReader.readLeaf(leaf, into: want, at: offset + Sector((pos - extent.start.bytes) / sectorSize))
            } else if case .computed = extent.source {
                if reader.onError == .fail {
                    // The units of a computed piece whose read fails (a verity block that does not
                    // verify, a row with too many members missing) are unverifiable, as error extents
                    // are; the rest of the window is still compared.
                    let probe = MapReader(map: reader.map, onError: .zero)
                    try probe.read(into: want, at: Sector(pos / sectorSize))
                    failed = probe.errors.ranges
                } else {
                    try reader.read(into: want, at: Sector(pos / sectorSize))
                }
            }
            let got = actual.prefix(n)
            if !failed.isEmpty {
                var i = 0
                while i < n {
                    let len = min(Int(sectorSize), n - i)
                    let sector = (pos + UInt64(i)) / sectorSize
                    if failed.contains(where: { sector >= $0.start && sector < $0.end }) {
                        try note(.unverifiable, extent, from: pos + UInt64(i), to: pos + UInt64(i + len))
                    } else if memcmp(want.baseAddress! + i, got.baseAddress! + i, len) != 0 {
                        try note(.differs, extent, from: pos + UInt64(i), to: pos + UInt64(i + len))
                    }
                    i += len
                }
                return
            }
            if memcmp(want.baseAddress!, got.baseAddress!, n) == 0 {
                try flushIfBefore(pos)
                return
            }
            var i = 0
            while i < n {
                let len = min(Int(sectorSize), n - i)
                if memcmp(want.baseAddress! + i, got.baseAddress! + i, len) != 0 {
                    try note(.differs, extent, from: pos + UInt64(i), to: pos + UInt64(i + len))
                }
                i += len
            }
        }

        /// Reads the image at `pos`: pread, or the next bytes of the stream (which must be at `pos`).
        mutating func readImage(into buffer: UnsafeMutableRawBufferPointer, at pos: UInt64) throws -> Int {
            guard isStream else { return try image.read(into: buffer, at: pos) }
            try skipImage(to: pos)
            if streamEnded { return 0 }
            let n = try image.readSequential(into: buffer)
            streamPos += UInt64(n)
            if n < buffer.count { streamEnded = true }
            return n
        }

        /// Moves a stream to `pos` by reading and discarding.
        mutating func skipImage(to pos: UInt64) throws {
            guard isStream else { return }
            while streamPos < pos && !streamEnded {
                let n = Int(min(UInt64(actual.count), pos - streamPos))
                let got = try image.readSequential(into: actual.prefix(n))
                streamPos += UInt64(got)
                if got < n { streamEnded = true }
            }
        }

        /// Whether a stream goes on after the device's end: reads at most one byte (returns 0 or 1), so
        /// that an endless input ends the comparison.
        mutating func drain() throws -> UInt64 {
            let n = try image.readSequential(into: actual.prefix(1))
            if n == 0 { streamEnded = true }
            return UInt64(n)
        }

        /// Records a mismatch over device bytes [from, to), merging with the pending one when it continues it.
        mutating func note(_ kind: Mismatch.Kind, _ extent: Extent, from: UInt64, to: UInt64) throws {
            let start = from / sectorSize
            let end = (to + sectorSize - 1) / sectorSize
            if var current = pending, current.kind == kind, current.range.end == start, pendingExtentStart == extent.start {
                current.range.length += end - start
                pending = current
                return
            }
            try flush()
            var file: String?
            var fileSector: UInt64?
            if case .data(let leaf, let offset) = extent.source, kind == .differs {
                file = leaf.path
                fileSector = offset.value + (start - extent.start.value)
            }
            pending = Mismatch(kind: kind, range: SectorRange(start: start, length: end - start), origin: extent.origin,
                               file: file, fileSector: fileSector)
            pendingExtentStart = extent.start
        }

        /// Reports the pending mismatch if it ends before `pos` (it cannot grow any more).
        mutating func flushIfBefore(_ pos: UInt64) throws {
            if let current = pending, current.range.end * sectorSize < pos + 1 { try flush() }
        }

        mutating func flush() throws {
            guard let current = pending else { return }
            pending = nil
            ranges += 1
            sectors += current.range.length
            try emit(current)
        }
    }
}
