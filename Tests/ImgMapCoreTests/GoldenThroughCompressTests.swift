import Foundation
import Testing

@testable import ImgMapCore

// Every golden read vector again, with the images stored as BGZF and read through `compress` segments:
// each `linear` line over an image becomes `compress` over its BGZF copy (same token, same offset), and
// each image named by a `striped` line is replaced by a lower table `X_c` = `0 N compress X 0`. The
// kernel's size, SHA-256 and error ranges must come out unchanged.

/// How the BGZF copy of a golden image is made.
enum BGZFCopyMaker: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// `compressImage` with a `.gzi` beside the copy.
    case writerWithIndex
    /// `compressImage` at level 1, no `.gzi`: the reader walks the member headers.
    case writerWithoutIndex
    /// `BGZFWriter` at level 0 fed in odd-sized pieces (stored members), no `.gzi`.
    case writerStoredInPieces
    /// `bgzip -i` and its `.gzi`.
    case bgzipWithIndex
    /// `bgzip -i`, then the `.gzi` deleted.
    case bgzipWithoutIndex

    var testDescription: String { rawValue }
    var needsBgzip: Bool { self == .bgzipWithIndex || self == .bgzipWithoutIndex }
    var keepsIndex: Bool { self == .writerWithIndex || self == .bgzipWithIndex }

    /// Writes the BGZF copy of the image `source` to `path` (and `path.gzi` when the maker keeps one).
    func make(from source: String, to path: String) throws {
        switch self {
        case .writerWithIndex, .writerWithoutIndex:
            let input = try ImageFile(openForReading: source)
            let output = try createFile(path)
            let index = self == .writerWithIndex ? try createFile(path + ".gzi") : nil
            try compressImage(input: input, output: output, level: self == .writerWithIndex ? 6 : 1, threads: 2, index: index)
            try output.close()
            try index?.close()
        case .writerStoredInPieces:
            try compressToFile(try readFile(source), path: path, level: 0, threads: 2, chunk: 12_345)
        case .bgzipWithIndex, .bgzipWithoutIndex:
            let status = try shell("bgzip -i -I '\(path).gzi' -c '\(source)' > '\(path)'")
            guard status == 0 else { throw PlainFailure("bgzip exited \(status) for \(source)", .ioError) }
            if self == .bgzipWithoutIndex { try FileManager.default.removeItem(atPath: path + ".gzi") }
        }
        #expect(fileExists(path + ".gzi") == keepsIndex)
    }
}

/// A golden case rewritten to read its images through `compress` segments.
struct CompressedGoldenCase {
    let folder = TemporaryDirectory("imgmap-golden-bgzf")
    let golden: GoldenCase
    let bindings: Bindings
    /// The raw images and their BGZF copies (and `.gzi` files), for the unchanged-inputs check.
    let inputs: [String]

    init(_ name: String, maker: BGZFCopyMaker) throws {
        golden = try GoldenCase.named(name)
        let images = Set(golden.devices.keys)
        var inputs: [String] = []
        var devices: [(token: String, target: String)] = []
        for (device, spec) in golden.devices.sorted(by: { $0.key < $1.key }) {
            let raw = GoldenImages.path(device, sectors: spec.sectors, extra: spec.extra_bytes ?? 0)
            let copy = folder.file("\(device).img.gz")
            try maker.make(from: raw, to: copy)
            devices.append((device, copy))
            inputs += [raw, copy] + (maker.keepsIndex ? [copy + ".gzi"] : [])
        }
        // Rewrite every table; stripes over an image go through one lower `X_c` table per image.
        var striped = Set<String>()
        var rewritten: [(name: String, file: String, text: String)] = []
        let caseFolder = GoldenCase.folder.appendingPathComponent(name)
        for table in golden.tables {
            let text = try String(contentsOf: caseFolder.appendingPathComponent(table.file), encoding: .utf8)
            let (out, stripedImages) = Self.rewrite(text, images: images)
            striped.formUnion(stripedImages)
            rewritten.append((table.name, table.file, out))
        }
        var files: [Bindings.TableFile] = []
        for image in striped.sorted() {
            let sectors = golden.devices[image]!.sectors
            let path = folder.write("lower-\(image)_c.table", "0 \(sectors) compress \(image) 0\n")
            files.append(.init(name: "\(image)_c", path: path))
        }
        for (index, table) in rewritten.enumerated() {
            let path = folder.write(table.file, table.text)
            files.append(.init(name: index == rewritten.count - 1 ? nil : table.name, path: path))
        }
        bindings = Bindings(tables: files, devices: devices)
        self.inputs = inputs
    }

    /// `text` with `linear` over an image turned into `compress`, and images named in `striped` lines
    /// turned into `X_c`. Only the changed fields are replaced, so comments, tabs, CRs, odd numbers and
    /// line numbers stay as they were. Returns the images that striped lines named.
    static func rewrite(_ text: String, images: Set<String>) -> (String, Set<String>) {
        // Bytes, not Characters: "\r\n" is one Character and would hide the line break.
        var striped = Set<String>()
        let lines = Array(text.utf8).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { line -> [UInt8] in
            let line = Array(line)
            let blank: Set<UInt8> = [UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r")]
            var fields: [Range<Int>] = []
            var index = 0
            while index < line.count {
                if blank.contains(line[index]) { index += 1; continue }
                let start = index
                while index < line.count && !blank.contains(line[index]) { index += 1 }
                fields.append(start..<index)
            }
            let word = { (range: Range<Int>) in String(decoding: line[range], as: UTF8.self) }
            guard fields.count >= 3, !word(fields[0]).hasPrefix("#") else { return line }
            // Text from the first `#` after the target name is a comment.
            var arguments = Array(fields[3...])
            if let cut = arguments.firstIndex(where: { word($0).contains("#") }) {
                arguments = Array(arguments[..<cut]) + (word(arguments[cut]).hasPrefix("#") ? [] : [arguments[cut]])
            }
            var replacements: [(Range<Int>, String)] = []
            switch word(fields[2]) {
            case "linear" where arguments.count == 2 && images.contains(word(arguments[0])):
                replacements.append((fields[2], "compress"))
            case "striped" where arguments.count >= 2:
                for k in stride(from: 2, to: arguments.count, by: 2) where images.contains(word(arguments[k])) {
                    striped.insert(word(arguments[k]))
                    replacements.append((arguments[k], word(arguments[k]) + "_c"))
                }
            default:
                break
            }
            var out = line
            for (range, replacement) in replacements.reversed() {
                out.replaceSubrange(range, with: Array(replacement.utf8))
            }
            return out
        }
        return (String(decoding: Array(lines.joined(separator: [UInt8(ascii: "\n")])), as: UTF8.self), striped)
    }
}

struct GoldenThroughCompressTests {
    static let readCases = GoldenCase.names(mode: "read")
    static let writerMakers: [BGZFCopyMaker] = [.writerWithIndex, .writerWithoutIndex, .writerStoredInPieces]

    /// Each read case with imgmap's own BGZF copies (the three kinds in turn).
    static let writerArguments: [(String, BGZFCopyMaker)] = readCases.enumerated().map { ($1, writerMakers[$0 % writerMakers.count]) }

    /// Each read case with bgzip's copies, with and without `.gzi` in turn.
    static let bgzipArguments: [(String, BGZFCopyMaker)] = readCases.enumerated().map { ($1, $0 % 2 == 0 ? .bgzipWithIndex : .bgzipWithoutIndex) }

    @Test func rewriteTurnsLinearIntoCompressAndStripesIntoLowerTables() {
        let (text, striped) = CompressedGoldenCase.rewrite(
            "# c\n0\t100 linear A 05\r\n100 8 linear S 0\n108 64 linear A 900#x\n172 16 striped 2 8 A 0 L 3\n188 4 zero # linear A 0\n",
            images: ["A", "B"])
        #expect(text == "# c\n0\t100 compress A 05\r\n100 8 linear S 0\n108 64 compress A 900#x\n172 16 striped 2 8 A_c 0 L 3\n188 4 zero # linear A 0\n")
        #expect(striped == ["A"])
    }

    @Test(arguments: writerArguments)
    func readCaseThroughImgmapBGZFComposesToTheKernelsBytes(_ name: String, _ maker: BGZFCopyMaker) throws {
        try composeAndCheck(CompressedGoldenCase(name, maker: maker))
    }

    @Test(.enabled(if: toolExists("bgzip"), Comment(rawValue: bgzipMissing)), arguments: bgzipArguments)
    func readCaseThroughBgzipCopiesComposesToTheKernelsBytes(_ name: String, _ maker: BGZFCopyMaker) throws {
        try composeAndCheck(CompressedGoldenCase(name, maker: maker))
    }

    /// Composes the rewritten case to a file (errors as zeros) and checks size, SHA-256 and error ranges;
    /// with errors, composes again under `.fail` and checks it fails with no output. Every image data
    /// extent must come through a BGZF copy.
    func composeAndCheck(_ c: CompressedGoldenCase, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let before = c.inputs.map { sha256(file: $0) }
        let loaded = try TableLoader(bindings: c.bindings).load()
        let map = SectorMap(top: loaded.top)
        #expect(map.size.bytes == c.golden.size_bytes, sourceLocation: sourceLocation)
        for extent in extents(map) {
            if case .data(let leaf, _) = extent.source {
                #expect(!leaf.backing.isRaw, "\(summary(extent)) reads a raw image", sourceLocation: sourceLocation)
            }
        }

        let out = TemporaryDirectory("imgmap-golden-bgzf-out")
        let outPath = out.file("out.img")
        let output = try OutputFile(path: outPath, inputs: loaded.leaves.map(\.image))
        let report = try Compose(map: map, options: .init(onError: .zero)).run(to: output)
        try output.commit()

        let expectedErrors = (c.golden.errors ?? []).map { SectorRange(start: $0[0], length: $0[1]) }
        #expect(fileSize(outPath) == c.golden.size_bytes, sourceLocation: sourceLocation)
        #expect(sha256(file: outPath) == c.golden.sha256, sourceLocation: sourceLocation)
        #expect(report.errors.ranges == expectedErrors, sourceLocation: sourceLocation)
        #expect(map.errorRanges().ranges == expectedErrors, sourceLocation: sourceLocation)
        // The same bytes through MapReader (the stream and verify path).
        #expect(sha256(try readAll(map)) == c.golden.sha256, sourceLocation: sourceLocation)

        if !expectedErrors.isEmpty {
            let failPath = out.file("fail.img")
            let failOut = try OutputFile(path: failPath, inputs: loaded.leaves.map(\.image))
            let error = #expect(throws: MappedReadError.self, sourceLocation: sourceLocation) {
                try Compose(map: map, options: .init(onError: .fail)).run(to: failOut)
            }
            failOut.discard()
            #expect(error?.range.start == expectedErrors[0].start, sourceLocation: sourceLocation)
            #expect(!fileExists(failPath), sourceLocation: sourceLocation)
        }
        #expect(out.entries() == ["out.img"], sourceLocation: sourceLocation)
        #expect(c.inputs.map { sha256(file: $0) } == before, "an input changed", sourceLocation: sourceLocation)
    }
}
