import Foundation
import Testing

@testable import ImgMapCore

// snapshot, snapshot-origin and snapshot-merge: persistent COW stores built here byte by byte (the
// layout of dm-snap-persistent.c), reads through them, refusals of corrupt or foreign stores, and the
// write path against a model (origin with the payload laid over it) and against a fresh read of the COW.

/// A persistent COW image: header, then metadata areas holding `exceptions` (old, new chunk) in order.
func makeCOW(_ path: String, sectors: UInt64, chunk: UInt64, exceptions: [(UInt64, UInt64)], valid: UInt32 = 1,
             version: UInt32 = 1, magic: UInt32 = PersistentSnapshotStore.magic, headerChunk: UInt32? = nil,
             fill: ((UInt64, inout [UInt8]) -> Void)? = nil) {
    var bytes = [UInt8](repeating: 0, count: Int(sectors * 512))
    putLE32(&bytes, 0, magic)
    putLE32(&bytes, 4, valid)
    putLE32(&bytes, 8, version)
    putLE32(&bytes, 12, headerChunk ?? UInt32(chunk))
    let perArea = Int(chunk * 512 / 16)
    for (i, e) in exceptions.enumerated() {
        let area = UInt64(i / perArea)
        let at = Int((1 + (UInt64(perArea) + 1) * area) * chunk * 512) + 16 * (i % perArea)
        putLE64(&bytes, at, e.0)
        putLE64(&bytes, at + 8, e.1)
        // The data chunk: each sector labelled "C" with its COW sector, for the reads to be checked.
        // An exception that points past the COW (a bad-input case) has no data chunk to fill.
        guard (e.1 + 1) * chunk <= sectors else { continue }
        for k in 0..<chunk {
            GoldenImages.fillSector("C", e.1 * chunk + k, into: &bytes, at: Int((e.1 * chunk + k) * 512))
        }
    }
    fill?(chunk, &bytes)
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

struct SnapshotTests {
    let folder = TemporaryDirectory()
    let origin = GoldenImages.path("O", sectors: 256)

    func load(_ table: String, cow: String, lower: [(String, String)] = []) throws -> SectorMap {
        SectorMap(top: try loadTables(table, lower: lower, devices: ["O": origin, "COW": cow]).top)
    }

    @Test func persistentSnapshotReadsExceptionsFromTheCOWAndTheRestFromTheOrigin() throws {
        let cow = folder.file("cow.img")
        makeCOW(cow, sectors: 128, chunk: 8, exceptions: [(3, 2), (4, 3), (10, 5)])
        let map = try load("0 256 snapshot O COW P 8", cow: cow)
        #expect(extents(map).map(summary) == [
            "0 24 data O-256+0.img 0", "24 16 data cow.img 16", "40 40 data O-256+0.img 40",
            "80 8 data cow.img 40", "88 168 data O-256+0.img 88",
        ])
        // Provenance names the COW or the origin with the snapshot's line.
        #expect(extents(map)[1].origin == Origin(table: "t.table", line: 1, target: "snapshot", device: "COW"))
        #expect(extents(map)[0].origin == Origin(table: "t.table", line: 1, target: "snapshot", device: "O"))
        let bytes = try readAll(map)
        #expect(Array(bytes[24 * 512..<25 * 512]) == GoldenImages.sector("C", 16))
        #expect(Array(bytes[0..<512]) == GoldenImages.sector("O", 0))
    }

    @Test func exceptionsSpanningSeveralMetadataAreasAreAllRead() throws {
        // Chunk 1 (512 bytes) holds 32 exceptions per area; 40 exceptions need two areas, the data
        // chunks skipping area 1 at chunk 34.
        let cow = folder.file("cow.img")
        var pairs: [(UInt64, UInt64)] = []
        var next: UInt64 = 2
        for old in 0..<40 as Range<UInt64> {
            pairs.append((old * 2, next))
            next += 1
            if next % 33 == 1 { next += 1 }
        }
        makeCOW(cow, sectors: 64, chunk: 1, exceptions: pairs)
        let map = try load("0 256 snapshot O COW P 1", cow: cow)
        let bytes = try readAll(map)
        for (old, new) in pairs {
            #expect(Array(bytes[Int(old) * 512..<Int(old + 1) * 512]) == GoldenImages.sector("C", new), "chunk \(old)")
        }
        #expect(Array(bytes[512..<1024]) == GoldenImages.sector("O", 1))
    }

    @Test func aNewZeroedCOWReadsAsTheOriginAndIsLeftUnchanged() throws {
        let cow = folder.sparseImage("cow.img", sectors: 64)
        let map = try load("0 256 snapshot O COW P 8", cow: cow)
        #expect(extents(map).map(summary) == ["0 256 data O-256+0.img 0"])
        #expect(readBytes(cow).allSatisfy { $0 == 0 })
    }

    @Test func aTransientStoreIgnoresWhatTheCOWHolds() throws {
        let cow = folder.file("cow.img")
        makeCOW(cow, sectors: 128, chunk: 8, exceptions: [(0, 2)])
        let map = try load("0 256 snapshot O COW N 8", cow: cow)
        #expect(extents(map).map(summary) == ["0 256 data O-256+0.img 0"])
    }

    @Test func anInvalidatedSnapshotFailsEveryReadButAMergingOneReadsTheOrigin() throws {
        let cow = folder.file("cow.img")
        makeCOW(cow, sectors: 128, chunk: 8, exceptions: [(0, 2)], valid: 0)
        #expect(extents(try load("0 256 snapshot O COW P 8", cow: cow)).map(summary) == ["0 256 error"])
        #expect(extents(try load("0 256 snapshot-merge O COW P 8", cow: cow)).map(summary) == ["0 256 data O-256+0.img 0"])
    }

    @Test func snapshotMergeReadsLikeTheSnapshotAndRefusesWrites() throws {
        let cow = folder.file("cow.img")
        makeCOW(cow, sectors: 128, chunk: 8, exceptions: [(1, 2)])
        // A copy of the origin: were the refusal to fail, the shared image must not be written.
        let o = folder.file("O.img")
        try FileManager.default.copyItem(atPath: origin, toPath: o)
        let map = SectorMap(top: try loadTables("0 256 snapshot-merge O COW P 8", devices: ["O": o, "COW": cow]).top)
        #expect(extents(map).map(summary) == ["0 8 data O.img 0", "8 8 data cow.img 16", "16 240 data O.img 16"])
        let payload = folder.write("p.img", String(repeating: "x", count: 512))
        let before = sha256(file: cow)
        let error = failure { _ = try scatterFile(map, input: payload) }
        #expect(error?.description.contains("snapshot-merge") == true, "\(String(describing: error))")
        #expect(error?.exitStatus == .dataError)
        #expect(sha256(file: cow) == before)
        #expect(readBytes(o) == readBytes(origin))
    }

    @Test func theCOWHeadersChunkSizeOverridesTheTables() throws {
        // The kernel warns "chunk size 16 in device metadata overrides table chunk size of 8" and uses 16.
        let cow = folder.file("cow.img")
        makeCOW(cow, sectors: 256, chunk: 16, exceptions: [(1, 2)])
        let loaded = try loadTables("0 256 snapshot O COW P 8", devices: ["O": origin, "COW": cow])
        let target = try #require(loaded.top.segments[0].target as? SnapshotTarget)
        #expect(target.chunkSize == 16)
        #expect(target.store?.overriddenTableChunkSize == 8)
        #expect(target.tableArguments == "O COW P 16")
        #expect(extents(SectorMap(top: loaded.top)).map(summary) == ["0 16 data O-256+0.img 0", "16 16 data cow.img 32", "32 224 data O-256+0.img 32"])
    }

    @Test func anOnDiskChunkSizeThatIsNotAPowerOfTwoIsRefused() {
        let cow = folder.file("cow.img")
        makeCOW(cow, sectors: 128, chunk: 8, exceptions: [], headerChunk: 12)
        let error = loadError("0 256 snapshot O COW P 8", devices: ["O": origin, "COW": cow])
        #expect(error?.description == "t.table:1: snapshot: Failed to read snapshot metadata: COW: invalid on-disk chunk size 12 in the COW header (chunk 0): not a power of two below 2^22 sectors")
        #expect(error?.exitStatus == .dataError)
    }

    @Test func aCOWWithAnotherMagicIsRefusedAndThinMetadataIsNamed() throws {
        let cow = folder.file("cow.img")
        makeCOW(cow, sectors: 128, chunk: 8, exceptions: [], magic: 0x1234_5678)
        #expect(loadError("0 256 snapshot O COW P 8", devices: ["O": origin, "COW": cow])?.description
            == "t.table:1: snapshot: Failed to read snapshot metadata: COW: Invalid or corrupt snapshot: the COW header (chunk 0) has magic 0x12345678, not 0x70416e53 (\"SnAp\"), nor 0 (a new store)")
        let meta = folder.file("meta.img")
        var bytes = [UInt8](repeating: 0, count: 64 * 512)
        putLE32(&bytes, 0, 0xdead_beef)
        putLE64(&bytes, 32, ThinPoolMetadata.magic)
        _ = FileManager.default.createFile(atPath: meta, contents: Data(bytes))
        let error = loadError("0 256 snapshot O COW P 8", devices: ["O": origin, "COW": meta])
        #expect(error?.description.hasSuffix("; it looks like thin-pool metadata") == true, "\(String(describing: error))")
    }

    @Test func anUnknownDiskVersionIsRefused() {
        let cow = folder.file("cow.img")
        makeCOW(cow, sectors: 128, chunk: 8, exceptions: [], version: 2)
        #expect(loadError("0 256 snapshot O COW P 8", devices: ["O": origin, "COW": cow])?.description
            == "t.table:1: snapshot: Failed to read snapshot metadata: COW: unable to handle snapshot disk version 2 (COW header, chunk 0): only version 1 exists")
    }

    @Test func anExceptionPastTheEndOfTheCOWIsRefusedNamingTheAreaAndEntry() {
        let cow = folder.file("cow.img")
        makeCOW(cow, sectors: 128, chunk: 8, exceptions: [(0, 2), (1, 99)])
        #expect(loadError("0 256 snapshot O COW P 8", devices: ["O": origin, "COW": cow])?.description
            == "t.table:1: snapshot: Failed to read snapshot metadata: COW: COW metadata area 0 (chunk 1), entry 1: origin chunk 1 is mapped to COW chunk 99, past the end of the COW device (16 chunks of 8 sectors)")
    }

    @Test func aFullLastAreaWhoseSuccessorLiesPastTheCOWIsRefused() {
        // Chunk 1: 32 exceptions fill area 0; area 1 would be at chunk 34, past a 34-chunk COW.
        let cow = folder.file("cow.img")
        makeCOW(cow, sectors: 34, chunk: 1, exceptions: (0..<32).map { (UInt64($0), UInt64($0) + 2) })
        let error = loadError("0 256 snapshot O COW P 1", devices: ["O": origin, "COW": cow])
        #expect(error?.description.hasPrefix("t.table:1: snapshot: Failed to read snapshot metadata: COW: COW metadata area 1 (chunk 34): ") == true,
                "\(String(describing: error))")
        #expect(error?.exitStatus == .ioError)
    }

    @Test(arguments: [
        ("0 256 snapshot O COW P", "t.table:1: snapshot: requires 4 or more arguments: <origin> <COW> <P|PO|N> <chunk_sectors> [<#features> <feature>…], got 3"),
        ("0 256 snapshot O COW X 8", "t.table:1: snapshot: Couldn't create exception store: Exception store type is not P or N: `X`"),
        ("0 256 snapshot O COW PX 8", "t.table:1: snapshot: Couldn't create exception store: Unsupported persistent store option: X"),
        ("0 256 snapshot O COW P 12", "t.table:1: snapshot: Couldn't create exception store: Chunk size is not a power of 2: 12"),
        ("0 256 snapshot O O P 8", "t.table:1: snapshot: COW device cannot be the same as origin device: both are `O`"),
        ("0 256 snapshot O COW N 0", "t.table:1: snapshot: Chunk size not set: a transient store needs a chunk size in the table"),
        ("0 256 snapshot O COW P 8 1 bogus", "t.table:1: snapshot: Unrecognised feature requested: `bogus`"),
        ("0 256 snapshot-merge O COW N 8", "t.table:1: snapshot-merge: Couldn't create exception store: snapshot-merge needs a persistent store (P or PO), not N"),
        ("0 256 snapshot-origin O X", "t.table:1: snapshot-origin: origin: incorrect number of arguments: snapshot-origin takes 1 argument (<origin>), got 2"),
        ("0 512 snapshot-origin O", "t.table:1: snapshot-origin: too small for target: O (ORIGIN): start=0, len=512, dev_size=256 (the segment needs sectors 0+512 of a 256-sector device)"),
    ])
    func badSnapshotTablesAreRefusedWithTheKernelsPhrase(_ table: String, _ expected: String) {
        let cow = folder.sparseImage("cow.img", sectors: 64)
        let error = loadError(table, devices: ["O": origin, "COW": cow])
        #expect(error?.description == expected.replacingOccurrences(of: "(ORIGIN)", with: "(\(origin))"))
        #expect(error?.exitStatus == .dataError)
    }

    @Test func snapshotTargetsMapByTheAbsoluteSectorAsTheKernelDoes() throws {
        // snapshot_map and origin_map never subtract the segment start: a segment at 64 reads origin 64.
        let cow = folder.sparseImage("cow.img", sectors: 64)
        let map = try load("0 64 zero\n64 64 snapshot-origin O\n128 64 snapshot O COW P 8", cow: cow)
        #expect(extents(map).map(summary) == ["0 64 zero", "64 64 data O-256+0.img 64", "128 64 data O-256+0.img 128"])
    }

    // MARK: writes

    /// Writes `payload` at `seek` through `table` into copies of O and a COW, then checks: the snapshot
    /// reads the origin with the payload laid over it, the origin is untouched, and a fresh load of the
    /// COW (its metadata read back) reads the same.
    func roundTrip(store: String, chunk: UInt64, seek: UInt64, bytes count: Int, seed: UInt64) throws {
        let o = folder.file("O-\(seed).img")
        try FileManager.default.copyItem(atPath: origin, toPath: o)
        let cow = folder.sparseImage("cow-\(seed).img", sectors: 2048)
        var rng = SplitMix64(seed: seed)
        let payload = rng.bytes(count)
        let input = folder.file("in-\(seed).img")
        _ = FileManager.default.createFile(atPath: input, contents: Data(payload))
        let table = "0 256 snapshot O COW \(store) \(chunk)"
        let map = SectorMap(top: try loadTables(table, devices: ["O": o, "COW": cow]).top)
        _ = try scatterFile(map, input: input, .init(seek: Sector(seek)))
        var expected = readBytes(origin)
        let start = Int(seek) * 512
        expected.replaceSubrange(start..<start + count, with: payload)
        #expect(readBytes(o) == readBytes(origin), "the origin is untouched")
        #expect(try readAll(map) == expected, "the same map after the write")
        if store != "N" {
            let again = SectorMap(top: try loadTables(table, devices: ["O": o, "COW": cow]).top)
            #expect(try readAll(again) == expected, "the COW read back from disk")
        }
    }

    @Test(arguments: 0..<12)
    func writesThroughASnapshotReadBackAsTheOriginWithThePayloadOverIt(_ seed: Int) throws {
        var rng = SplitMix64(seed: UInt64(seed) &+ 77)
        let chunk = [1, 2, 8, 16][seed % 4] as UInt64
        let seek = UInt64.random(in: 0..<200, using: &rng)
        let count = Int.random(in: 1...Int((256 - seek) * 512), using: &rng)
        try roundTrip(store: seed % 3 == 0 ? "N" : (seed % 3 == 1 ? "P" : "PO"), chunk: chunk, seek: seek, bytes: count, seed: UInt64(seed))
    }

    @Test func aSecondWriteReusesTheExceptionsOfTheFirst() throws {
        let o = folder.file("O.img")
        try FileManager.default.copyItem(atPath: origin, toPath: o)
        let cow = folder.sparseImage("cow.img", sectors: 256)
        let table = "0 256 snapshot O COW P 8"
        let first = folder.write("a.img", String(repeating: "a", count: 4096))
        let second = folder.write("b.img", String(repeating: "b", count: 512))
        _ = try scatterFile(SectorMap(top: try loadTables(table, devices: ["O": o, "COW": cow]).top), input: first, .init(seek: Sector(8)))
        let map = SectorMap(top: try loadTables(table, devices: ["O": o, "COW": cow]).top)
        _ = try scatterFile(map, input: second, .init(seek: Sector(9)))
        let target = try #require(map.top.segments[0].target as? SnapshotTarget)
        #expect(target.state.current.0.oldChunks == [1])
        #expect(target.state.current.0.newChunks == [2])
        let bytes = try readAll(map)
        #expect(bytes[8 * 512] == UInt8(ascii: "a") && bytes[9 * 512] == UInt8(ascii: "b") && bytes[10 * 512] == UInt8(ascii: "a"))
    }

    @Test func aWriteThatWouldOverflowTheCOWIsRefusedBeforeAnythingIsWritten() throws {
        let o = folder.file("O.img")
        try FileManager.default.copyItem(atPath: origin, toPath: o)
        // 8 chunks of 8: header, area 0, room for 6 exceptions; the write needs 10.
        let cow = folder.sparseImage("cow.img", sectors: 64)
        let input = folder.write("in.img", String(repeating: "z", count: 80 * 512))
        let map = SectorMap(top: try loadTables("0 256 snapshot O COW P 8", devices: ["O": o, "COW": cow]).top)
        let error = failure { _ = try scatterFile(map, input: input) }
        #expect(error?.description == "snapshot O COW: the write needs 10 new exceptions of 8 sectors in the COW \(cow), which has room for 6: the kernel would overflow (invalidate) the snapshot; refused, nothing was written")
        #expect(readBytes(cow).allSatisfy { $0 == 0 })
        #expect(readBytes(o) == readBytes(origin))
    }

    @Test func writesThroughTheOriginCopyTheOldChunksIntoEverySnapshot() throws {
        let o = folder.file("O.img")
        try FileManager.default.copyItem(atPath: origin, toPath: o)
        let cow1 = folder.sparseImage("cow1.img", sectors: 512)
        let cow2 = folder.sparseImage("cow2.img", sectors: 512)
        let input = folder.write("in.img", String(repeating: "n", count: 20 * 512))
        let lower = [("S1", "0 256 snapshot O C1 P 8"), ("S2", "0 256 snapshot O C2 N 16")]
        let loaded = try loadTables("0 256 snapshot-origin O", lower: lower, devices: ["O": o, "C1": cow1, "C2": cow2], exactBindings: true)
        _ = try scatterFile(SectorMap(top: loaded.top), input: input, .init(seek: Sector(30)))
        var written = readBytes(origin)
        written.replaceSubrange(30 * 512..<50 * 512, with: [UInt8](repeating: UInt8(ascii: "n"), count: 20 * 512))
        #expect(readBytes(o) == written)
        // Both snapshots still read the old origin.
        for name in ["S1", "S2"] {
            #expect(try readAll(SectorMap(top: loaded.devices[name]!)) == readBytes(origin), "snapshot \(name)")
        }
        let s1 = try loadTables("0 256 snapshot O C1 P 8", devices: ["O": o, "C1": cow1])
        #expect(try readAll(SectorMap(top: s1.top)) == readBytes(origin), "S1's COW read back from disk")
    }
}
