import Foundation
import Testing

@testable import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

// Helpers shared by the test files: fixture paths, temporary folders, generated images, hashes, and
// loading tables from text without touching the disk for the table itself.

/// `Tests/ImgMapCoreTests/Fixtures`, found from this file's path so the tests run from any directory.
let fixturesURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// The package root (two levels above this test target's folder).
let packageRootURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

/// A fresh folder under the system temporary directory, removed when the value goes away.
final class TemporaryDirectory: @unchecked Sendable {
    let url: URL
    var path: String { url.path }

    init(_ label: String = "imgmap-test") {
        let base = FileManager.default.temporaryDirectory
        url = base.appendingPathComponent("\(label)-\(getpid())-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { remove() }

    /// Removes the folder now (also done when the last reference goes).
    func remove() { try? FileManager.default.removeItem(at: url) }

    func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// Writes `text` to `name` in this folder and returns its path.
    @discardableResult
    func write(_ name: String, _ text: String) -> String {
        let path = file(name)
        try! Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// A sparse file of `sectors` × 512 + `extraBytes` bytes: enough for tests that only need a size.
    @discardableResult
    func sparseImage(_ name: String, sectors: UInt64, extraBytes: UInt64 = 0) -> String {
        let path = file(name)
        let fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0o644)
        precondition(fd >= 0, "cannot create \(path)")
        precondition(ftruncate(fd, off_t(sectors * 512 + extraBytes)) == 0)
        close(fd)
        return path
    }

    /// The names of the entries in this folder.
    func entries() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }
}

// MARK: - The golden image rule

/// Golden images: sector s of image NAME is `"NAME:<s, 12 digits>\n"` repeated and cut to 512 bytes;
/// `extra` more bytes (the start of sector `sectors`) make a partial tail. Each (name, sectors, extra)
/// is written once per test run and shared by every test that needs it. The folder is fixed (one per
/// user) so runs do not leave copies behind; each image is written beside its name and renamed into
/// place, so concurrent runs never see a partial one.
enum GoldenImages {
    /// Paths by key. An NSLock (a pthread mutex) rather than `Mutex`, so ThreadSanitizer sees the lock.
    nonisolated(unsafe) private static var cache: [String: String] = [:]
    private static let lock = NSLock()
    private static let folder: String = {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("imgmap-test-images-\(getuid())").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    /// The bytes of sector `s` of image `name`.
    static func sector(_ name: String, _ s: UInt64) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 512)
        fillSector(name, s, into: &out, at: 0)
        return out
    }

    /// Writes sector `s` of `name` at `at` in `buffer` (512 bytes): the label once, then doubling copies.
    static func fillSector(_ name: String, _ s: UInt64, into buffer: inout [UInt8], at: Int) {
        let digits = String(s)
        let label = Array(name.utf8) + [UInt8(ascii: ":")]
            + [UInt8](repeating: UInt8(ascii: "0"), count: max(0, 12 - digits.utf8.count)) + Array(digits.utf8) + [UInt8(ascii: "\n")]
        precondition(at >= 0 && at <= buffer.count - 512, "sector at byte \(at) is outside a \(buffer.count)-byte buffer")
        buffer.withUnsafeMutableBytes { raw in
            let base = raw.baseAddress! + at
            let first = min(label.count, 512)
            label.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: first) }
            var filled = first
            while filled < 512 {
                let n = min(filled, 512 - filled)
                (base + filled).copyMemory(from: base, byteCount: n)
                filled += n
            }
        }
    }

    /// The path of the image, generating it on first use.
    static func path(_ name: String, sectors: UInt64, extra: UInt64 = 0) -> String {
        let key = "\(name)-\(sectors)+\(extra).img"
        return lock.withLock {
            if let path = cache[key] { return path }
            let path = folder + "/" + key
            let part = "\(path).part-\(getpid())"
            write(name, sectors: sectors, extra: extra, to: part)
            precondition(rename(part, path) == 0, "cannot rename \(part)")
            cache[key] = path
            return path
        }
    }

    /// An all-zero image (sparse), generated on first use.
    static func zeros(sectors: UInt64, extra: UInt64 = 0) -> String {
        let key = "zeros-\(sectors)+\(extra).img"
        return lock.withLock {
            if let path = cache[key] { return path }
            let path = folder + "/" + key
            let part = "\(path).part-\(getpid())"
            let fd = open(part, O_CREAT | O_TRUNC | O_WRONLY, 0o644)
            precondition(fd >= 0 && ftruncate(fd, off_t(sectors * 512 + extra)) == 0, "cannot create \(part)")
            close(fd)
            precondition(rename(part, path) == 0, "cannot rename \(part)")
            cache[key] = path
            return path
        }
    }

    /// A gzip'd fixture unpacked (with `gzip -dc`) into the shared folder, checked against `sha256`.
    static func unpacked(_ gz: String, sha256 expected: String?) -> String {
        let key = "fixture-" + gz.replacingOccurrences(of: "/", with: "_")
        return lock.withLock {
            if let path = cache[key] { return path }
            let path = folder + "/" + key
            let part = "\(path).part-\(getpid())"
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "gzip -dc \"$0\" > \"$1\"", gz, part]
            try! process.run()
            process.waitUntilExit()
            precondition(process.terminationStatus == 0, "gzip -dc \(gz) failed")
            if let expected { precondition(sha256(file: part) == expected, "\(gz): unpacked image has the wrong SHA-256") }
            precondition(rename(part, path) == 0, "cannot rename \(part)")
            cache[key] = path
            return path
        }
    }

    /// The whole image in memory (for small expectations in tests).
    static func bytes(_ name: String, sectors: UInt64, extra: UInt64 = 0) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(sectors * 512))
        for s in 0..<sectors { fillSector(name, s, into: &out, at: Int(s) * 512) }
        if extra > 0 { out += sector(name, sectors)[0..<Int(extra)] }
        return out
    }

    private static func write(_ name: String, sectors: UInt64, extra: UInt64, to path: String) {
        let fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0o644)
        precondition(fd >= 0, "cannot create \(path)")
        defer { close(fd) }
        let batch: UInt64 = 2048
        var buffer = [UInt8](repeating: 0, count: Int(batch * 512))
        var base: UInt64 = 0
        while base < sectors {
            let n = min(batch, sectors - base)
            for k in 0..<n { fillSector(name, base + k, into: &buffer, at: Int(k) * 512) }
            writeAll(fd, buffer, count: Int(n * 512))
            base += n
        }
        if extra > 0 { writeAll(fd, sector(name, sectors), count: Int(extra)) }
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], count: Int) {
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < count {
                let n = Glibc.write(fd, raw.baseAddress! + done, count - done)
                precondition(n > 0, "write failed")
                done += n
            }
        }
    }
}

// MARK: - Hashes

/// SHA-256 of a file, hex, read 1 MiB at a time; nil when the file cannot be opened.
func sha256(file path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    let hasher = MessageDigest(.sha256)
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        if n <= 0 { break }
        buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
    }
    return hex(hasher.finalize())
}

func sha256(_ bytes: [UInt8]) -> String { hex(MessageDigest.hash(.sha256, bytes)) }

func hex(_ digest: [UInt8]) -> String { digest.map { String(format: "%02x", $0) }.joined() }

/// The size of the file at `path`; a missing file is a recorded issue. Not optional on purpose: with
/// Swift 6.3, `#expect(optionalUInt64 == literal)` reads 9 bytes from an 8-byte stack slot (AddressSanitizer
/// reports it in Testing's AnyHashable conversion), which hid real memory errors behind a false stop.
func fileSize(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) -> UInt64 {
    var st = stat()
    guard stat(path, &st) == 0 else {
        Issue.record("no file at \(path)", sourceLocation: sourceLocation)
        return 0
    }
    return UInt64(st.st_size)
}

func fileExists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

/// Expects `actual == expected`, and on a difference names the first differing byte and sector instead
/// of printing both arrays.
func expectSameBytes(_ actual: [UInt8], _ expected: [UInt8], _ comment: @autoclosure () -> String = "",
                     sourceLocation: SourceLocation = #_sourceLocation) {
    guard actual != expected else { return }
    let common = min(actual.count, expected.count)
    let first = (0..<common).first { actual[$0] != expected[$0] } ?? common
    Issue.record("bytes differ from byte \(first) (sector \(first / 512)); \(actual.count) bytes, expected \(expected.count). \(comment())",
                 sourceLocation: sourceLocation)
}

func readBytes(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path) ?? Data()) }

// MARK: - Loading tables from text

/// Loads tables given as text: `lower` in order (name, text), then `top` as the positional table.
/// Table paths are their names (`t.table`, `NAME.table`), so errors read `t.table:3: …`.
func loadTables(_ top: String, lower: [(String, String)] = [], devices: [String: String] = [:],
                topPath: String = "t.table", top topName: String? = nil,
                strictness: TableLoader.Strictness = .openAll,
                extraTargets: [any Target.Type] = [], exactBindings: Bool = false) throws -> TableLoader.Loaded {
    // Fixtures offer a fixed set of images and tables; a `--dev` or `--table` that no loaded table uses is
    // a usage error, so only the lower tables the top reaches, and only the names their lines mention, are
    // bound — unless `exactBindings`, for the tests of that rule and for sibling tables (snapshots of an origin
    // the top writes through) that no line names.
    var reached = [top]
    var lowerUsed: [(String, String)] = []
    var pending = lower
    var grew = true
    while grew {
        grew = false
        // A table is reached when a reached line names it, directly or through a `--dev T=@NAME` binding.
        let aliases = { (name: String) in [name] + devices.filter { $0.value == "@" + name }.map(\.key) }
        for (name, text) in pending where reached.contains(where: { line in aliases(name).contains { named($0, in: line) } }) {
            lowerUsed.append((name, text))
            reached.append(text)
            grew = true
        }
        pending.removeAll { entry in lowerUsed.contains { $0.0 == entry.0 } }
    }
    lowerUsed = exactBindings ? lower : lower.filter { entry in lowerUsed.contains { $0.0 == entry.0 } }
    var texts: [String: [UInt8]] = [topPath: Array(top.utf8)]
    var files: [Bindings.TableFile] = []
    for (name, text) in lowerUsed {
        texts["\(name).table"] = Array(text.utf8)
        files.append(.init(name: name, path: "\(name).table"))
    }
    files.append(.init(name: nil, path: topPath))
    let used = exactBindings ? devices : devices.filter { binding in reached.contains { named(binding.key, in: $0) } }
    let bindings = Bindings(tables: files, devices: used.sorted { $0.key < $1.key }.map { (token: $0.key, target: $0.value) },
                            top: topName)
    var loader = TableLoader(bindings: bindings, strictness: strictness)
    loader.targets += extraTargets
    loader.readTable = { path in
        guard let bytes = texts[path] else { throw IOFailure(path: path, operation: "open", errno: ENOENT, exitStatus: .noInput) }
        return bytes
    }
    return try loader.load()
}

/// Whether some table line names `token` as an argument (a `--dev` for a token no table names is a
/// usage error, so helpers that bind a fixed set of names bind only these).
func named(_ token: String, in tables: String...) -> Bool {
    tables.contains { $0.split(whereSeparator: { $0 == " " || $0 == "\n" }).contains { $0 == token } }
}

/// The failure `body` throws, if it is an `ImgMapFailure`; records an issue otherwise.
func failure(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) -> (any ImgMapFailure)? {
    do {
        try body()
        Issue.record("expected an error, none was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as any ImgMapFailure {
        return error
    } catch {
        Issue.record("expected an ImgMapFailure, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// The table error loading `top` gives (see `loadTables`).
func loadError(_ top: String, lower: [(String, String)] = [], devices: [String: String] = [:], topName: String? = nil,
               exactBindings: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) -> (any ImgMapFailure)? {
    failure(sourceLocation: sourceLocation) { _ = try loadTables(top, lower: lower, devices: devices, top: topName, exactBindings: exactBindings) }
}

/// Every extent of the map, in order.
func extents(_ map: SectorMap, from: UInt64 = 0, to: UInt64? = nil) -> [Extent] {
    var out: [Extent] = []
    map.forEachExtent(from: Sector(from), to: to.map { Sector($0) }) { out.append($0) }
    return out
}

/// An extent reduced to what tests compare: `start length kind [file offset]`.
func summary(_ e: Extent) -> String {
    switch e.source {
    case .data(let leaf, let offset): "\(e.start) \(e.length) data \(URL(fileURLWithPath: leaf.path).lastPathComponent) \(offset)"
    case .zero: "\(e.start) \(e.length) zero"
    case .error: "\(e.start) \(e.length) error"
    case .computed(let source, let at): "\(e.start) \(e.length) computed \(source.describe(sector: at, count: e.length.value))"
    }
}

/// The mapped device's bytes read through `MapReader` (zeros for errors).
func readAll(_ map: SectorMap) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: Int(map.size.bytes))
    let reader = MapReader(map: map, onError: .zero)
    try out.withUnsafeMutableBytes { try reader.read(into: $0, at: .zero) }
    return out
}

/// A deterministic generator (SplitMix64), so a failing random case can be rerun from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            var word = next()
            for _ in 0..<min(8, count - i) {
                out[i] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                i += 1
            }
        }
        return out
    }
}

/// Loads golden read case `name` and composes it (error extents as zeros) to `out.img` in a fresh
/// folder, which the caller keeps alive while it uses the file.
func composeGoldenReadCase(_ name: String) throws -> (GoldenCase, SectorMap, TemporaryDirectory) {
    let golden = try GoldenCase.named(name)
    let (bindings, _) = golden.bindings(case: name)
    let loaded = try TableLoader(bindings: bindings).load()
    let map = SectorMap(top: loaded.top)
    let folder = TemporaryDirectory()
    let out = try OutputFile(path: folder.file("out.img"), inputs: loaded.leaves.map(\.image))
    _ = try Compose(map: map, options: .init(onError: .zero)).run(to: out)
    try out.commit()
    return (golden, map, folder)
}

/// A Samples folder's files and its SHA256SUMS: `SHA256  NAME` lines for files, and
/// `# composed SHA256 BYTES TABLE` lines for what a table composes to.
struct SampleFolder {
    let url: URL

    init(_ name: String) { url = packageRootURL.appendingPathComponent("Samples/\(name)") }

    func text(_ name: String) throws -> String {
        try String(contentsOf: url.appendingPathComponent(name), encoding: .utf8)
    }

    func sums() throws -> [String: (sha256: String, bytes: UInt64?)] {
        var out: [String: (String, UInt64?)] = [:]
        for line in try text("SHA256SUMS").split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count == 5, f[0] == "#", f[1] == "composed" {
                out[String(f[4])] = (String(f[2]), UInt64(f[3]))
            } else if f.count == 2, f[0] != "#" {
                out[String(f[1])] = (String(f[0]), nil)
            }
        }
        return out
    }
}
