import Testing

@testable import ImgMapCore

/// A device of `sectors` sectors that no test reads: enough for constructors and `map`.
func fakeDevice(_ token: String, sectors: UInt64 = 1 << 20) -> Device {
    .leaf(LeafFile(path: token, image: ImageFile(descriptor: -1, path: token, writable: false, owned: false), size: Sector(sectors)))
}

/// A context in which every token names a large fake device.
var fakeContext: TargetContext {
    TargetContext(lookup: { token throws(TargetError) in fakeDevice(token) },
                  compressed: { token throws(TargetError) in fakeDevice(token) })
}

/// The pieces a target maps `count` sectors from `offset` onto, as `(token, sector, count)`;
/// zero and error pieces have the token `zero` / `error`.
func pieces(_ target: any Target, offset: UInt64, count: UInt64) -> [(String, UInt64, UInt64)] {
    var out: [(String, UInt64, UInt64)] = []
    target.map(offset: offset, count: count) { piece in
        switch piece {
        case .device(_, let token, let sector, let n): out.append((token, sector, n))
        case .zero(let n): out.append(("zero", 0, n))
        case .error(let n): out.append(("error", 0, n))
        case .computed(_, let token, let sector, let n): out.append(("computed \(token ?? "-")", sector, n))
        }
    }
    return out
}

/// The target constructor's error for `arguments` on a segment of `length` sectors.
func constructorError<T: Target>(_ type: T.Type, _ arguments: [String], length: UInt64,
                                 context: TargetContext = fakeContext) -> TargetError? {
    do {
        _ = try T(arguments: arguments, length: Sector(length), context: context)
        return nil
    } catch {
        return error
    }
}

struct LinearTests {
    @Test func linearRejectsAnyArgumentCountButTwo() {
        #expect(constructorError(LinearTarget.self, ["A"], length: 8)?.message == "Invalid argument count")
        #expect(constructorError(LinearTarget.self, ["A", "0", "x"], length: 8)?.message == "Invalid argument count")
        #expect(constructorError(LinearTarget.self, [], length: 8)?.message == "Invalid argument count")
    }

    @Test func linearArgumentCountErrorNamesFileLineAndTarget() {
        #expect(loadError("0 8 zero\n8 8 linear A")?.description
            == "t.table:2: linear: Invalid argument count: linear takes 2 arguments (<device> <offset>), got 1")
    }

    @Test(arguments: ["+5", "-1", "0x10", "5x", "1e3", ""])
    func linearRejectsAnOffsetThatIsNotPlainDigits(_ offset: String) {
        #expect(constructorError(LinearTarget.self, ["A", offset], length: 8)?.message == "Invalid device sector")
    }

    @Test func linearAcceptsLeadingZerosInTheOffset() throws {
        let target = try LinearTarget(arguments: ["A", "05"], length: Sector(8), context: fakeContext)
        #expect(target.offset == 5)
        #expect(target.tableArguments == "A 5")
    }

    @Test func linearOffsetWrapsModulo2To64() {
        #expect(KernelNumber.sector("18446744073709551621") == 5)
        #expect(KernelNumber.sector("18446744073709551615") == UInt64.max)
    }

    @Test func linearChecksTheOffsetBeforeLookingUpTheDevice() {
        let missing = TargetContext(lookup: { _ throws(TargetError) in throw TargetError("Device lookup failed") },
                                    compressed: { _ throws(TargetError) in throw TargetError("Device lookup failed") })
        #expect(constructorError(LinearTarget.self, ["A", "x"], length: 8, context: missing)?.message == "Invalid device sector")
        #expect(constructorError(LinearTarget.self, ["A", "0"], length: 8, context: missing)?.message == "Device lookup failed")
    }

    @Test func linearMapsOntoTheDeviceFromItsOffset() throws {
        let target = try LinearTarget(arguments: ["A", "100"], length: Sector(50), context: fakeContext)
        let mapped = pieces(target, offset: 10, count: 20)
        #expect(mapped.map(\.0) == ["A"])
        #expect(mapped.map(\.1) == [110])
        #expect(mapped.map(\.2) == [20])
        #expect(target.deviceAreas.map(\.start) == [100])
        #expect(target.deviceAreas.map(\.length) == [50])
    }

    @Test func linearAreaPastTheEndOfItsImageIsTooSmallForTarget() throws {
        let folder = TemporaryDirectory()
        let a = folder.sparseImage("a.img", sectors: 100)
        #expect(throws: Never.self) { try loadTables("0 10 linear A 90", devices: ["A": a]) }
        let error = loadError("0 10 linear A 91", devices: ["A": a])
        #expect(error?.description.hasPrefix("t.table:1: linear: too small for target: A (\(a)): start=91, len=10, dev_size=100") == true)
        #expect(error?.exitStatus == .dataError)
        #expect(loadError("0 1 linear A 100", devices: ["A": a])?.description.contains("too small for target") == true)
    }

    @Test func partialTailSectorIsNotPartOfTheDevice() throws {
        let folder = TemporaryDirectory()
        let a = folder.sparseImage("a.img", sectors: 1, extraBytes: 488)  // 1000 bytes: one whole sector
        let loaded = try loadTables("0 1 linear A 0", devices: ["A": a])
        #expect(loaded.leaves.map(\.size) == [Sector(1)])
        #expect(loadError("0 2 linear A 0", devices: ["A": a])?.description.contains("dev_size=1") == true)
    }

    @Test func emptyImageIsNotBoundsCheckedAndReadsAsErrors() throws {
        // The kernel skips device_area_is_invalid for a zero-sized device; reading it fails.
        let folder = TemporaryDirectory()
        let a = folder.sparseImage("a.img", sectors: 0)
        let loaded = try loadTables("0 8 linear A 4", devices: ["A": a])
        #expect(extents(SectorMap(top: loaded.top)).map(summary) == ["0 8 error"])
    }

    @Test func missingImageIsADeviceLookupFailureWithExitStatus66() {
        let error = loadError("0 8 linear /nonexistent/imgmap/a.img 0")
        #expect(error?.exitStatus == .noInput)
        #expect(error?.description.hasPrefix(
            "t.table:1: linear: Device lookup failed: /nonexistent/imgmap/a.img: No such file or directory") == true)
    }

    @Test func boundNameToAMissingImageNamesThePath() {
        let error = loadError("0 8 linear A 0", devices: ["A": "/nonexistent/imgmap/a.img"])
        #expect(error?.exitStatus == .noInput)
        #expect(error?.description == "t.table:1: linear: Device lookup failed: /nonexistent/imgmap/a.img: No such file or directory")
    }

    @Test func unboundDeviceNumberSuggestsABinding() {
        let error = loadError("0 8 linear 8:16 0")
        #expect(error?.exitStatus == .noInput)
        #expect(error?.description.contains("bind it with --dev 8:16=IMAGE") == true)
    }

    @Test func directoryIsNotAnImage() throws {
        let folder = TemporaryDirectory()
        let error = loadError("0 8 linear A 0", devices: ["A": folder.path])
        #expect(error?.exitStatus == .noInput)
        #expect(error?.description.contains("\(folder.path): not a regular file or block device") == true)
    }
}
