import Foundation
import Testing
@testable import ImgMapCore

@Suite struct DeflateBackendTests {
    @Test(arguments: availableLibraries)
    func compressThenInflateGivesTheInput(library: DeflateLibrary) throws {
        let backend = library.makeBackend()
        let input = DataKind.mixed.bytes(bgzfMaxInputPerBlock)
        var compressed = [UInt8](repeating: 0, count: bgzfMaxDeflateSize)
        let size = try #require(input.withUnsafeBytes { i in
            compressed.withUnsafeMutableBytes { backend.compress(i, level: 6, into: $0) }
        })
        #expect(size < input.count)
        var output = [UInt8](repeating: 0xaa, count: input.count)
        let ok = compressed.withUnsafeBytes { c in
            output.withUnsafeMutableBytes { backend.inflate(UnsafeRawBufferPointer(rebasing: c[..<size]), into: $0) }
        }
        #expect(ok)
        #expect(output == input)
    }

    @Test(arguments: availableLibraries)
    func crc32MatchesTheCheckValue(library: DeflateLibrary) {
        let backend = library.makeBackend()
        let crc = Array("123456789".utf8).withUnsafeBytes { backend.crc32($0, seed: 0) }
        #expect(crc == 0xcbf4_3926)
        let empty = [UInt8]().withUnsafeBytes { backend.crc32($0, seed: 0) }
        #expect(empty == 0)
    }

    @Test(arguments: availableLibraries)
    func inflateRefusesCorruptDataAndWrongSizes(library: DeflateLibrary) {
        let backend = library.makeBackend()
        let input = DataKind.mixed.bytes(10_000)
        var compressed = [UInt8](repeating: 0, count: 20_000)
        let size = input.withUnsafeBytes { i in compressed.withUnsafeMutableBytes { backend.compress(i, level: 6, into: $0) } }!
        func inflates(_ data: [UInt8], to count: Int) -> Bool {
            var output = [UInt8](repeating: 0, count: count)
            return data.withUnsafeBytes { d in output.withUnsafeMutableBytes { backend.inflate(d, into: $0) } }
        }
        let good = Array(compressed[..<size])
        #expect(inflates(good, to: input.count))
        #expect(!inflates(good, to: input.count - 1))
        #expect(!inflates(good, to: input.count + 1))
        #expect(!inflates(Array(good[..<(size / 2)]), to: input.count))
        #expect(!inflates([0xff, 0xff, 0xff, 0xff], to: 10))
    }

    @Test(arguments: availableLibraries)
    func compressReportsOutputTooSmall(library: DeflateLibrary) {
        let backend = library.makeBackend()
        let input = DataKind.random.bytes(4096)
        var small = [UInt8](repeating: 0, count: 100)
        let size = input.withUnsafeBytes { i in small.withUnsafeMutableBytes { backend.compress(i, level: 6, into: $0) } }
        #expect(size == nil)
    }

    @Test(arguments: availableLibraries)
    func levelZeroStoresTheInput(library: DeflateLibrary) throws {
        let backend = library.makeBackend()
        let input = DataKind.mixed.bytes(bgzfMaxInputPerBlock)
        var compressed = [UInt8](repeating: 0, count: bgzfMaxDeflateSize)
        let size = try #require(input.withUnsafeBytes { i in
            compressed.withUnsafeMutableBytes { backend.compress(i, level: 0, into: $0) }
        })
        #expect(size >= input.count && size <= input.count + 64)
    }

    @Test func storedBlocksInflateToTheInput() throws {
        let backend = DeflateLibrary.zlib.makeBackend()
        for count in [0, 1, 65535, 65536, 140_000] {
            let input = DataKind.random.bytes(count)
            var stored = [UInt8](repeating: 0, count: count + 64)
            let size = try #require(input.withUnsafeBytes { i in stored.withUnsafeMutableBytes { deflateStored(i, into: $0) } })
            var output = [UInt8](repeating: 0, count: count)
            let ok = stored.withUnsafeBytes { s in
                output.withUnsafeMutableBytes { backend.inflate(UnsafeRawBufferPointer(rebasing: s[..<size]), into: $0) }
            }
            #expect(ok, "stored deflate of \(count) bytes")
            #expect(output == input)
        }
    }

    @Test(.enabled(if: getenv(DeflateLibrary.environmentVariable) == nil, "IMGMAP_DEFLATE is set"))
    func libDeflateIsPreferredWhenItLoads() throws {
        let expected: DeflateLibrary = DeflateLibrary.isLibDeflateAvailable ? .libdeflate : .zlib
        #expect(try DeflateLibrary.fromEnvironment() == expected)
    }
}
