import Foundation
import Testing
@testable import ImgMapCore

@Suite struct BGZFReaderTests {
    /// Reads `count` bytes at `offset` through `reader`.
    func read(_ reader: BGZFReader, _ offset: Int, _ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let got = try bytes.withUnsafeMutableBytes { try reader.read(into: $0, at: UInt64(offset)) }
        return Array(bytes[..<got])
    }

    @Test(.enabled(if: toolExists("bgzip"), Comment(rawValue: bgzipMissing)), arguments: availableLibraries)
    func readsBgzipOutputAtRandomOffsetsWithAndWithoutItsIndex(library: DeflateLibrary) throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        let input = DataKind.mixed.bytes(30 * bgzfMaxInputPerBlock + 4321, seed: 7)
        try writeFile(dir.file("b"), input)
        #expect(try shell("bgzip -i -c -I '\(dir.file("b.gz.gzi"))' '\(dir.file("b"))' > '\(dir.file("b.gz"))'") == 0)
        let file = try ImageFile(openForReading: dir.file("b.gz"))
        let withIndex = try BGZFReader(file: file, index: .automatic, library: library)
        let walked = try BGZFReader(file: file, index: .walkHeaders, library: library)
        #expect(withIndex.index == walked.index)
        #expect(withIndex.memberCount == 31)
        var random = TestData(seed: 99)
        for reader in [withIndex, walked, walked.makeSibling()] {
            #expect(reader.uncompressedSize == UInt64(input.count))
            for _ in 0..<200 {
                let offset = Int(random.next() % UInt64(input.count))
                let count = Int(random.next() % 200_000)
                let expected = Array(input[offset..<min(input.count, offset + count)])
                #expect(try read(reader, offset, count) == expected, "\(count) bytes at \(offset)")
            }
        }
    }

    @Test(.enabled(if: toolExists("bgzip"), Comment(rawValue: bgzipMissing)))
    func readsBgzipsEmptyFileAndItsAllOnesIndex() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        try writeFile(dir.file("e"), [])
        #expect(try shell("bgzip -i -c -I '\(dir.file("e.gz.gzi"))' '\(dir.file("e"))' > '\(dir.file("e.gz"))'") == 0)
        #expect(try decompressFile(dir.file("e.gz")) == [])
    }

    @Test func readsPastTheEndAsShortAndAtTheEndAsNothing() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        let input = DataKind.mixed.bytes(bgzfMaxInputPerBlock + 100)
        try compressToFile(input, path: dir.file("s.gz"))
        let reader = try BGZFReader(file: try ImageFile(openForReading: dir.file("s.gz")), library: .zlib)
        #expect(try read(reader, input.count - 10, 50) == Array(input.suffix(10)))
        #expect(try read(reader, input.count, 50) == [])
        #expect(try read(reader, input.count + 1000, 50) == [])
        #expect(try read(reader, bgzfMaxInputPerBlock - 1, 2) == Array(input[(bgzfMaxInputPerBlock - 1)...(bgzfMaxInputPerBlock)]))
    }

    @Test func concatenatedBGZFFilesReadAsTheirConcatenation() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        let first = DataKind.mixed.bytes(bgzfMaxInputPerBlock + 5, seed: 1)
        let second = DataKind.random.bytes(1000, seed: 2)
        try compressToFile(first, path: dir.file("1.gz"))
        try compressToFile(second, path: dir.file("2.gz"))
        try writeFile(dir.file("12.gz"), try readFile(dir.file("1.gz")) + readFile(dir.file("2.gz")))
        #expect(try decompressFile(dir.file("12.gz")) == first + second)
    }

    @Test(arguments: [1, 3])
    func decompressImageWritesTheWholeContentOrARange(threads: Int) throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        let input = DataKind.mixed.bytes(40 * bgzfMaxInputPerBlock + 3)
        try compressToFile(input, path: dir.file("d.gz"))
        let source = try ImageFile(openForReading: dir.file("d.gz"))
        try decompressImage(input: source, output: try createFile(dir.file("all")), threads: threads)
        #expect(try readFile(dir.file("all")) == input)
        for (offset, length) in [(100_000, 1_500_000), (0, 0), (input.count - 1, 1), (12345, input.count - 12345)] {
            let summary = try decompressImage(input: source, output: try createFile(dir.file("part")), offset: UInt64(offset),
                                              length: UInt64(length), threads: threads)
            #expect(summary.uncompressedBytes == UInt64(length))
            #expect(try readFile(dir.file("part")) == Array(input[offset..<(offset + length)]), "\(length) bytes at \(offset)")
        }
        #expect(throws: PlainFailure("\(dir.file("d.gz")): range \(input.count - 1)+2 is beyond the uncompressed size (\(input.count) bytes)", .usage)) {
            try decompressImage(input: source, output: try createFile(dir.file("x")), offset: UInt64(input.count - 1), length: 2)
        }
    }

    @Test func decompressImageReportsACorruptMemberFoundByAWorker() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        try compressToFile(DataKind.random.bytes(40 * bgzfMaxInputPerBlock), path: dir.file("k.gz"), level: 0)
        var bytes = try readFile(dir.file("k.gz"))
        let member = Int(try decompressIndex(dir.file("k.gz")).entries[30].compressedOffset)
        bytes[member + 1000] ^= 1
        try writeFile(dir.file("k.gz"), bytes)
        let error = bgzfError {
            try decompressImage(input: try ImageFile(openForReading: dir.file("k.gz")), output: try createFile(dir.file("o")), threads: 2)
        }
        #expect(error?.offset == UInt64(member))
        #expect(error?.message.contains("CRC32 mismatch") == true)
    }

    // MARK: bad input: each a BGZFError (exit 65) that says what is wrong, never a crash

    /// Opens `path` (walking headers unless told otherwise) and returns the error.
    func openError(_ path: String, index: BGZFReader.IndexSource = .walkHeaders) -> BGZFError? {
        bgzfError { _ = try BGZFReader(file: try ImageFile(openForReading: path), index: index, library: .zlib) }
    }

    @Test func emptyFileIsRefused() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        try writeFile(dir.file("empty"), [])
        let error = openError(dir.file("empty"))
        #expect(error?.description == "\(dir.file("empty")): empty file: not BGZF (even an empty BGZF file holds the 28-byte EOF member)")
        #expect(error?.exitStatus == .dataError)
    }

    @Test func plainGzipIsRefusedWithAHintToConvert() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        try writeFile(dir.file("plain"), DataKind.mixed.bytes(100_000))
        #expect(try shell("gzip -c '\(dir.file("plain"))' > '\(dir.file("plain.gz"))'") == 0)
        #expect(openError(dir.file("plain.gz"))?.description
            == "\(dir.file("plain.gz")): is a gzip file but not BGZF (no BC extra field): convert it with `imgmap compress`")
    }

    @Test func nonGzipIsRefused() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        for (name, bytes) in [("text", Array("linear 0 2048 disk.img 0\n".utf8)), ("one", [0x1f]), ("magic", [0x1f, 0x8b, 0x07])] {
            try writeFile(dir.file(name), bytes)
            let error = openError(dir.file(name))
            let expected = name == "one" ? "\(dir.file(name)): offset 0: member header cut short after 1 bytes: the file is truncated"
                : "\(dir.file(name)): not a gzip file (it does not start with 1f 8b 08), so not BGZF"
            #expect(error?.description == expected)
        }
    }

    @Test func truncatedFileIsRefused() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        try compressToFile(DataKind.mixed.bytes(3 * bgzfMaxInputPerBlock), path: dir.file("t.gz"))
        let whole = try readFile(dir.file("t.gz"))
        let index = try decompressIndex(dir.file("t.gz"))
        // Cut inside the second member, inside a header, and exactly at a member boundary.
        let secondStart = Int(index.entries[0].compressedOffset)
        for (cut, phrase) in [(secondStart + 1000, "runs past the end of the file"), (secondStart + 10, "member header cut short"),
                              (secondStart, "no BGZF end-of-file member")] {
            try writeFile(dir.file("cut.gz"), Array(whole[..<cut]))
            let error = openError(dir.file("cut.gz"))
            #expect(error?.message.contains(phrase) == true, "cut at \(cut): \(String(describing: error))")
            #expect(error?.message.contains("truncated") == true)
        }
    }

    @Test func missingEOFMemberIsRefused() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        try compressToFile(DataKind.mixed.bytes(1000), path: dir.file("n.gz"))
        try writeFile(dir.file("n.gz"), Array(try readFile(dir.file("n.gz")).dropLast(28)))
        #expect(openError(dir.file("n.gz"))?.description == "\(dir.file("n.gz")): no BGZF end-of-file member at the end: "
            + "the file is truncated or its writer did not finish (recompress it, or check the transfer)")
    }

    @Test func flippedByteIsACRCMismatchNamingTheMember() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        try compressToFile(DataKind.random.bytes(3 * bgzfMaxInputPerBlock), path: dir.file("f.gz"), level: 0)
        var bytes = try readFile(dir.file("f.gz"))
        let second = Int(try decompressIndex(dir.file("f.gz")).entries[0].compressedOffset)
        bytes[second + 30_000] ^= 0x40
        try writeFile(dir.file("f.gz"), bytes)
        let reader = try BGZFReader(file: try ImageFile(openForReading: dir.file("f.gz")), library: .zlib)
        #expect(try read(reader, 0, 100).count == 100)
        let error = bgzfError { _ = try read(reader, bgzfMaxInputPerBlock + 5, 10) }
        #expect(error?.offset == UInt64(second))
        #expect(error?.message.hasPrefix("member's CRC32 mismatch: stored 0x") == true)
        #expect(error?.description.hasPrefix("\(dir.file("f.gz")): offset \(second): ") == true)
    }

    @Test func corruptDeflateDataIsRefusedNamingTheMember() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        try compressToFile(DataKind.mixed.bytes(2 * bgzfMaxInputPerBlock), path: dir.file("c.gz"))
        var bytes = try readFile(dir.file("c.gz"))
        for i in 18..<60 { bytes[i] = 0xff }
        try writeFile(dir.file("c.gz"), bytes)
        for library in availableLibraries {
            let reader = try BGZFReader(file: try ImageFile(openForReading: dir.file("c.gz")), library: library)
            let error = bgzfError { _ = try read(reader, 0, 10) }
            #expect(error?.offset == 0)
            #expect(error?.message.contains("deflate data is corrupt") == true)
        }
    }

    @Test func memberDeclaringMoreThan64KiBIsRefused() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        try compressToFile(DataKind.mixed.bytes(1000), path: dir.file("big.gz"))
        var bytes = try readFile(dir.file("big.gz"))
        let isize = bytes.count - 28 - 4
        bytes[isize + 2] = 0x01  // ISIZE 1000 + 65536
        try writeFile(dir.file("big.gz"), bytes)
        let error = openError(dir.file("big.gz"))
        #expect(error?.offset == 0)
        #expect(error?.message == "member declares 66536 uncompressed bytes (ISIZE), more than BGZF's 65536: corrupt or not BGZF")
    }

    @Test func gziOfAnotherFileIsRefused() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        try compressToFile(DataKind.mixed.bytes(10 * bgzfMaxInputPerBlock, seed: 1), path: dir.file("a.gz"))
        let otherIndex = try compressToFile(DataKind.random.bytes(10 * bgzfMaxInputPerBlock, seed: 2), path: dir.file("b.gz"))
        try writeFile(dir.file("a.gz.gzi"), otherIndex.gziBytes())
        let error = openError(dir.file("a.gz"), index: .automatic)
        #expect(error?.path == dir.file("a.gz.gzi"))
        #expect(error?.message.contains("the index belongs to another file") == true, "\(String(describing: error))")
    }

    @Test func gziWithWrongUncompressedOffsetsIsCaughtWhenReading() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        let input = DataKind.mixed.bytes(4 * bgzfMaxInputPerBlock)
        var index = try compressToFile(input, path: dir.file("w.gz"))
        index.entries[1].uncompressedOffset += 1
        try writeFile(dir.file("w.gz.gzi"), index.gziBytes())
        let reader = try BGZFReader(file: try ImageFile(openForReading: dir.file("w.gz")), library: .zlib)
        let error = bgzfError { _ = try read(reader, 0, input.count) }
        #expect(error?.description == "\(dir.file("w.gz.gzi")): disagrees with \(dir.file("w.gz")): the member at offset "
            + "\(index.entries[0].compressedOffset) holds 65280 bytes (ISIZE), not 65281 (delete or rebuild the index)")
    }

    @Test func malformedGziIsRefused() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        try compressToFile(DataKind.mixed.bytes(1000), path: dir.file("m.gz"))
        try writeFile(dir.file("m.gz.gzi"), [1, 0, 0])
        #expect(openError(dir.file("m.gz"), index: .automatic)?.path == dir.file("m.gz.gzi"))
        try writeFile(dir.file("m.gz.gzi"), BGZFIndex(entries: [.init(compressedOffset: 5000, uncompressedOffset: 10)]).gziBytes())
        #expect(openError(dir.file("m.gz"), index: .automatic)?.message.contains("lies beyond the end") == true)
    }

    @Test func randomGarbageNeverCrashesTheReader() throws {
        let dir = TemporaryDirectory("imgmap-bgzf-test")
        defer { dir.remove() }
        let input = DataKind.mixed.bytes(3 * bgzfMaxInputPerBlock)
        try compressToFile(input, path: dir.file("g.gz"))
        let original = try readFile(dir.file("g.gz"))
        var random = TestData(seed: 5)
        for round in 0..<300 {
            var bytes = original
            for _ in 0..<(1 + random.next() % 4) {
                bytes[Int(random.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next())
            }
            if round % 3 == 0 { bytes.removeLast(Int(random.next() % UInt64(bytes.count))) }
            try writeFile(dir.file("x.gz"), bytes)
            do {
                let reader = try BGZFReader(file: try ImageFile(openForReading: dir.file("x.gz")), index: .walkHeaders, library: .zlib)
                var out = [UInt8](repeating: 0, count: Int(min(reader.uncompressedSize, 1 << 20)))
                _ = try out.withUnsafeMutableBytes { try reader.read(into: $0, at: 0) }
            } catch let error as BGZFError {
                #expect(error.exitStatus == .dataError)
            }
        }
    }

    /// The index of a BGZF file, by walking it.
    func decompressIndex(_ path: String) throws -> BGZFIndex {
        try BGZFReader(file: try ImageFile(openForReading: path), index: .walkHeaders, library: .zlib).index
    }
}
