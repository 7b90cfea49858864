#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Finds a file's data and holes with SEEK_DATA/SEEK_HOLE, remembering the last data run and the hole
/// before it, so a walk over many small nearby ranges (a striped set's chunks) costs one lseek pair per
/// run, not per range (~1 µs each on ext4).
package struct DataRuns {
    package let file: ImageFile
    /// The last run found: the hole [hole.lowerBound, data.lowerBound) then data [data).
    var hole: Range<UInt64> = 0..<0
    var data: Range<UInt64> = 0..<0

    /// Set for a file whose offsets are not the device's (a compressed image): all of it is data.
    let everythingIsData: Bool
    /// The size the image had when the tables were loaded: a file found shorter was truncated while in
    /// use, and its missing tail must not pass for a hole of zeros.
    let expectedBytes: UInt64?

    package init(file: ImageFile) {
        self.file = file
        self.everythingIsData = false
        self.expectedBytes = nil
    }

    /// The runs of an image as a device sees it: a compressed image is all data.
    package init(leaf: LeafFile) {
        self.file = leaf.image
        self.everythingIsData = !leaf.backing.isRaw
        self.expectedBytes = leaf.size.bytes
    }

    /// The first data run that ends after `pos`, cut to start no earlier than `pos`; nil when only a
    /// hole follows. On a filesystem without hole reporting, everything is data. Throws when the file
    /// has become shorter than its device.
    package mutating func nextData(from pos: UInt64) throws(IOFailure) -> Range<UInt64>? {
        if everythingIsData { return pos..<UInt64.max }
        if data.contains(pos) { return pos..<data.upperBound }
        if pos >= hole.lowerBound && pos < data.lowerBound {
            return data.isEmpty ? nil : data
        }
        guard let start = file.nextData(from: pos) else {
            // No data from here to the end of the file: a hole, unless the file ends early.
            if let expectedBytes, try file.byteSize() < expectedBytes {
                throw IOFailure(path: file.path, operation: "lseek SEEK_DATA at offset \(pos)", errno: EIO,
                                hint: "the image ended early: was it truncated while in use?")
            }
            hole = pos..<UInt64.max
            data = UInt64.max..<UInt64.max
            return nil
        }
        let end = max(file.nextHole(from: start), start + 1)
        hole = pos..<start
        data = start..<end
        return data
    }

    /// Whether [range) lies wholly in a hole.
    package mutating func isHole(_ range: Range<UInt64>) throws(IOFailure) -> Bool {
        guard let next = try nextData(from: range.lowerBound) else { return true }
        return next.lowerBound >= range.upperBound
    }

    /// Where the current run (data or hole) that holds `pos` ends.
    package mutating func runEnd(from pos: UInt64) throws(IOFailure) -> UInt64 {
        guard let next = try nextData(from: pos) else { return UInt64.max }
        return next.lowerBound > pos ? next.lowerBound : next.upperBound
    }
}
