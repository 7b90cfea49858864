import Foundation
import Testing

@testable import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

/// Composes `map` into `path` through `OutputFile`, as the CLI does.
private func compose(_ map: SectorMap, to path: String, inputs: [ImageFile], onError: ErrorPolicy = .zero,
                     bufferSize: Int? = nil) throws -> Compose.Report {
    let out = try OutputFile(path: path, inputs: inputs)
    var options = Compose.Options(onError: onError)
    if let bufferSize { options.bufferSize = bufferSize }
    let report = try Compose(map: map, options: options).run(to: out)
    try out.commit()
    return report
}

/// A sparse image of `sectors` sectors holding golden data only in `dataRanges` (sector ranges).
private func sparseImage(in folder: TemporaryDirectory, sectors: UInt64, dataRanges: [Range<UInt64>]) -> String {
    let path = folder.sparseImage("sparse.img", sectors: sectors)
    let fd = open(path, O_WRONLY)
    defer { close(fd) }
    for range in dataRanges {
        for s in range {
            let bytes = GoldenImages.sector("S", s)
            _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress!, 512, off_t(s * 512)) }
        }
    }
    return path
}

struct ComposeTests {
    @Test func holesInAnImageComposeAsZeros() throws {
        let folder = TemporaryDirectory()
        let image = sparseImage(in: folder, sectors: 4096, dataRanges: [0..<8, 1500..<1530, 4000..<4096])
        // Stripes that start in data and in holes, and visit the image out of order.
        let table = "0 2016 striped 2 24 S 0 S 1400\n2016 16 zero\n2032 2064 linear S 2000\n"
        let loaded = try loadTables(table, devices: ["S": image])
        let map = SectorMap(top: loaded.top)
        let expected = try readAll(map)
        #expect(expected.contains { $0 != 0 })
        let out = folder.file("out.img")
        _ = try compose(map, to: out, inputs: loaded.leaves.map(\.image))
        #expect(readBytes(out) == expected)
    }

    /// An image cut short after the tables were loaded must not have its missing tail read as a hole of
    /// zeros, in any output mode, nor in verify or manifest.
    @Test(arguments: [Compose.Sparse.always, .auto, .never])
    func imageTruncatedAfterLoadingIsAnErrorNotZeros(sparse: Compose.Sparse) throws {
        let folder = TemporaryDirectory()
        let image = sparseImage(in: folder, sectors: 4096, dataRanges: [0..<8])
        let loaded = try loadTables("0 4096 linear S 0\n", devices: ["S": image])
        let map = SectorMap(top: loaded.top)
        let copy = folder.file("copy.img")
        try FileManager.default.copyItem(atPath: image, toPath: copy)
        #expect(truncate(image, 8 * 512) == 0)
        let path = folder.file("out.img")
        let out = try OutputFile(path: path, inputs: loaded.leaves.map(\.image))
        #expect(throws: IOFailure.self) { try Compose(map: map, options: .init(sparse: sparse)).run(to: out) }
        out.discard()
        #expect(!FileManager.default.fileExists(atPath: path))

        let verify = Verify(map: map, options: .init())
        #expect(throws: IOFailure.self) {
            try verify.run(image: ImageFile(openForReading: copy), isStream: false) { _ in }
        }
        #expect(throws: IOFailure.self) { try Manifest(map: map).bmap(path: "t") }
    }

    @Test func smallBuffersGiveTheSameBytes() throws {
        let folder = TemporaryDirectory()
        let a = GoldenImages.path("A", sectors: 1000)
        let loaded = try loadTables("0 630 striped 3 7 A 0 A 300 A 500\n630 8 error\n638 100 linear A 3", devices: ["A": a])
        let map = SectorMap(top: loaded.top)
        let big = folder.file("big.img")
        let small = folder.file("small.img")
        let bigReport = try compose(map, to: big, inputs: loaded.leaves.map(\.image))
        let smallReport = try compose(map, to: small, inputs: loaded.leaves.map(\.image), bufferSize: 4096)
        #expect(readBytes(big) == readBytes(small))
        #expect(readBytes(big) == (try readAll(map)))
        #expect(bigReport.errors == smallReport.errors)
        #expect(bigReport.errors.ranges == [SectorRange(start: 630, length: 8)])
        #expect(bigReport.bytes == 738 * 512)
    }

    @Test func failPolicyWritesNothing() throws {
        let folder = TemporaryDirectory()
        let map = SectorMap(top: try loadTables("0 8 zero\n8 8 error").top)
        let path = folder.file("out.img")
        #expect(throws: MappedReadError.self) { _ = try compose(map, to: path, inputs: [], onError: .fail) }
        #expect(folder.entries() == [])
    }

    @Test func commitReplacesAnExistingFileWhole() throws {
        let folder = TemporaryDirectory()
        let path = folder.write("out.img", String(repeating: "x", count: 100_000))
        let map = SectorMap(top: try loadTables("0 8 zero").top)
        _ = try compose(map, to: path, inputs: [])
        #expect(readBytes(path) == [UInt8](repeating: 0, count: 4096))
        #expect(folder.entries() == ["out.img"])
    }

    @Test func outputIntoADirectoryIsCannotCreate() throws {
        let folder = TemporaryDirectory()
        let error = failure { _ = try OutputFile(path: folder.path, inputs: []) }
        #expect(error?.exitStatus == .cannotCreate)
    }

    @Test func discardedOutputLeavesNothing() throws {
        let folder = TemporaryDirectory()
        let out = try OutputFile(path: folder.file("out.img"), inputs: [])
        // Unnamed (O_TMPFILE) until committed: there is no name in the folder even while it is open.
        #expect(folder.entries() == [])
        out.discard()
        #expect(folder.entries() == [])
    }
}
