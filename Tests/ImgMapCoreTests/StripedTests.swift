import Testing

@testable import ImgMapCore

/// Where sector `x` of a striped segment lies, computed independently of `StripedTarget.map`:
/// chunk x / chunk goes to stripe (x / chunk) mod n, at chunk (x / chunk) div n of that stripe.
private func reference(_ x: UInt64, stripes: [(String, UInt64)], chunk: UInt64) -> (String, UInt64) {
    let n = UInt64(stripes.count)
    let c = x / chunk
    let stripe = stripes[Int(c % n)]
    return (stripe.0, stripe.1 + (c / n) * chunk + x % chunk)
}

/// Expands pieces into one `(token, sector)` per mapped sector.
private func perSector(_ mapped: [(String, UInt64, UInt64)]) -> [String] {
    mapped.flatMap { piece in (0..<piece.2).map { "\(piece.0)@\(piece.1 + $0)" } }
}

private func striped(_ arguments: String, length: UInt64) throws -> StripedTarget {
    try StripedTarget(arguments: arguments.split(separator: " ").map(String.init), length: Sector(length), context: fakeContext)
}

struct StripedTests {
    // MARK: constructor checks, in the kernel's order

    @Test func stripedNeedsAtLeastTwoArguments() {
        #expect(constructorError(StripedTarget.self, ["2"], length: 16)?.message == "Not enough arguments")
        #expect(constructorError(StripedTarget.self, [], length: 16)?.message == "Not enough arguments")
    }

    @Test(arguments: ["0", "-1", "x", "2x", "4294967296", "0x2", ""])
    func stripedRejectsAnInvalidStripeCount(_ count: String) {
        #expect(constructorError(StripedTarget.self, [count, "8", "A", "0", "B", "0"], length: 16)?.message == "Invalid stripe count")
    }

    @Test(arguments: ["0", "-8", "8k", "4294967296", ""])
    func stripedRejectsAnInvalidChunkSize(_ chunk: String) {
        #expect(constructorError(StripedTarget.self, ["2", chunk, "A", "0", "B", "0"], length: 16)?.message == "Invalid chunk_size")
    }

    @Test func stripedAcceptsPlusAndLeadingZerosInCountAndChunk() throws {
        let target = try striped("+2 08 A 0 B 0", length: 32)
        #expect(target.stripes.count == 2)
        #expect(target.chunk == 8)
        #expect(target.tableArguments == "2 8 A 0 B 0")
    }

    @Test func stripedRejectsLengthNotDivisibleByStripeCount() {
        #expect(constructorError(StripedTarget.self, ["3", "1", "A", "0", "B", "0", "C", "0"], length: 16)?.message
            == "Target length not divisible by number of stripes")
    }

    @Test func stripedRejectsLengthNotDivisibleByChunkSize() {
        #expect(constructorError(StripedTarget.self, ["2", "7", "A", "0", "B", "0"], length: 16)?.message
            == "Target length not divisible by chunk size")
    }

    @Test func stripedChecksDivisibilityBeforeTheArgumentCount() {
        #expect(constructorError(StripedTarget.self, ["2", "8", "A", "0"], length: 17)?.message
            == "Target length not divisible by number of stripes")
        #expect(constructorError(StripedTarget.self, ["2", "7", "A", "0"], length: 16)?.message
            == "Target length not divisible by chunk size")
    }

    @Test func stripedRejectsTooFewOrTooManyDestinations() {
        #expect(constructorError(StripedTarget.self, ["2", "8", "A", "0"], length: 16)?.message == "Not enough destinations specified")
        #expect(constructorError(StripedTarget.self, ["2", "8", "A", "0", "B"], length: 16)?.message == "Not enough destinations specified")
        #expect(constructorError(StripedTarget.self, ["2", "8", "A", "0", "B", "0", "C", "0"], length: 16)?.message
            == "Not enough destinations specified")
    }

    @Test(arguments: ["+5", "-1", "0x10", "x"])
    func stripedRejectsAnInvalidDestinationOffset(_ offset: String) {
        let error = constructorError(StripedTarget.self, ["2", "8", "A", "0", "B", offset], length: 16)
        #expect(error?.message == "Couldn't parse stripe destination")
        #expect(error?.detail == "stripe 1: `\(offset)` is not a decimal sector number")
    }

    @Test func stripedMissingDestinationImageIsExitStatus66() {
        let error = loadError("0 16 striped 2 8 /nonexistent/imgmap/a.img 0 /nonexistent/imgmap/b.img 0")
        #expect(error?.exitStatus == .noInput)
        #expect(error?.description.hasPrefix(
            "t.table:1: striped: Couldn't parse stripe destination: stripe 0: Device lookup failed: /nonexistent/imgmap/a.img") == true)
    }

    @Test func stripedAreaPastTheEndOfAStripeIsTooSmallForTarget() throws {
        let folder = TemporaryDirectory()
        let a = folder.sparseImage("a.img", sectors: 64)
        let b = folder.sparseImage("b.img", sectors: 64)
        #expect(throws: Never.self) { try loadTables("0 128 striped 2 8 A 0 B 0", devices: ["A": a, "B": b]) }
        let error = loadError("0 128 striped 2 8 A 0 B 1", devices: ["A": a, "B": b])
        #expect(error?.description.hasPrefix("t.table:1: striped: too small for target: B (\(b)): start=1, len=64, dev_size=64") == true)
    }

    // MARK: mapping arithmetic

    @Test(arguments: [(UInt64(7), 3), (13, 2), (1000, 3), (1, 2), (24, 4), (8, 1)])
    func stripedMapsEverySectorLikeTheKernel(chunk: UInt64, count: Int) throws {
        let names = ["A", "B", "C", "D"]
        var stripes: [(String, UInt64)] = []
        for k in 0..<count { stripes.append((names[k], UInt64(k) * 1000 + 3)) }
        let length = chunk * UInt64(count) * 5
        let arguments = "\(count) \(chunk) " + stripes.map { "\($0.0) \($0.1)" }.joined(separator: " ")
        let target = try striped(arguments, length: length)
        let expected = (0..<length).map { x -> String in
            let (token, sector) = reference(x, stripes: stripes, chunk: chunk)
            return "\(token)@\(sector)"
        }
        #expect(perSector(pieces(target, offset: 0, count: length)) == expected)
        // Any sub-range, starting and ending inside chunks, maps the same sectors.
        let from = chunk / 2 + 1
        let to = length - chunk / 3 - 1
        #expect(perSector(pieces(target, offset: from, count: to - from)) == Array(expected[Int(from)..<Int(to)]))
    }

    @Test func stripedPiecesNeverCrossAChunk() throws {
        let target = try striped("3 7 A 0 B 0 C 0", length: 210)
        let mapped = pieces(target, offset: 3, count: 200)
        let expectedCounts: [UInt64] = [4] + Array(repeating: 7, count: 28)
        #expect(mapped.map(\.2) == expectedCounts)
        #expect(mapped.map(\.2).reduce(0, +) == 200)
    }

    @Test func stripedSameDeviceTwiceMapsBothAreas() throws {
        let target = try striped("2 4 A 0 A 100", length: 16)
        #expect(perSector(pieces(target, offset: 0, count: 16)) == [
            "A@0", "A@1", "A@2", "A@3", "A@100", "A@101", "A@102", "A@103",
            "A@4", "A@5", "A@6", "A@7", "A@104", "A@105", "A@106", "A@107",
        ])
    }

    @Test func stripedSameDeviceTwiceReadsTheImagesBytes() throws {
        let a = GoldenImages.path("A", sectors: 256)
        let loaded = try loadTables("0 64 striped 2 8 A 0 A 128", devices: ["A": a])
        let image = GoldenImages.bytes("A", sectors: 256)
        var expected: [UInt8] = []
        for x in UInt64(0)..<64 {
            let (_, sector) = reference(x, stripes: [("A", 0), ("A", 128)], chunk: 8)
            expected += image[Int(sector) * 512..<Int(sector + 1) * 512]
        }
        #expect(try readAll(SectorMap(top: loaded.top)) == expected)
    }

    // MARK: extents

    @Test func stripedGivesOneExtentPerChunk() throws {
        let folder = TemporaryDirectory()
        let devices = ["A": folder.sparseImage("a.img", sectors: 100), "B": folder.sparseImage("b.img", sectors: 100)]
        let loaded = try loadTables("0 56 striped 2 7 A 0 B 10", devices: devices)
        #expect(extents(SectorMap(top: loaded.top)).map(summary) == [
            "0 7 data a.img 0", "7 7 data b.img 10", "14 7 data a.img 7", "21 7 data b.img 17",
            "28 7 data a.img 14", "35 7 data b.img 24", "42 7 data a.img 21", "49 7 data b.img 31",
        ])
    }

    @Test func oneWayStripedMergesIntoOneExtent() throws {
        let folder = TemporaryDirectory()
        let loaded = try loadTables("0 64 striped 1 8 A 5", devices: ["A": folder.sparseImage("a.img", sectors: 100)])
        #expect(extents(SectorMap(top: loaded.top)).map(summary) == ["0 64 data a.img 5"])
    }

    @Test func stripedExtentsAreCutToTheAskedRange() throws {
        let folder = TemporaryDirectory()
        let devices = ["A": folder.sparseImage("a.img", sectors: 100), "B": folder.sparseImage("b.img", sectors: 100)]
        let map = SectorMap(top: try loadTables("0 32 striped 2 8 A 0 B 0", devices: devices).top)
        #expect(extents(map, from: 5, to: 20).map(summary) == ["5 3 data a.img 5", "8 8 data b.img 0", "16 4 data a.img 8"])
        #expect(summary(try #require(map.extent(at: Sector(13)))) == "13 3 data b.img 5")
    }
}
