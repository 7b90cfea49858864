import Foundation
@testable import ImgMapCore

/// A fresh directory under $TMPDIR for one test, removed on deinit.
final class BmapScratch {
    let path: String

    init() {
        var template = Array((NSTemporaryDirectory() + "/imgmap-bmap-XXXXXX").utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }
}

/// Deterministic non-zero-ish bytes (xorshift), so that every block hashes differently.
func bmapTestBytes(count: Int, seed: UInt64) -> [UInt8] {
    var state = seed | 1
    return (0..<count).map { _ in
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return UInt8(truncatingIfNeeded: state)
    }
}

/// Writes a sparse image: `size` bytes, holes except for `writes` (offset, bytes).
func makeSparseImage(at path: String, size: UInt64, writes: [(UInt64, [UInt8])]) throws {
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "cannot create \(path)")
    let file = ImageFile(descriptor: fd, path: path, writable: true)
    try file.truncate(to: size)
    for (offset, bytes) in writes {
        try bytes.withUnsafeBytes { try file.write($0, at: offset) }
    }
    try file.sync()
    try file.close()
}

/// The test image most bmap tests use: 5 MiB + 1000 bytes (a partial last block), with
/// - block 0 partly written (512 bytes),
/// - 10000 bytes at 64 KiB + 100 (blocks 16–18, unaligned at both ends),
/// - 8 KiB of explicit zeros at 1 MiB (blocks 256–257: data to SEEK_DATA, zeros to `zerosAsHoles`),
/// - 4 KiB data right after them (block 258), making one range 256–258,
/// - 300 KiB at 2 MiB (blocks 512–586),
/// - the last 600 bytes (in partial block 1280).
func makeBmapTestImage(at path: String) throws -> UInt64 {
    let size: UInt64 = 5 * 1024 * 1024 + 1000
    try makeSparseImage(at: path, size: size, writes: [
        (0, bmapTestBytes(count: 512, seed: 1)),
        (65536 + 100, bmapTestBytes(count: 10000, seed: 2)),
        (1 << 20, [UInt8](repeating: 0, count: 8192)),
        ((1 << 20) + 8192, bmapTestBytes(count: 4096, seed: 3)),
        (2 << 20, bmapTestBytes(count: 300 * 1024, seed: 4)),
        (size - 600, bmapTestBytes(count: 600, seed: 5)),
    ])
    return size
}

/// Runs a program found in PATH; returns its status and standard output.
@discardableResult
func runTool(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

/// The path of `name` in PATH (or the usual sbin directories), or nil.
func toolPath(_ name: String) -> String? {
    let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        + ["/usr/sbin", "/sbin", "/usr/bin"]
    return dirs.map { $0 + "/" + name }.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// `text` with its BmapFileChecksum recomputed, as if the edit had been made by a bmap writer: lets a
/// test corrupt one thing (a range) without tripping the file checksum first.
func resealBmap(_ text: String) -> String {
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let index = lines.firstIndex { $0.contains("<BmapFileChecksum>") }!
    lines[index] = "    <BmapFileChecksum> " + String(repeating: "0", count: 64) + " </BmapFileChecksum>"
    let zeroed = lines.joined(separator: "\n")
    var hasher = BmapHasher(.sha256)
    Array(zeroed.utf8).withUnsafeBytes { hasher.update($0) }
    lines[index] = "    <BmapFileChecksum> " + hasher.finalizeHex() + " </BmapFileChecksum>"
    return lines.joined(separator: "\n")
}

/// SHA-256 in hex of a byte array.
func sha256Hex(_ bytes: [UInt8]) -> String {
    var hasher = BmapHasher(.sha256)
    bytes.withUnsafeBytes { hasher.update($0) }
    return hasher.finalizeHex()
}
