#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What writing onto an error extent does.
public enum WriteErrorPolicy: String, Sendable, CaseIterable {
    /// Refuse the whole write before anything is written.
    case fail
    /// Write everything else and list the skipped ranges (as the kernel's failed writes).
    case skip
}

/// The write path: writes an input through the sector map into the images, as writing to
/// /dev/mapper/NAME would. linear and striped write into their devices, `zero` drops the write, `error`
/// fails it. Everything that can be known up front (size, error extents, member permissions) is checked
/// before the first byte is written.
public struct Scatter {
    /// Where the input goes and what error extents, holes and progress do.
    public struct Options {
        /// Where in the mapped device the input starts.
        public var seek: Sector = .zero
        /// What writing onto an error extent does: refuse before the first write (the default) or skip it and list it.
        public var onError: WriteErrorPolicy = .fail
        /// Skip holes of a regular-file input (SEEK_HOLE): only right when the members hold zeros there.
        public var sparse = false
        /// Where progress goes, if anywhere.
        public var progress: Progress?
        /// Bytes of input read per step (4 MiB).
        public var bufferSize = 4 << 20

        /// Options with the CLI's defaults.
        public init(seek: Sector = .zero, onError: WriteErrorPolicy = .fail, sparse: Bool = false, progress: Progress? = nil) {
            self.seek = seek
            self.onError = onError
            self.sparse = sparse
            self.progress = progress
        }
    }

    /// What a scatter wrote, skipped and dropped, in device sectors.
    public struct Report: Sendable {
        /// Input bytes taken.
        public var bytes: UInt64
        /// Device sectors written into images.
        public var written: SectorRangeList
        /// Device sectors on error extents, not written (with `.skip`).
        public var skipped: SectorRangeList
        /// Device sectors on zero extents, dropped.
        public var dropped: SectorRangeList
    }

    /// A failure after some bytes were written: says exactly which device ranges hold the new data.
    public struct PartialWrite: ImgMapFailure {
        /// The failure that stopped the write.
        public var cause: Error
        /// Device sectors written before it.
        public var written: SectorRangeList
        public var exitStatus: ExitStatus { (cause as? ImgMapFailure)?.exitStatus ?? .ioError }
        public var description: String {
            let causeText = (cause as? ImgMapFailure)?.description ?? String(describing: cause)
            let ranges = written.ranges.prefix(20).map { "\($0.start)+\($0.length)" }.joined(separator: ", ")
            let more = written.ranges.count > 20 ? ", … (\(written.ranges.count) ranges)" : ""
            return written.isEmpty
                ? "\(causeText); nothing was written"
                : "\(causeText); already written before the failure (device sectors start+length): \(ranges)\(more)"
        }
    }

    /// The device written through (members opened for writing by the caller).
    public let map: SectorMap
    /// How to write.
    public let options: Options

    /// A scatter through `map`; nothing is written until `run`.
    public init(map: SectorMap, options: Options) {
        self.map = map
        self.options = options
    }

    /// Checks a write of `inputBytes` (nil when unknown: a stream) against the map: the range must lie
    /// inside the device, and with `.fail` must not touch an error extent. Returns the sectors covered.
    public func check(inputBytes: UInt64?) throws -> Range<UInt64> {
        let seek = options.seek.value
        guard seek <= map.size.value else {
            // Bad data for this device, like an input that does not fit (65): a usage error (64) is for
            // a command line that is wrong whatever the tables say.
            throw PlainFailure("--seek \(seek) lies past the end of the device (\(counted(map.size.value, "sector")))", .dataError)
        }
        guard let inputBytes else {
            try refuseReadOnly(in: seek..<map.size.value)
            return seek..<map.size.value
        }
        let sectors = (inputBytes + sectorSize - 1) / sectorSize
        guard sectors <= map.size.value - seek else {
            throw PlainFailure("the input (\(counted(inputBytes, "byte")), \(counted(sectors, "sector"))) does not fit: the device has \(counted(map.size.value - seek, "sector")) from sector \(seek)", .dataError)
        }
        let range = seek..<seek + sectors
        try refuseReadOnly(in: range)
        try map.forEachSegment(from: Sector(range.lowerBound), to: Sector(range.upperBound)) { segment, _, offset, count in
            try segment.target.checkWrite(offset: offset, count: count)
        }
        if options.onError == .fail {
            try refuseErrors(in: range, upFront: true)
        }
        return range
    }

    /// Checked for the whole range before anything is written (for a stream: to the end of the device,
    /// its length being unknown). A compress extent cannot be written (the image is compressed), nor a computed piece whose
    /// target cannot write offline. Computed pieces are looked through to the images under them.
    func refuseReadOnly(in range: Range<UInt64>) throws {
        // A target that cannot be written (its own rule, not an extent's) refuses the whole write.
        try map.forEachSegment(from: Sector(range.lowerBound), to: Sector(range.upperBound)) { segment, device, offset, count in
            if let reason = segment.target.writeRefusal {
                let start = segment.start.value + offset
                throw PlainFailure("\(device.tablePath):\(segment.line): \(segment.target.name): sectors \(start)+\(count) of device \(device.name) cannot be written: \(reason); nothing was written", .dataError)
            }
        }
        try map.forEachExtent(from: Sector(range.lowerBound), to: Sector(range.upperBound)) { extent in
            let place = "sectors \(extent.start.value)+\(extent.length.value) (\(extent.origin.description))"
            if case .computed(let source, let at) = extent.source, let why = source.writeRefusal(sector: at, count: extent.length.value) {
                throw PlainFailure("\(place) cannot be written: \(why); nothing was written", .dataError)
            }
            try SectorMap.descend(extent) { leafExtent in
                if case .data(let leaf, _) = leafExtent.source, !leaf.backing.isRaw {
                    throw PlainFailure("\(place) are read-only: a compress target's image cannot be written; nothing was written (decompress it with `imgmap decompress` and map it with linear to write there)", .dataError)
                }
            }
        }
    }

    /// An error extent fails the kernel's write with EIO, also under a computed piece.
    func refuseErrors(in range: Range<UInt64>, upFront: Bool) throws {
        try map.forEachExtent(from: Sector(range.lowerBound), to: Sector(range.upperBound)) { extent in
            try SectorMap.descend(extent) { leafExtent in
                if case .error = leafExtent.source {
                    throw PlainFailure("sectors \(extent.start.value)+\(extent.length.value) (\(extent.origin.description)) would fail with EIO as the kernel's write does\(upFront ? ": refused before anything was written" : "") (use --on-error skip to write the rest and list the skipped ranges)", .ioError)
                }
            }
        }
    }

    /// The images written in `range`, each once, also those under computed pieces.
    public func leavesWritten(in range: Range<UInt64>) -> [LeafFile] {
        var seen = Set<ObjectIdentifier>()
        var result: [LeafFile] = []
        try? map.forEachSegment(from: Sector(range.lowerBound), to: Sector(range.upperBound)) { segment, _, _, _ in
            for device in segment.target.devicesWrittenOnWrite {
                for leaf in device.leaves where seen.insert(ObjectIdentifier(leaf)).inserted { result.append(leaf) }
            }
        }
        map.forEachLeafExtent(from: Sector(range.lowerBound), to: Sector(range.upperBound)) { extent in
            if case .data(let leaf, _) = extent.source, seen.insert(ObjectIdentifier(leaf)).inserted {
                result.append(leaf)
            }
        }
        return result
    }

    /// Writes `input` through the map into the members (`writers`: each leaf opened read-write).
    /// Members are fsynced at the end. A stream is read with read(2) through one buffer; a regular
    /// file with pread(2), its holes skipped with `sparse`.
    public func run(input: ImageFile, inputIsStream: Bool, inputBytes: UInt64?, writers: [ObjectIdentifier: ImageFile]) throws -> Report {
        _ = try check(inputBytes: inputBytes)
        var report = Report(bytes: 0, written: SectorRangeList(), skipped: SectorRangeList(), dropped: SectorRangeList())
        let buffer = IOBuffer(size: options.bufferSize)
        do {
            if inputIsStream {
                var pos: UInt64 = 0
                while true {
                    let n = try input.readSequential(into: buffer.bytes)
                    if n == 0 { break }
                    try writeChunk(buffer, count: n, inputOffset: pos, checkErrors: options.onError == .fail, writers: writers, report: &report)
                    pos += UInt64(n)
                    if n < buffer.count { break }
                }
            } else {
                let total = inputBytes ?? 0
                var chunks: [(at: UInt64, count: Int)] = []
                for run in dataRuns(of: input, total: total) {
                    var pos = run.lowerBound
                    while pos < run.upperBound {
                        let n = Int(min(UInt64(buffer.count), run.upperBound - pos))
                        chunks.append((pos, n))
                        pos += UInt64(n)
                    }
                }
                if chunks.count < 3 {
                    for (pos, n) in chunks {
                        try input.readExactly(into: buffer.prefix(n), at: pos)
                        try writeChunk(buffer, count: n, inputOffset: pos, checkErrors: false, writers: writers, report: &report)
                    }
                } else {
                    // The input is read ahead on a background thread while the chunk before is written
                    // (encrypted on every core, for crypt): 3 buffers in flight, fixed memory.
                    let ring = [buffer, IOBuffer(size: buffer.count), IOBuffer(size: buffer.count)]
                    try ReadAhead.run(count: chunks.count, slots: ring.count, produce: { k, slot in
                        try input.readExactly(into: ring[slot].prefix(chunks[k].count), at: chunks[k].at)
                    }, consume: { k, slot in
                        try writeChunk(ring[slot], count: chunks[k].count, inputOffset: chunks[k].at, checkErrors: false, writers: writers, report: &report)
                    })
                }
                report.bytes = total
            }
            for file in writers.values { try file.sync() }
        } catch {
            throw PartialWrite(cause: error, written: report.written)
        }
        options.progress?.finish(report.bytes)
        return report
    }

    /// The parts of a regular-file input to write: all of it, or with `sparse` its data runs widened
    /// to whole sectors (a sector is skipped only when it lies wholly in a hole).
    func dataRuns(of input: ImageFile, total: UInt64) -> [Range<UInt64>] {
        guard options.sparse else { return total > 0 ? [0..<total] : [] }
        var runs: [Range<UInt64>] = []
        var pos: UInt64 = 0
        while pos < total, let data = input.nextData(from: pos), data < total {
            let start = data / sectorSize * sectorSize
            let hole = min(input.nextHole(from: data), total)
            let end = min((hole + sectorSize - 1) / sectorSize * sectorSize, total)
            if let last = runs.last, last.upperBound >= start {
                runs[runs.count - 1] = last.lowerBound..<end
            } else {
                runs.append(start..<end)
            }
            pos = max(end, data + 1)
        }
        return runs
    }

    /// Writes `count` input bytes from `inputOffset` (already in `buffer`) at the matching device sectors.
    func writeChunk(_ buffer: IOBuffer, count n: Int, inputOffset: UInt64, checkErrors: Bool,
                    writers: [ObjectIdentifier: ImageFile], report: inout Report) throws {
        let seekBytes = options.seek.bytes
        guard UInt64(n) <= map.size.bytes - seekBytes - inputOffset else {
            throw PlainFailure("the input is longer than the device from sector \(options.seek.value) (\(map.size.bytes - seekBytes) bytes)", .dataError)
        }
        let sectors = (n + Int(sectorSize) - 1) / Int(sectorSize)
        let padded = sectors * Int(sectorSize)
        let startSector = Sector((seekBytes + inputOffset) / sectorSize)
        if padded > n {
            // A partial last sector: merge it with the sector's current content, as a buffered write to
            // a block device does.
            try mergeTail(buffer.bytes, from: n, to: padded, sector: startSector + Sector(UInt64(sectors - 1)))
        }
        if checkErrors {
            try refuseErrors(in: startSector.value..<startSector.value + UInt64(sectors), upFront: false)
        }
        try write(buffer.prefix(padded), at: startSector, writers: writers, report: &report)
        report.bytes = inputOffset + UInt64(n)
        options.progress?.update(report.bytes)
    }

    func mergeTail(_ buffer: UnsafeMutableRawBufferPointer, from n: Int, to padded: Int, sector: Sector) throws {
        let reader = MapReader(map: map, onError: .zero)
        let start = padded - Int(sectorSize)
        let current = IOBuffer(size: Int(sectorSize))
        try reader.read(into: current.bytes, at: sector)
        let keep = UnsafeMutableRawBufferPointer(rebasing: buffer[n..<padded])
        keep.copyMemory(from: UnsafeRawBufferPointer(rebasing: current.bytes[(n - start)..<Int(sectorSize)]))
    }

    func write(_ bytes: UnsafeMutableRawBufferPointer, at start: Sector, writers: [ObjectIdentifier: ImageFile],
               report: inout Report) throws {
        let end = start + Sector(UInt64(bytes.count) / sectorSize)
        // Targets that allocate on write (snapshots) do so first; the extents below are then the new ones.
        let io = WriteIO(writers: writers)
        try map.forEachSegment(from: start, to: end) { segment, _, offset, count in
            try segment.target.prepareWrite(offset: offset, count: count, io: io)
        }
        try map.forEachExtent(from: start, to: end) { extent in
            let at = Int((extent.start - start).bytes)
            let slice = UnsafeRawBufferPointer(rebasing: bytes[at..<at + Int(extent.length.bytes)])
            switch extent.source {
            case .data(let leaf, let offset):
                guard let writer = writers[ObjectIdentifier(leaf)] else {
                    preconditionFailure("scatter: \(leaf.path) was not opened for writing")
                }
                var done = 0
                do {
                    try writer.write(slice, at: offset.bytes, done: &done)
                } catch {
                    // A short write before the failure changed the image: count every sector it touched.
                    report.written.append(start: extent.start.value, length: (UInt64(done) + sectorSize - 1) / sectorSize)
                    throw error
                }
                report.written.append(start: extent.start.value, length: extent.length.value)
            case .zero:
                report.dropped.append(start: extent.start.value, length: extent.length.value)
            case .error:
                report.skipped.append(start: extent.start.value, length: extent.length.value)
            case .computed(let source, let at):
                try source.write(slice, at: at, io: DeviceIO(writers: writers))
                report.written.append(start: extent.start.value, length: extent.length.value)
            }
        }
    }

    /// The plan for `--dry-run`: one line per extent of the range, then the bytes per image.
    public func plan(range: Range<UInt64>, to sink: TextSink) throws {
        var perImage: [(LeafFile, UInt64)] = []
        var index: [ObjectIdentifier: Int] = [:]
        // Targets that allocate on write change their mapping as the write goes: say so first.
        try map.forEachSegment(from: Sector(range.lowerBound), to: Sector(range.upperBound)) { segment, device, offset, count in
            let written = segment.target.devicesWrittenOnWrite
            guard !written.isEmpty else { return }
            try sink.write("sectors \(segment.start.value + offset)+\(count) [\(device.tablePath):\(segment.line) \(segment.target.name)]: chunks without an exception first get one in \(written.map(\.displayName).joined(separator: ", ")) (the old chunk copied there); the lines below show the mapping before the write\n")
        }
        try map.forEachExtent(from: Sector(range.lowerBound), to: Sector(range.upperBound)) { extent in
            let what: String
            switch extent.source {
            case .data(let leaf, let offset):
                what = "write \(extent.length.bytes) bytes to \(leaf.path) at byte \(offset.bytes) (sector \(offset.value))"
                let key = ObjectIdentifier(leaf)
                if let i = index[key] { perImage[i].1 += extent.length.bytes } else {
                    index[key] = perImage.count
                    perImage.append((leaf, extent.length.bytes))
                }
            case .zero:
                what = "drop (zero target)"
            case .error:
                what = options.onError == .skip ? "skip: EIO (error target), listed in --errors" : "refuse: EIO (error target)"
            case .computed(let source, let at):
                what = "write \(extent.length.bytes) bytes through \(extent.origin.target): \(source.describe(sector: at, count: extent.length.value))"
            }
            try sink.write("sectors \(extent.start.value)+\(extent.length.value): \(what)  [\(extent.origin.description)]\n")
        }
        for (leaf, bytes) in perImage {
            try sink.write("total: \(bytes) bytes to \(leaf.path)\n")
        }
    }
}
