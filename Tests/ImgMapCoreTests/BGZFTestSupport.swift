import Foundation
import Testing
@testable import ImgMapCore

/// Deterministic test data: SplitMix64, so failures reproduce.
struct TestData {
    private var rng: SplitMix64

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func next() -> UInt64 { rng.next() }

    mutating func random(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) }
    }

    /// Filesystem-like data: runs of zeros, of text and of random bytes, in 4 KiB pieces.
    mutating func mixed(_ count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        let text = Array("imgmap composes device-mapper tables offline; linear 0 2048 disk.img 0\n".utf8)
        while bytes.count < count {
            let piece = min(4096, count - bytes.count)
            switch next() % 3 {
            case 0: bytes += repeatElement(0, count: piece)
            case 1: bytes += (0..<piece).map { text[$0 % text.count] ^ UInt8(truncatingIfNeeded: $0 / 512) }
            default: bytes += random(piece)
            }
        }
        return bytes
    }
}

enum DataKind: String, CaseIterable, Sendable {
    case random, zero, mixed

    func bytes(_ count: Int, seed: UInt64 = 42) -> [UInt8] {
        var data = TestData(seed: seed)
        switch self {
        case .random: return data.random(count)
        case .zero: return [UInt8](repeating: 0, count: count)
        case .mixed: return data.mixed(count)
        }
    }
}

/// Every backend this machine has.
let availableLibraries: [DeflateLibrary] = DeflateLibrary.isLibDeflateAvailable ? [.zlib, .libdeflate] : [.zlib]

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func readFile(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// A new file at `path`, opened for writing.
func createFile(_ path: String) throws -> ImageFile {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw IOFailure(path: path, operation: "open", errno: errno) }
    return ImageFile(descriptor: fd, path: path, writable: true)
}

/// Compresses `bytes` into the BGZF file `path` with a writer; returns the index it recorded.
@discardableResult
func compressToFile(_ bytes: [UInt8], path: String, level: Int = 6, threads: Int = 2,
                    library: DeflateLibrary = .zlib, chunk: Int? = nil) throws -> BGZFIndex {
    let output = try createFile(path)
    let writer = try BGZFWriter(output: output, options: .init(level: level, threads: threads, recordIndex: true, library: library))
    try bytes.withUnsafeBytes { all in
        let step = max(1, chunk ?? max(1, all.count))
        var at = 0
        repeat {
            let end = min(all.count, at + step)
            try writer.write(UnsafeRawBufferPointer(rebasing: all[at..<end]))
            at = end
        } while at < all.count
    }
    let index = try #require(try writer.finish())
    try output.close()
    return index
}

/// All uncompressed content of the BGZF file at `path`, through BGZFReader.
func decompressFile(_ path: String, index: BGZFReader.IndexSource = .automatic,
                    library: DeflateLibrary = .zlib) throws -> [UInt8] {
    let reader = try BGZFReader(file: try ImageFile(openForReading: path), index: index, library: library)
    var bytes = [UInt8](repeating: 0, count: Int(reader.uncompressedSize))
    let count = try bytes.withUnsafeMutableBytes { try reader.read(into: $0, at: 0) }
    #expect(count == bytes.count)
    return bytes
}

/// Runs `command` with /bin/sh; returns its exit status. Output goes where the command redirects it.
@discardableResult
func shell(_ command: String) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    try process.run()
    process.waitUntilExit()
    return process.terminationStatus
}

/// True when `name` is an executable on PATH.
func toolExists(_ name: String) -> Bool {
    (try? shell("command -v \(name) >/dev/null 2>&1")) == 0
}

let bgzipMissing = "bgzip is not installed (apt-get install tabix): interop test skipped"

/// The error `body` throws, as a BGZFError, or a test failure.
func bgzfError(_ body: () throws -> Void) -> BGZFError? {
    do {
        try body()
        Issue.record("expected a BGZFError, nothing was thrown")
    } catch let error as BGZFError {
        return error
    } catch {
        Issue.record("expected a BGZFError, got \(type(of: error)): \(error)")
    }
    return nil
}
