import Testing

@testable import ImgMapCore

struct ZeroErrorTests {
    @Test func zeroRejectsArguments() {
        #expect(loadError("0 8 zero x y")?.description == "t.table:1: zero: No arguments required: zero takes no arguments, got `x y`")
        #expect(loadError("0 8 zero x y")?.exitStatus == .dataError)
    }

    @Test func zeroTargetReadsAsZeros() throws {
        let map = SectorMap(top: try loadTables("0 16 zero").top)
        #expect(extents(map).map(summary) == ["0 16 zero"])
        #expect(try readAll(map) == [UInt8](repeating: 0, count: 16 * 512))
    }

    @Test func errorIgnoresItsArguments() throws {
        let loaded = try loadTables("0 8 error some junk 42")
        #expect(extents(SectorMap(top: loaded.top)).map(summary) == ["0 8 error"])
        #expect((loaded.top.segments[0].target as? ErrorTarget)?.tableArguments == "")
    }

    @Test func errorTargetFailsReadsUnderTheFailPolicy() throws {
        let map = SectorMap(top: try loadTables("0 8 zero\n8 4 error\n12 4 zero").top)
        let reader = MapReader(map: map, onError: .fail)
        var buffer = [UInt8](repeating: 0xff, count: 16 * 512)
        let error = #expect(throws: MappedReadError.self) {
            try buffer.withUnsafeMutableBytes { try reader.read(into: $0, at: .zero) }
        }
        #expect(error?.range == SectorRange(start: 8, length: 4))
        #expect(error?.exitStatus == .ioError)
        #expect(error?.description == "sectors 8+4 (t.table:2 error): Input/output error, as the kernel's read returns there"
            + " (use --on-error zero to read zeros and list the ranges with --errors FILE)")
    }

    @Test func errorTargetReadsAsZerosAndIsListedUnderTheZeroPolicy() throws {
        let map = SectorMap(top: try loadTables("0 8 zero\n8 4 error\n12 4 zero").top)
        let reader = MapReader(map: map, onError: .zero)
        var buffer = [UInt8](repeating: 0xff, count: 16 * 512)
        try buffer.withUnsafeMutableBytes { try reader.read(into: $0, at: .zero) }
        #expect(buffer == [UInt8](repeating: 0, count: 16 * 512))
        #expect(reader.errors.ranges == [SectorRange(start: 8, length: 4)])
    }

    @Test func adjacentErrorLinesAreSeparateExtentsButOneErrorRange() throws {
        let map = SectorMap(top: try loadTables("0 1 error\n1 2 error\n3 5 zero\n8 1 error").top)
        #expect(extents(map).map(summary) == ["0 1 error", "1 2 error", "3 5 zero", "8 1 error"])
        #expect(map.errorRanges().ranges == [SectorRange(start: 0, length: 3), SectorRange(start: 8, length: 1)])
        #expect(map.errorRanges().text == "0 3\n8 1\n")
    }

    @Test func errorRangesReadInPiecesStillMerge() throws {
        let map = SectorMap(top: try loadTables("0 4 zero\n4 8 error\n12 4 zero").top)
        let reader = MapReader(map: map, onError: .zero)
        var buffer = [UInt8](repeating: 0, count: 512)
        for s in UInt64(0)..<16 {
            try buffer.withUnsafeMutableBytes { try reader.read(into: $0, at: Sector(s)) }
        }
        #expect(reader.errors.ranges == [SectorRange(start: 4, length: 8)])
    }

    @Test func mapWithoutErrorsHasNoFirstError() throws {
        #expect(SectorMap(top: try loadTables("0 8 zero").top).firstError() == nil)
        let first = SectorMap(top: try loadTables("0 8 zero\n8 2 error\n10 2 error").top).firstError()
        #expect(first.map(summary) == "8 2 error")
        #expect(first?.origin.description == "t.table:2 error")
    }
}
