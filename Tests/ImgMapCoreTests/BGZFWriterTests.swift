import Foundation
import Testing
@testable import ImgMapCore

@Suite struct BGZFWriterTests {
    static let sizes = [0, 1, bgzfMaxInputPerBlock, bgzfMaxInputPerBlock + 1, 3 * 1024 * 1024 + 12345]

    @Test(arguments: availableLibraries, DataKind.allCases)
    func writerOutputReadsBackExactly(library: DeflateLibrary, kind: DataKind) throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        for size in Self.sizes {
            let input = kind.bytes(size)
            let path = dir.file("\(size).gz")
            try compressToFile(input, path: path, library: library)
            #expect(try decompressFile(path, index: .walkHeaders, library: library) == input, "\(kind) \(size) bytes")
        }
    }

    @Test func outputEndsWithTheStandardEOFMember() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        for size in [0, 1000] {
            let path = dir.file("\(size).gz")
            try compressToFile(DataKind.mixed.bytes(size), path: path)
            let bytes = try readFile(path)
            #expect(Array(bytes.suffix(28)) == bgzfEOFMember)
            if size == 0 { #expect(bytes == bgzfEOFMember) }
        }
    }

    @Test(arguments: availableLibraries)
    func gzipDecompressesWriterOutputExactly(library: DeflateLibrary) throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        let input = DataKind.mixed.bytes(2 * 1024 * 1024 + 7)
        try writeFile(dir.file("input"), input)
        try compressToFile(input, path: dir.file("out.gz"), library: library)
        #expect(try shell("gzip -dc '\(dir.file("out.gz"))' > '\(dir.file("gunzipped"))'") == 0)
        #expect(try readFile(dir.file("gunzipped")) == input)
    }

    @Test func zeroBlockMemberInflatesToZeros() throws {
        for library in availableLibraries {
            for level in [0, 1, 6, 9] {
                let backend = library.makeBackend()
                let member = BGZFMemberEncoder(level: level).zeroBlockMember(backend: backend)
                #expect(member.count < 1000 || level == 0, "\(library) level \(level): \(member.count) bytes")
                let header = try member.withUnsafeBytes { try BGZFMemberHeader.parse($0).get() }
                #expect(header.memberSize == member.count)
                var output = [UInt8](repeating: 1, count: bgzfMaxInputPerBlock)
                let ok = member.withUnsafeBytes { m in
                    output.withUnsafeMutableBytes {
                        backend.inflate(UnsafeRawBufferPointer(rebasing: m[bgzfHeaderSize..<(member.count - 8)]), into: $0)
                    }
                }
                #expect(ok)
                #expect(output.allSatisfy { $0 == 0 })
                #expect(member.withUnsafeBytes { readLE32($0, at: member.count - 4) } == UInt32(bgzfMaxInputPerBlock))
                #expect(member.withUnsafeBytes { readLE32($0, at: member.count - 8) }
                    == output.withUnsafeBytes { backend.crc32($0, seed: 0) })
            }
        }
    }

    @Test func zeroBlocksAreWrittenAsThePrecomputedMember() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        try compressToFile(DataKind.zero.bytes(4 * bgzfMaxInputPerBlock), path: dir.file("z.gz"))
        let zeroMember = BGZFMemberEncoder(level: 6).zeroBlockMember(backend: DeflateLibrary.zlib.makeBackend())
        #expect(try readFile(dir.file("z.gz")) == Array([zeroMember, zeroMember, zeroMember, zeroMember].joined()) + bgzfEOFMember)
    }

    @Test func chunkingAndThreadCountDoNotChangeTheOutput() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        let input = DataKind.mixed.bytes(40 * bgzfMaxInputPerBlock + 999)
        let reference = try compressToFile(input, path: dir.file("ref.gz"), threads: 1)
        for (threads, chunk) in [(3, 1000), (2, 100_003), (5, bgzfMaxInputPerBlock), (1, 7)] {
            let index = try compressToFile(input, path: dir.file("t.gz"), threads: threads, chunk: chunk)
            #expect(try readFile(dir.file("t.gz")) == readFile(dir.file("ref.gz")), "\(threads) threads, chunks of \(chunk)")
            #expect(index == reference)
        }
    }

    @Test(arguments: [0, 1, 9])
    func everyLevelRoundTrips(level: Int) throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        let input = DataKind.mixed.bytes(5 * bgzfMaxInputPerBlock)
        for library in availableLibraries {
            try compressToFile(input, path: dir.file("l.gz"), level: level, library: library)
            #expect(try decompressFile(dir.file("l.gz")) == input)
        }
    }

    @Test func levelsOutsideZeroToNineAreRefused() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        let output = try createFile(dir.file("x.gz"))
        for level in [-1, 10] {
            #expect(throws: PlainFailure("compression level \(level) is outside 0–9", .usage)) {
                _ = try BGZFWriter(output: output, options: .init(level: level, library: .zlib))
            }
        }
    }

    @Test func recordedIndexListsEveryMemberStartButTheFirst() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        let input = DataKind.mixed.bytes(3 * bgzfMaxInputPerBlock + 5)
        let index = try compressToFile(input, path: dir.file("i.gz"))
        #expect(index.entries.map(\.uncompressedOffset) == [1, 2, 3].map { UInt64($0 * bgzfMaxInputPerBlock) })
        let reader = try BGZFReader(file: try ImageFile(openForReading: dir.file("i.gz")), index: .walkHeaders, library: .zlib)
        #expect(reader.index == index)
        #expect(reader.memberCount == 4)
    }

    @Test(.enabled(if: toolExists("bgzip"), Comment(rawValue: bgzipMissing)))
    func bgzipReadsWriterOutputAndItsIndex() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        let input = DataKind.mixed.bytes(20 * bgzfMaxInputPerBlock + 321)
        let gz = dir.file("w.gz")
        let index = try compressToFile(input, path: gz, library: availableLibraries.last!)
        try writeFile(gz + ".gzi", index.gziBytes())
        #expect(try shell("bgzip -d -c '\(gz)' > '\(dir.file("all"))'") == 0)
        #expect(try readFile(dir.file("all")) == input)
        for (offset, length) in [(0, 10), (65_279, 2), (300_000, 400_000), (input.count - 5, 5)] {
            #expect(try shell("bgzip -d -c -b \(offset) -s \(length) -I '\(gz).gzi' '\(gz)' > '\(dir.file("part"))'") == 0)
            #expect(try readFile(dir.file("part")) == Array(input[offset..<(offset + length)]), "bgzip -b \(offset) -s \(length)")
        }
        // bgzip's own index of our file is byte-identical to ours.
        #expect(try shell("cp '\(gz)' '\(dir.file("r.gz"))' && bgzip -r '\(dir.file("r.gz"))'") == 0)
        #expect(try readFile(dir.file("r.gz.gzi")) == index.gziBytes())
    }

    @Test func compressImageReadsAPipeAndWritesTheIndex() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        let input = DataKind.mixed.bytes(3 * bgzfMaxInputPerBlock + 17)
        try writeFile(dir.file("in"), input)
        #expect(try shell("mkfifo '\(dir.file("fifo"))'") == 0)
        let feeder = Process()
        feeder.executableURL = URL(fileURLWithPath: "/bin/sh")
        feeder.arguments = ["-c", "cat '\(dir.file("in"))' > '\(dir.file("fifo"))'"]
        try feeder.run()
        let pipe = try ImageFile(openForReading: dir.file("fifo"))
        let summary = try compressImage(input: pipe, output: try createFile(dir.file("p.gz")), level: 6, threads: 2,
                                        index: try createFile(dir.file("p.gz.gzi")))
        feeder.waitUntilExit()
        #expect(summary.uncompressedBytes == UInt64(input.count))
        #expect(summary.compressedBytes == UInt64(try readFile(dir.file("p.gz")).count))
        #expect(try decompressFile(dir.file("p.gz"), index: .gzi(path: dir.file("p.gz.gzi"))) == input)
    }
}
