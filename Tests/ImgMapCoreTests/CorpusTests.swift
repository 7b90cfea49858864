import Foundation
import Testing

@testable import ImgMapCore

/// The corpus of real dumps (Fixtures/dumps, each file's source on its first line or in SOURCES): every
/// device of every dump is loaded as `check` loads it, mapped, and composed when it is small enough,
/// with each bare disk bound to a sparse image big enough for the lines that name it and each crypt
/// device given a key of the length its line shows. What each device gives is recorded in
/// `NAME.expected` beside the dump, so that a change in behaviour is caught; run with
/// IMGMAP_RECORD_CORPUS=1 to write those files again (then read the diff).
struct CorpusTests {
    static let folder = fixturesURL.appendingPathComponent("dumps")

    /// Every dump of the corpus; `dmsetup ls` outputs are bindings, not dumps.
    static let dumps: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { $0.hasSuffix(".txt") && !$0.hasSuffix("-ls.txt") }.sorted()
    }()

    @Test func theCorpusHoldsRealDumpsOfManyTargets() throws {
        #expect(Self.dumps.count >= 30)
        var targets = Set<String>()
        for file in Self.dumps {
            let text = try String(contentsOf: Self.folder.appendingPathComponent(file), encoding: .utf8)
            #expect(text.hasPrefix("# source: ") || Self.sourcesListing.contains(file), "\(file) has no source")
            for line in text.split(separator: "\n") {
                let words = line.split(separator: " ")
                if let i = words.firstIndex(where: { KernelTargets.names.contains(String($0)) }) { targets.insert(String(words[i])) }
            }
        }
        for needed in ["linear", "striped", "crypt", "zero", "thin-pool", "thin", "snapshot", "snapshot-origin", "raid", "mirror",
                       "multipath", "cache", "integrity"] {
            #expect(targets.contains(needed), "no dump in the corpus uses \(needed)")
        }
    }

    static let sourcesListing: String = (try? String(contentsOf: folder.appendingPathComponent("SOURCES"), encoding: .utf8)) ?? ""

    @Test(arguments: dumps)
    func everyDeviceGivesWhatItsExpectationsFileRecords(_ file: String) throws {
        let path = Self.folder.appendingPathComponent(file).path
        let expectedPath = Self.folder.appendingPathComponent(file.replacingOccurrences(of: ".txt", with: ".expected")).path
        let expected = CorpusExpectations(text: (try? String(contentsOfFile: expectedPath, encoding: .utf8)) ?? "")
        let found = try CorpusRun(path: path, binds: expected.binds).outcomes()
        if ProcessInfo.processInfo.environment["IMGMAP_RECORD_CORPUS"] == "1" {
            try expected.rewritten(with: found, dump: file).write(toFile: expectedPath, atomically: true, encoding: .utf8)
            return
        }
        #expect(!expected.outcomes.isEmpty, "\(file): no expectations recorded (run with IMGMAP_RECORD_CORPUS=1)")
        #expect(found.map(\.device) == expected.outcomes.map(\.device), "\(file): the devices differ")
        for (got, want) in zip(found, expected.outcomes) where got.device == want.device {
            #expect(got.outcome == want.outcome, "\(file) \(got.device)")
        }
    }
}

/// `NAME.expected`: `bind TOKEN @NAME` lines (dm numbers the dump does not print, written by hand with
/// where they come from), then one `device NAME: OUTCOME` line per device in the dump's order.
struct CorpusExpectations {
    var header: [String] = []
    var binds: [(token: String, name: String)] = []
    var outcomes: [(device: String, outcome: String)] = []

    init(text: String) {
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("device ") {
                let rest = line.dropFirst("device ".count)
                guard let colon = rest.range(of: ": ") else { continue }
                outcomes.append((String(rest[..<colon.lowerBound]), String(rest[colon.upperBound...])))
            } else if line.hasPrefix("bind ") {
                let words = line.split(separator: " ")
                if words.count >= 3, words[2].hasPrefix("@") { binds.append((String(words[1]), String(words[2].dropFirst()))) }
                header.append(line)
            } else if !line.isEmpty {
                header.append(line)
            }
        }
    }

    func rewritten(with found: [(device: String, outcome: String)], dump: String) -> String {
        var lines = header
        if lines.isEmpty {
            lines = ["# What each device of \(dump) gives in CorpusTests (every disk a sparse image, crypt keys of the shown",
                     "# length); rewritten by IMGMAP_RECORD_CORPUS=1, `bind` and `#` lines kept."]
        }
        lines += found.map { "device \($0.device): \($0.outcome)" }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// One dump run through the loader, the map and compose, device by device.
struct CorpusRun {
    let path: String
    let binds: [(token: String, name: String)]
    let scratch = TemporaryDirectory("imgmap-corpus")

    /// Devices composed through the binary: at most this many sectors (larger ones are loaded and mapped
    /// only). About 1 GiB: the corpus's crypt devices alone decrypt ~8 GB at this bound, in CI too.
    static let composeLimit: UInt64 = 2_200_000
    /// The map is walked over at most this many sectors from the start (a striped terabyte has millions of extents).
    static let mapWindow: UInt64 = 1 << 21

    func outcomes() throws -> [(device: String, outcome: String)] {
        let bytes: [UInt8]
        var facts = TableParser.DumpFacts()
        let tables: [TableText]
        do {
            bytes = try readTableFile(path)
            tables = try TableParser.parse(bytes, path: path, defaultName: "top", facts: &facts)
        } catch let error as any ImgMapFailure {
            return [("(file)", failureText(error))]
        }
        let names = Set(tables.map(\.name))
        var numbers: [String: String] = [:]
        for (token, name) in facts.numbers { numbers[token] = name }
        for (token, name) in binds { numbers[token] = name }
        var result: [(device: String, outcome: String)] = []
        for table in tables {
            guard table.hasTable else {
                result.append((table.name, "no table"))
                continue
            }
            result.append((table.name, try outcome(of: table, in: tables, names: names, numbers: numbers, bytes: bytes)))
        }
        return result
    }

    private func outcome(of top: TableText, in tables: [TableText], names: Set<String>, numbers: [String: String],
                         bytes: [UInt8]) throws -> String {
        let byName = Dictionary(tables.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var disks: [String: UInt64] = [:]        // token → sectors the lines need
        var stamps: [String: Set<UInt64>] = [:]  // token → sectors the lines start at
        var dmBindings: [String: String] = [:]   // token → @name
        var keys: [String: Int] = [:]            // crypt device → key bytes
        var queue = [top]
        var seen: Set<String> = [top.name]
        while let table = queue.popLast() {
            table.forEachLine { line in
                if line.target == "crypt", line.arguments.count > 1 { keys[table.name] = keyLength(line.arguments[1]) }
                for (i, argument) in line.arguments.enumerated() {
                    var lower: String?
                    if argument != table.name, names.contains(argument) {
                        lower = argument
                    } else if let name = numbers[argument], names.contains(name) {
                        dmBindings[argument] = "@" + name
                        lower = name
                    } else if isDeviceNumber(argument) || argument.hasPrefix("/dev/") {
                        let offset = i + 1 < line.arguments.count ? UInt64(line.arguments[i + 1]) ?? 0 : 0
                        disks[argument] = max(disks[argument] ?? 0, offset + line.length)
                        // the last sector a linear or crypt line maps: metadata devices (thin, cache, COW),
                        // which are linear volumes too, keep a zero superblock, a new pool/cache/store
                        if ["linear", "crypt"].contains(line.target) { stamps[argument, default: []].insert(offset + line.length - 1) }
                    }
                    if let lower, seen.insert(lower).inserted, let next = byName[lower] { queue.append(next) }
                }
            }
        }
        var devices: [(token: String, target: String)] = dmBindings.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        for (token, sectors) in disks.sorted(by: { $0.key < $1.key }) {
            let image = scratch.sparseImage(imageName(token), sectors: sectors)
            stamp(image, token: token, at: stamps[token] ?? [])
            devices.append((token, image))
        }
        var keyBindings: [(device: String?, path: String)] = []
        for (device, length) in keys.sorted(by: { $0.key < $1.key }) {
            let file = scratch.file("key-\(keyBindings.count)")
            try Data((0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }).write(to: URL(fileURLWithPath: file))
            keyBindings.append((device, file))
        }
        var bindings = Bindings(tables: [.init(name: nil, path: path)], devices: devices, top: top.name)
        bindings.keys = keyBindings
        var loader = TableLoader(bindings: bindings)
        loader.readTable = { _ in bytes }
        let map: SectorMap
        do {
            map = SectorMap(top: try loader.load().top)
        } catch let error as any ImgMapFailure {
            return failureText(error)
        }
        var text = "\(map.size.value) sectors; " + mapDescription(map)
        if map.size.value <= Self.composeLimit {
            text += "; " + (try compose(top.name, map: map, devices: devices, keys: keyBindings))
        }
        return text
    }

    /// Extents in the first `mapWindow` sectors: how many, and the first two.
    private func mapDescription(_ map: SectorMap) -> String {
        let end = min(map.size.value, Self.mapWindow)
        let found = extents(map, from: 0, to: end)
        let shown = found.prefix(2).map { String(summary($0).prefix(160)) }.joined(separator: ", ")
        let window = end == map.size.value ? "map" : "map of [0, \(end))"
        return "\(window): \(found.count) extent\(found.count == 1 ? "" : "s"): \(shown)\(found.count > 2 ? ", …" : "")"
    }

    /// `imgmap compose` of the device: its exit status, and for an output its size and whether its first
    /// and last 64 KiB are what the map reads there.
    private func compose(_ device: String, map: SectorMap, devices: [(token: String, target: String)],
                         keys: [(device: String?, path: String)]) throws -> String {
        let out = scratch.file("out.img")
        var arguments = ["compose", path, "--top", device, "-o", out]
        for (token, target) in devices { arguments += ["--dev", "\(token)=\(target)"] }
        for (name, file) in keys { arguments += ["--key", "\(name ?? "")=\(file)"] }
        let run = try imgmap(arguments, in: scratch)
        defer { unlink(out) }
        guard run.status == 0 else {
            return "compose exit \(run.status): " + cleaned(run.stderr.split(separator: "\n").first.map(String.init) ?? "")
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? UInt64) ?? 0
        guard size == map.size.bytes else { return "compose wrote \(size) bytes, not \(map.size.bytes)" }
        let reader = MapReader(map: map, onError: .zero)
        let sample = min(UInt64(64 << 10), map.size.bytes)
        for at in [UInt64(0), map.size.bytes - sample] {
            var want = [UInt8](repeating: 0, count: Int(sample))
            try want.withUnsafeMutableBytes { try reader.read(into: $0, at: Sector(at / 512)) }
            guard let handle = FileHandle(forReadingAtPath: out) else { return "compose output unreadable" }
            try handle.seek(toOffset: at)
            let got = [UInt8](try handle.read(upToCount: Int(sample)) ?? Data())
            try handle.close()
            if got != want { return "compose differs from the map at byte \(at)" }
        }
        return "compose ok"
    }

    /// A recognisable sector at the end of each area a line maps on a disk, so that compose and the map
    /// are compared on bytes that say where they came from, not on zeros.
    private func stamp(_ image: String, token: String, at sectors: Set<UInt64>) {
        let fd = open(image, O_WRONLY)
        guard fd >= 0 else { return }
        defer { close(fd) }
        for sector in sectors {
            var block = [UInt8](repeating: 0, count: 512)
            let text = Array("imgmap corpus: \(token) sector \(sector)".utf8)
            block.replaceSubrange(0..<text.count, with: text)
            _ = block.withUnsafeBytes { pwrite(fd, $0.baseAddress, 512, off_t(sector * 512)) }
        }
    }

    private func keyLength(_ key: String) -> Int {
        if key.hasPrefix(":"), let n = key.split(separator: ":").first.flatMap({ Int($0) }) { return n }
        return max(1, key.count / 2)
    }

    private func imageName(_ token: String) -> String {
        token.map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined() + ".img"
    }

    /// A failure as recorded: exit status and message, without this machine's paths.
    private func failureText(_ error: any ImgMapFailure) -> String {
        "error \(error.exitStatus.rawValue): " + cleaned(error.description)
    }

    private func cleaned(_ text: String) -> String {
        text.replacingOccurrences(of: path, with: URL(fileURLWithPath: path).lastPathComponent)
            .replacingOccurrences(of: scratch.path + "/", with: "")
    }
}
