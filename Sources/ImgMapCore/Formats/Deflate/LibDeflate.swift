#if canImport(Glibc)
import Glibc
#endif

/// The libdeflate functions imgmap calls, found with dlopen("libdeflate.so.0") + dlsym once per
/// process. The headers (libdeflate-dev) are not needed: the C signatures are declared here.
struct LibDeflateSymbols: @unchecked Sendable {  // immutable C function pointers into a library never closed
    typealias AllocCompressor = @convention(c) (Int32) -> OpaquePointer?
    typealias Compress = @convention(c) (OpaquePointer?, UnsafeRawPointer?, Int, UnsafeMutableRawPointer?, Int) -> Int
    typealias CompressBound = @convention(c) (OpaquePointer?, Int) -> Int
    typealias FreeCompressor = @convention(c) (OpaquePointer?) -> Void
    typealias AllocDecompressor = @convention(c) () -> OpaquePointer?
    /// Returns enum libdeflate_result: 0 success, 1 bad data, 2 short output, 3 insufficient space.
    typealias Decompress = @convention(c) (OpaquePointer?, UnsafeRawPointer?, Int, UnsafeMutableRawPointer?, Int,
                                           UnsafeMutablePointer<Int>?) -> Int32
    typealias FreeDecompressor = @convention(c) (OpaquePointer?) -> Void
    typealias CRC32 = @convention(c) (UInt32, UnsafeRawPointer?, Int) -> UInt32

    let allocCompressor: AllocCompressor
    let compress: Compress
    let compressBound: CompressBound
    let freeCompressor: FreeCompressor
    let allocDecompressor: AllocDecompressor
    let decompress: Decompress
    let freeDecompressor: FreeDecompressor
    let crc32: CRC32

    /// The outcome of loading, computed on first use (Swift globals initialise once, thread-safely).
    static let shared = LoadState(load())

    struct LoadState: Sendable {
        let state: Result<LibDeflateSymbols, LoadError>
        init(_ state: Result<LibDeflateSymbols, LoadError>) { self.state = state }
        var loaded: LibDeflateSymbols? { try? state.get() }
    }

    struct LoadError: Error, CustomStringConvertible {
        let description: String
    }

    private static func load() -> Result<LibDeflateSymbols, LoadError> {
        guard let handle = dlopen("libdeflate.so.0", RTLD_NOW | RTLD_LOCAL) else {
            return .failure(LoadError(description: dlerror().map { String(cString: $0) } ?? "dlopen failed"))
        }
        func symbol<T>(_ name: String, as type: T.Type) throws(LoadError) -> T {
            guard let address = dlsym(handle, name) else { throw LoadError(description: "no symbol \(name)") }
            return unsafeBitCast(address, to: type)
        }
        do throws(LoadError) {
            return .success(LibDeflateSymbols(
                allocCompressor: try symbol("libdeflate_alloc_compressor", as: AllocCompressor.self),
                compress: try symbol("libdeflate_deflate_compress", as: Compress.self),
                compressBound: try symbol("libdeflate_deflate_compress_bound", as: CompressBound.self),
                freeCompressor: try symbol("libdeflate_free_compressor", as: FreeCompressor.self),
                allocDecompressor: try symbol("libdeflate_alloc_decompressor", as: AllocDecompressor.self),
                decompress: try symbol("libdeflate_deflate_decompress", as: Decompress.self),
                freeDecompressor: try symbol("libdeflate_free_decompressor", as: FreeDecompressor.self),
                crc32: try symbol("libdeflate_crc32", as: CRC32.self)))
        } catch {
            dlclose(handle)
            return .failure(error)
        }
    }
}

/// Raw deflate through libdeflate: whole-buffer calls, no streaming state. One compressor per level
/// used (kept for reuse; ~1 MiB at levels 10–12, less below) and one decompressor (~32 KiB).
final class LibDeflateBackend: DeflateBackend {
    var library: DeflateLibrary { .libdeflate }
    private let symbols: LibDeflateSymbols
    private var compressor: OpaquePointer?
    private var compressorLevel = -1
    private var decompressor: OpaquePointer?

    init(_ symbols: LibDeflateSymbols) { self.symbols = symbols }

    deinit {
        if let compressor { symbols.freeCompressor(compressor) }
        if let decompressor { symbols.freeDecompressor(decompressor) }
    }

    func compress(_ input: UnsafeRawBufferPointer, level: Int, into output: UnsafeMutableRawBufferPointer) -> Int? {
        if compressorLevel != level {
            if let compressor { symbols.freeCompressor(compressor) }
            compressor = symbols.allocCompressor(Int32(level))
            compressorLevel = level
        }
        // libdeflate 1.14 has no level 0; stored blocks are what level 0 means.
        guard let compressor else { return deflateStored(input, into: output) }
        let produced = symbols.compress(compressor, input.baseAddress, input.count, output.baseAddress, output.count)
        return produced == 0 ? nil : produced
    }

    func inflate(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Bool {
        if decompressor == nil { decompressor = symbols.allocDecompressor() }
        guard let decompressor else { return false }
        var scratch: UInt8 = 0
        return withUnsafeMutableBytes(of: &scratch) { empty in
            // A nil actual-size pointer asks libdeflate to fail unless the output is exactly filled.
            symbols.decompress(decompressor, input.baseAddress ?? UnsafeRawPointer(empty.baseAddress!), input.count,
                               output.baseAddress ?? empty.baseAddress!, output.count, nil) == 0
        }
    }

    func crc32(_ bytes: UnsafeRawBufferPointer, seed: UInt32) -> UInt32 {
        guard bytes.count > 0 else { return seed }
        return symbols.crc32(seed, bytes.baseAddress, bytes.count)
    }
}
