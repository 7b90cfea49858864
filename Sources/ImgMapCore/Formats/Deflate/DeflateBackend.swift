#if canImport(Glibc)
import Glibc
#endif

/// One thread's raw-deflate engine (RFC 1951, no zlib or gzip wrapper). Holds compressor and
/// decompressor state, so it is not thread-safe: make one per thread with `DeflateLibrary.makeBackend()`.
protocol DeflateBackend: AnyObject {
    /// The library behind it, for messages and tests.
    var library: DeflateLibrary { get }

    /// Compresses all of `input` as one complete raw deflate stream at `level` (0–9) into `output`.
    /// Returns the compressed size, or nil when it does not fit in `output`. CPU only, no I/O.
    func compress(_ input: UnsafeRawBufferPointer, level: Int, into output: UnsafeMutableRawBufferPointer) -> Int?

    /// Inflates the raw deflate stream `input`, which must produce exactly `output.count` bytes.
    /// Returns false for invalid data or a different output size. CPU only, no I/O.
    func inflate(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Bool

    /// CRC-32 (gzip's polynomial) of `bytes`, continuing from `seed` (0 to start).
    func crc32(_ bytes: UnsafeRawBufferPointer, seed: UInt32) -> UInt32
}

/// A deflate library imgmap can use. libdeflate (loaded at run time) is about twice as fast as zlib;
/// zlib is always linked.
public enum DeflateLibrary: String, Sendable, CaseIterable {
    /// zlib (always linked): the fallback.
    case zlib
    /// libdeflate, loaded with dlopen when present: about twice zlib's speed.
    case libdeflate

    /// The environment variable that overrides the choice: `IMGMAP_DEFLATE=zlib|libdeflate`.
    public static let environmentVariable = "IMGMAP_DEFLATE"

    /// True when `libdeflate.so.0` loads and has every function imgmap calls (dlopen once per process).
    public static var isLibDeflateAvailable: Bool { LibDeflateSymbols.shared.loaded != nil }

    /// libdeflate when it loads, else zlib; `IMGMAP_DEFLATE` overrides. Asking for libdeflate when it
    /// cannot be loaded, or naming an unknown library, is a usage error (64) saying why.
    public static func fromEnvironment() throws(PlainFailure) -> DeflateLibrary {
        guard let raw = getenv(environmentVariable) else { return isLibDeflateAvailable ? .libdeflate : .zlib }
        let value = String(cString: raw)
        guard let library = DeflateLibrary(rawValue: value) else {
            throw PlainFailure("\(environmentVariable)=\(value): unknown deflate library (use zlib or libdeflate)", .usage)
        }
        if library == .libdeflate, case .failure(let why) = LibDeflateSymbols.shared.state {
            throw PlainFailure("\(environmentVariable)=libdeflate: cannot load libdeflate.so.0: \(why)", .usage)
        }
        return library
    }

    /// Throws a usage error (64) when this is libdeflate and it cannot be loaded.
    public func checkAvailable() throws(PlainFailure) {
        if self == .libdeflate, case .failure(let why) = LibDeflateSymbols.shared.state {
            throw PlainFailure("libdeflate requested but libdeflate.so.0 cannot be loaded: \(why)", .usage)
        }
    }

    /// A fresh engine for the calling thread. libdeflate must be loadable (`isLibDeflateAvailable`);
    /// callers get their library from `fromEnvironment()` or check first.
    func makeBackend() -> any DeflateBackend {
        switch self {
        case .zlib: return ZlibBackend()
        case .libdeflate:
            guard let symbols = LibDeflateSymbols.shared.loaded else {
                preconditionFailure("libdeflate requested without checking DeflateLibrary.isLibDeflateAvailable")
            }
            return LibDeflateBackend(symbols)
        }
    }
}

/// Writes `input` as raw deflate stored blocks (BTYPE 00, ≤ 65535 bytes each, 5 bytes of overhead
/// each): the fallback when a library's output does not fit, and valid deflate at any level.
/// Returns the size written, or nil when `output` is too small.
func deflateStored(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Int? {
    let blocks = max(1, (input.count + 0xffff - 1) / 0xffff)
    let needed = input.count + 5 * blocks
    guard needed <= output.count, let out = output.baseAddress else { return nil }
    var written = 0
    var consumed = 0
    for block in 0..<blocks {
        let length = min(0xffff, input.count - consumed)
        out.storeBytes(of: block == blocks - 1 ? 1 : 0, toByteOffset: written, as: UInt8.self)
        writeLE16(UInt16(length), to: out + written + 1)
        writeLE16(~UInt16(length), to: out + written + 3)
        written += 5
        if length > 0, let source = input.baseAddress {
            (out + written).copyMemory(from: source + consumed, byteCount: length)
        }
        written += length
        consumed += length
    }
    return written
}
