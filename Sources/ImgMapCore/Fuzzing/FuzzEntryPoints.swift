#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the fuzz targets (Fuzz/) and their regression tests run on one input: the readers of untrusted
/// input, end to end, with every loop bounded. Each returns the error the input was refused with (nil
/// when accepted); anything that is not an `ImgMapFailure` is a bug, as is a crash or a hang.
public enum FuzzEntryPoints {
    /// Stops a map walk that would take too long: a fuzzed table can describe billions of tiny chunks.
    struct EnoughExtents: Error {}

    /// Tables: the input is split at NUL bytes into lower tables L0, L1, … (at most 7) and a top table;
    /// they are loaded as the kernel would check them (images that do not exist are devices of unknown
    /// size), then the first 10,000 extents of the map are walked and one sector looked up.
    public static func tables(_ bytes: [UInt8]) -> Error? {
        let parts = bytes.split(separator: 0, maxSplits: 7, omittingEmptySubsequences: false).map(Array.init)
        var tables: [Bindings.TableFile] = []
        for index in parts.indices.dropLast() { tables.append(.init(name: "L\(index)", path: "lower\(index)")) }
        tables.append(.init(name: nil, path: "top"))
        var loader = TableLoader(bindings: Bindings(tables: tables, devices: [(token: "A", target: "/dev/null")]),
                                 strictness: .lenient)
        loader.readTable = { path in
            if path == "top" { return parts[parts.count - 1] }
            return parts[Int(path.dropFirst(5)) ?? 0]
        }
        let loaded: TableLoader.Loaded
        do {
            loaded = try loader.load()
        } catch {
            return error
        }
        let map = SectorMap(top: loaded.top)
        var count = 0
        var end = Sector.zero
        do {
            try map.forEachExtent { extent in
                precondition(extent.start == end && extent.length.value > 0, "extents must tile the device")
                end = extent.end
                count += 1
                if count >= 10_000 { throw EnoughExtents() }
            }
            precondition(end == map.size, "extents must cover the device")
        } catch {}
        _ = map.extent(at: Sector(map.size.value / 2))
        return nil
    }

    /// bmap files: parsed and checked (checksum of the file, ranges).
    public static func bmap(_ bytes: [UInt8]) -> Error? {
        do {
            let bmap = try BmapFile(bytes: bytes)
            for range in bmap.ranges.prefix(1000) { _ = bmap.byteRange(of: range) }
            return nil
        } catch {
            return error
        }
    }

    /// BGZF files: the member walk, then reads at the start, middle and end, which inflate members and
    /// check their CRC32 and size. `scratch` is a file the input is written to.
    public static func bgzf(_ bytes: [UInt8], scratch: ImageFile) -> Error? {
        do {
            try scratch.truncate(to: 0)
            try bytes.withUnsafeBytes { try scratch.write($0, at: 0) }
            let reader = try BGZFReader(file: scratch, index: .walkHeaders)
            let size = reader.uncompressedSize
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 70_000, alignment: 16)
            defer { buffer.deallocate() }
            for offset in [0, size / 2, size > 0 ? size - 1 : 0] {
                _ = try reader.read(into: buffer, at: offset)
            }
            return nil
        } catch {
            return error
        }
    }

    /// The BGZF file the `.gzi` target indexes: `gziPattern` in 4 data members and the EOF member,
    /// written once to an unlinked file in /tmp, with its true index.
    static let gziFixture: (file: ImageFile, index: BGZFIndex) = {
        let path = "/tmp/imgmap-fuzz-gzi-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0o600)
        precondition(fd >= 0, "cannot create \(path)")
        unlink(path)
        let file = ImageFile(descriptor: fd, path: "fixture.gz", writable: true)
        do {
            let writer = try BGZFWriter(output: file, options: .init(level: 1, threads: 1, recordIndex: true))
            try gziPattern.withUnsafeBytes { try writer.write($0) }
            return (file, try writer.finish() ?? BGZFIndex())
        } catch {
            preconditionFailure("cannot write the .gzi fuzz fixture: \(error)")
        }
    }()

    /// 200,000 bytes, every 64 KiB member different, so a wrong member shows as wrong bytes.
    static let gziPattern: [UInt8] = (0..<200_000).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 11) }

    /// `.gzi` indexes: the input is parsed as the index of a fixed BGZF file (`gziFixture`); if it is
    /// accepted, reads at the start, at every entry and at the last byte must return the true bytes —
    /// an index that lies must be refused, never give wrong data (a wrong byte traps).
    public static func gzi(_ bytes: [UInt8]) -> Error? {
        do {
            let index = try bytes.withUnsafeBytes { try BGZFIndex.parse(gzi: $0, path: "fuzz.gzi") }
            let (file, _) = gziFixture
            let table = try BGZFMemberTable.build(file: file, index: index, indexPath: "fuzz.gzi")
            let reader = BGZFReader(file: file, table: table, library: try DeflateLibrary.fromEnvironment())
            let size = reader.uncompressedSize
            var offsets: [UInt64] = [0] + index.entries.prefix(64).map(\.uncompressedOffset)
            if size > 0 { offsets.append(size - 1) }
            var buffer = [UInt8](repeating: 0, count: 1000)
            for offset in offsets where offset < size {
                let n = try buffer.withUnsafeMutableBytes { try reader.read(into: $0, at: offset) }
                precondition(Int(offset) + n <= gziPattern.count && buffer[..<n] == gziPattern[Int(offset)..<Int(offset) + n],
                             "the index gave wrong bytes at uncompressed offset \(offset)")
            }
            precondition(size == UInt64(gziPattern.count), "the index gave a size of \(size) bytes")
            return nil
        } catch {
            return error
        }
    }

    /// bmap 1.x (and 2.x) files checked against an image, as `verify --bmap` does: the image is the
    /// first 16 KiB of `gziPattern`. Whatever the file says, the check must end with mismatches or
    /// an error users can read.
    public static func bmapVerify(_ bytes: [UInt8]) -> Error? {
        do {
            let bmap = try BmapFile(bytes: bytes)
            let (file, _) = bmapImage
            _ = try verifyBmap(bmap: bmap, image: file)
            return nil
        } catch {
            return error
        }
    }

    static let bmapImage: (file: ImageFile, size: Int) = {
        let path = "/tmp/imgmap-fuzz-bmap-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0o600)
        precondition(fd >= 0, "cannot create \(path)")
        unlink(path)
        let file = ImageFile(descriptor: fd, path: "image", writable: true)
        try! gziPattern[..<16384].withUnsafeBytes { try file.write($0, at: 0) }
        return (file, 16384)
    }()
}
