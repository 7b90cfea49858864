#if canImport(Glibc)
import Glibc
#endif

/// `verify --check-paths`: reads each multipath segment through all of its paths, compares each with
/// the path reads use, and reports the runs of sectors that differ with both path names.
///
/// Every path of a multipath segment is the same LUN seen through another port, so every path must read
/// the same bytes. Reads go to one path only (the first of the initial group, as the kernel's selectors
/// start), so a path that differs — a stale copy, an image of the wrong disk, a truncated transfer —
/// would go unnoticed until the selector switched to it.
public struct PathCheck {
    /// A run of sectors where one path reads differently from the path reads use.
    public struct Mismatch: Sendable, CustomStringConvertible {
        /// The table file of the multipath segment.
        public var table: String
        /// The segment's line in `table`.
        public var line: Int
        /// The path compared, as the table names it, and its place (group and path, 1-based).
        public var path: String
        /// The path's priority group, 1-based.
        public var group: Int
        /// The path's place in its group, 1-based.
        public var index: Int
        /// The path reads use.
        public var reference: String
        /// Sectors of the paths (the same LUN sector on every path) that differ, and where that is on
        /// the mapped device.
        public var pathSector: UInt64
        /// Sectors in the run.
        public var count: UInt64
        /// The run's first sector on the mapped device.
        public var deviceSector: UInt64

        public var description: String {
            "\(table):\(line): path \(path) (group \(group) path \(index)) differs from \(reference) at sectors \(pathSector)+\(count) (device sectors \(deviceSector)+\(count))"
        }
    }

    /// What the check found, complete once `run` returns.
    public struct Report: Sendable {
        /// Multipath segments checked.
        public var segments = 0
        /// Paths of those segments, the reference path included.
        public var paths = 0
        /// Sectors of those segments (each compared on every path).
        public var sectors: UInt64 = 0
        /// Differing runs reported.
        public var mismatches = 0
        /// Sectors in those runs.
        public var differingSectors: UInt64 = 0

        /// `paths agree: …` or `paths differ: …`, with the counts.
        public var summary: String {
            if segments == 0 { return "paths not checked: the table has no multipath segment" }
            return (mismatches == 0 ? "paths agree" : "paths differ")
                + ": \(segments) multipath segment\(segments == 1 ? "" : "s"), \(paths) paths, \(sectors) sectors compared, "
                + "\(mismatches) differing range\(mismatches == 1 ? "" : "s") (\(differingSectors) sectors)"
        }
    }

    let top: MappedDevice
    /// Sectors compared per read; bounded so memory stays small whatever the LUN's size.
    let window: UInt64

    /// A check of the multipath segments of `top`'s table, reading `window` sectors (1 MiB) at a time.
    public init(top: MappedDevice, window: UInt64 = 2048) {
        self.top = top
        self.window = max(1, window)
    }

    /// Reads every path and calls `report` for each differing run, in table order. Throws what a read
    /// of a path throws (``IOFailure``).
    public func run(_ report: (Mismatch) throws -> Void) throws -> Report {
        var result = Report()
        let io = DeviceIO()
        for segment in top.segments {
            guard let multipath = segment.target as? MultipathTarget, let reference = multipath.activePath else { continue }
            result.segments += 1
            var others: [(path: MultipathTarget.Path, group: Int, index: Int)] = []
            for (g, group) in multipath.groups.enumerated() {
                for (p, path) in group.paths.enumerated() {
                    result.paths += 1
                    // The reference itself is the first path of the initial group (activePath).
                    if p == 0 && g == max(0, multipath.initialGroup - 1) { continue }
                    others.append((path, g + 1, p + 1))
                }
            }
            let length = segment.length.value
            result.sectors += length
            guard !others.isEmpty else { continue }
            let bytes = Int(min(window, length) * sectorSize)
            var want = [UInt8](repeating: 0, count: bytes)
            var got = [UInt8](repeating: 0, count: bytes)
            // A run of differing sectors open at the end of the previous window, per path.
            var open = [(start: UInt64, count: UInt64)?](repeating: nil, count: others.count)
            func close(_ k: Int) throws {
                guard let run = open[k] else { return }
                open[k] = nil
                result.mismatches += 1
                result.differingSectors += run.count
                try report(Mismatch(table: top.tablePath, line: segment.line, path: others[k].path.token, group: others[k].group,
                                    index: others[k].index, reference: reference.token, pathSector: run.start, count: run.count,
                                    deviceSector: segment.start.value + run.start))
            }
            var at: UInt64 = 0
            while at < length {
                let n = min(window, length - at)
                let size = Int(n * sectorSize)
                try want.withUnsafeMutableBytes { try io.read(reference.device, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<size]), at: at) }
                for k in others.indices {
                    try got.withUnsafeMutableBytes { try io.read(others[k].path.device, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<size]), at: at) }
                    // Whole windows first: equal paths (the usual case) cost one memcmp per window.
                    if want.withUnsafeBytes({ w in got.withUnsafeBytes { g in memcmp(w.baseAddress!, g.baseAddress!, size) == 0 } }) {
                        try close(k)
                        continue
                    }
                    for s in 0..<n {
                        let lo = Int(s * sectorSize), hi = lo + Int(sectorSize)
                        let differs = want[lo..<hi] != got[lo..<hi]
                        if differs {
                            if let run = open[k] { open[k] = (run.start, run.count + 1) } else { open[k] = (at + s, 1) }
                        } else {
                            try close(k)
                        }
                    }
                }
                at += n
            }
            for k in others.indices { try close(k) }
        }
        return result
    }
}
