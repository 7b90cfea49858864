import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import ImgMapCore

// Helpers of the probe tests: fixture images unpacked into a temporary folder, probing, composing a
// probed dump in-process, and the kernel's results kept beside the fixtures.

let probeFixturesURL = fixturesURL.appendingPathComponent("probe")

/// Unpacks the gzip'd member images of fixture set `set` (`md`, `lvm`) into `directory`; returns
/// their paths by name (`r0a` → …/r0a.img).
func unpackProbeFixtures(_ set: String, into directory: TemporaryDirectory) throws -> [String: String] {
    let folder = probeFixturesURL.appendingPathComponent(set)
    var paths: [String: String] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted() where name.hasSuffix(".img.gz") {
        let image = String(name.dropLast(3))
        let path = directory.file(image)
        let status = try shell("gzip -dc '\(folder.appendingPathComponent(name).path)' > '\(path)'")
        #expect(status == 0, "gunzip \(name)")
        paths[String(image.dropLast(4))] = path
    }
    return paths
}

/// A file of the kernel's results for fixture set `set`, trimmed.
func kernelResult(_ set: String, _ name: String) -> String {
    let text = (try? String(contentsOf: probeFixturesURL.appendingPathComponent(set).appendingPathComponent("results").appendingPathComponent(name), encoding: .utf8)) ?? ""
    return text.trimmingCharacters(in: .whitespacesAndNewlines)
}

func probe(_ paths: [String], sectorSize: Int? = nil, partial: Bool = false) throws -> ProbeResult {
    try Prober(images: paths, options: .init(sectorSize: sectorSize, partial: partial)).run()
}

/// The dump with the temporary folder's path taken out of image paths (`/tmp/…/a.img` → `a.img`).
func dumpLines(_ result: ProbeResult, _ directory: TemporaryDirectory) -> [String] {
    result.dump.replacingOccurrences(of: directory.path + "/", with: "").split(separator: "\n").map(String.init)
}

/// The SHA-256 of device `top` of `dump`, composed in-process from the images the dump names.
func composedDigest(_ dump: String, top: String) throws -> String {
    let loaded = try loadTables(dump, topPath: "probe.dump", top: top)
    return sha256(try readAll(SectorMap(top: loaded.top)))
}

/// Every byte of `volume` as probe's own reader reads it (what it finds labels and tables through).
func readAll(_ volume: ProbeVolume) throws -> [UInt8] {
    var out: [UInt8] = []
    var at: UInt64 = 0
    while at < volume.size {
        out += try volume.read(at: at, count: 1 << 20)
        at += 1 << 20
    }
    return out
}

/// Overwrites `bytes` at `offset` of the file at `path` (to corrupt a fixture copy).
func patch(_ path: String, at offset: UInt64, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY)
    precondition(fd >= 0)
    _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, bytes.count, off_t(offset)) }
    close(fd)
}

/// `count` bytes of the file at `path` from `offset`.
func readRange(_ path: String, at offset: UInt64, count: Int) -> [UInt8] {
    let fd = open(path, O_RDONLY)
    precondition(fd >= 0)
    defer { close(fd) }
    var out = [UInt8](repeating: 0, count: count)
    let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
    return Array(out.prefix(max(0, n)))
}

/// Each `lower` device comes before its `upper` in the dump, so the dump loads in order; a device
/// that is missing is an issue, not a crash.
func expectLowerFirst(_ result: ProbeResult, _ pairs: [(String, String)], sourceLocation: SourceLocation = #_sourceLocation) {
    let order = result.devices.map(\.name)
    for (lower, upper) in pairs {
        guard let low = order.firstIndex(of: lower), let high = order.firstIndex(of: upper) else {
            Issue.record("\(lower) or \(upper) is not in the dump: \(order)", sourceLocation: sourceLocation)
            continue
        }
        #expect(low < high, "\(lower) after \(upper)", sourceLocation: sourceLocation)
    }
}
