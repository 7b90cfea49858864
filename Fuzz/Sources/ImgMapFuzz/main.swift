import CFuzzDriver
import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

/// Which parser this run exercises: IMGMAP_FUZZ_TARGET=table|bmap|bgzf.
nonisolated(unsafe) let fuzzTarget = String(cString: getenv("IMGMAP_FUZZ_TARGET") ?? strdup("table"))

/// Stops a map walk that would take too long: a fuzzed table can describe billions of tiny chunks.
struct EnoughExtents: Error {}

/// Tables: the input is split at NUL bytes into lower tables L0, L1, … and a top table; they are
/// loaded as the kernel would check them (images that do not exist are devices of unknown size),
/// and the first extents of the map are walked and read back through every layer.
func fuzzTables(_ bytes: [UInt8]) {
    let parts = bytes.split(separator: 0, omittingEmptySubsequences: false).prefix(8).map(Array.init)
    var tables: [Bindings.TableFile] = []
    for index in parts.indices.dropLast() { tables.append(.init(name: "L\(index)", path: "lower\(index)")) }
    tables.append(.init(name: nil, path: "top"))
    var loader = TableLoader(bindings: Bindings(tables: tables, devices: [(token: "A", target: "/dev/null")]), strictness: .lenient)
    loader.readTable = { path in
        if path == "top" { return parts[parts.count - 1] }
        return parts[Int(path.dropFirst(5))!]
    }
    guard let loaded = try? loader.load() else { return }
    let map = SectorMap(top: loaded.top)
    var count = 0
    _ = try? map.forEachExtent { extent in
        precondition(extent.length.value > 0, "empty extent")
        count += 1
        if count > 10_000 { throw EnoughExtents() }
    }
    _ = map.extent(at: Sector(map.size.value / 2))
    _ = map.errorRanges
}

func fuzzBmap(_ bytes: [UInt8]) {
    guard let bmap = try? BmapFile(bytes: bytes) else { return }
    for range in bmap.ranges.prefix(1000) { _ = bmap.byteRange(of: range) }
}

/// BGZF: the input is a file handed to the reader (member table from a header walk), then read at a
/// few offsets, which inflates and checks members.
/// One scratch file for the whole run, rewritten for each input.
nonisolated(unsafe) let scratch: ImageFile = {
    let path = "/tmp/imgmap-fuzz-\(getpid()).gz"
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
    unlink(path)
    return ImageFile(descriptor: fd, path: "fuzz.gz", writable: true)
}()

func fuzzBGZF(_ bytes: [UInt8]) {
    let file = scratch
    guard (try? file.truncate(to: 0)) != nil else { return }
    bytes.withUnsafeBytes { _ = try? file.write($0, at: 0) }
    guard let reader = try? BGZFReader(file: file, index: .walkHeaders) else { return }
    let size = reader.uncompressedSize
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 70_000, alignment: 16)
    defer { buffer.deallocate() }
    for offset in [0, size / 2, size > 1 ? size - 1 : 0] {
        _ = try? reader.read(into: buffer, at: offset)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size > 0 ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    switch fuzzTarget {
    case "bmap": fuzzBmap(bytes)
    case "bgzf": fuzzBGZF(bytes)
    default: fuzzTables(bytes)
    }
    return 0
}

@_cdecl("ImgMapFuzz_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOne(data, size) }
}
