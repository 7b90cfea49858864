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
}
