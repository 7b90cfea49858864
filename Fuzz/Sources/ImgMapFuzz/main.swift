import CFuzzDriver
import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

/// Which reader this run exercises: IMGMAP_FUZZ_TARGET=table|bmap|bgzf|gzi|bmap-verify|nbd.
nonisolated(unsafe) let fuzzTarget = String(cString: getenv("IMGMAP_FUZZ_TARGET") ?? strdup("table"))

/// One scratch file for the whole run, rewritten for each BGZF input (memfd_create is hidden from Swift).
nonisolated(unsafe) let scratch: ImageFile = {
    let path = "/tmp/imgmap-fuzz-\(getpid()).gz"
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
    unlink(path)
    return ImageFile(descriptor: fd, path: "fuzz.gz", writable: true)
}()

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size > 0 ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    let error: Error?
    switch fuzzTarget {
    case "bmap": error = FuzzEntryPoints.bmap(bytes)
    case "bgzf": error = FuzzEntryPoints.bgzf(bytes, scratch: scratch)
    case "gzi": error = FuzzEntryPoints.gzi(bytes)
    case "bmap-verify": error = FuzzEntryPoints.bmapVerify(bytes)
    case "nbd": error = FuzzEntryPoints.nbdSession(bytes)
    default: error = FuzzEntryPoints.tables(bytes)
    }
    if let error, !(error is ImgMapFailure) {
        fatalError("refused with an error users cannot read: \(error)")
    }
    return 0
}

@_cdecl("ImgMapFuzz_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOne(data, size) }
}
