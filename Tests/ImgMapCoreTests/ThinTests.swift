import Foundation
import Testing

@testable import ImgMapCore

// thin-pool and thin: pools built by thin-provisioning-tools' `thin_restore` from random XML, whose
// mappings imgmap must read exactly as `thin_dump` prints them; corrupted metadata (checksums, loops,
// out-of-range blocks, foreign formats) refused with the structure and block named.

/// Runs a shell command; its stdout, or nil with the status and stderr recorded as an issue.
@discardableResult
func shell(_ command: String, _ arguments: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) -> String? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command, "sh"] + arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try! process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errors = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        Issue.record("`\(command)` exited \(process.terminationStatus): \(String(decoding: errors, as: UTF8.self))", sourceLocation: sourceLocation)
        return nil
    }
    return String(decoding: data, as: UTF8.self)
}

let thinToolsPresent = FileManager.default.isExecutableFile(atPath: "/usr/sbin/thin_restore")
    || (try? FileManager.default.contentsOfDirectory(atPath: "/usr/bin"))?.contains("thin_restore") == true

/// A pool description: devices with their (virtual block → data block) mappings.
struct ThinPoolSpec {
    var blockSize: UInt64 = 128
    var dataBlocks: UInt64
    var devices: [UInt64: [UInt64: UInt64]]

    var xml: String {
        var text = "<superblock uuid=\"\" time=\"1\" transaction=\"1\" flags=\"0\" version=\"2\" data_block_size=\"\(blockSize)\" nr_data_blocks=\"\(dataBlocks)\">\n"
        for (id, map) in devices.sorted(by: { $0.key < $1.key }) {
            text += "  <device dev_id=\"\(id)\" mapped_blocks=\"\(map.count)\" transaction=\"0\" creation_time=\"0\" snap_time=\"0\">\n"
            for (v, d) in map.sorted(by: { $0.key < $1.key }) {
                text += "    <single_mapping origin_block=\"\(v)\" data_block=\"\(d)\" time=\"0\"/>\n"
            }
            text += "  </device>\n"
        }
        return text + "</superblock>\n"
    }

    /// Random devices: the first maps random virtual blocks to random distinct data blocks, in runs
    /// and singles; each later one is a "snapshot" sharing a part of the first's blocks, plus its own.
    static func random(seed: UInt64, devices count: Int, mappings: Int, virtualBlocks: UInt64) -> ThinPoolSpec {
        var rng = SplitMix64(seed: seed)
        let dataBlocks = UInt64(mappings * 2 + 64)
        var free = Array(0..<dataBlocks).shuffled(using: &rng)
        var first: [UInt64: UInt64] = [:]
        while first.count < mappings {
            let v = UInt64.random(in: 0..<virtualBlocks, using: &rng)
            let run = Bool.random(using: &rng) ? UInt64.random(in: 1...8, using: &rng) : 1
            let d = free.removeLast()
            for k in 0..<run where v + k < virtualBlocks && first[v + k] == nil && first.count < mappings {
                // Runs take consecutive data blocks when they are free, so range mappings appear too.
                if k == 0 { first[v] = d } else if let at = free.firstIndex(of: d + k) { free.remove(at: at); first[v + k] = d + k }
            }
        }
        var devices: [UInt64: [UInt64: UInt64]] = [1: first]
        for n in 1..<count {
            var snap = first.filter { _ in Bool.random(using: &rng) }
            for _ in 0..<(mappings / 10) where !free.isEmpty {
                snap[UInt64.random(in: 0..<virtualBlocks, using: &rng)] = free.removeLast()
            }
            devices[UInt64(n * 7 + 1)] = snap
        }
        return ThinPoolSpec(dataBlocks: dataBlocks, devices: devices)
    }

    /// Builds the metadata image with thin_restore.
    func restore(into folder: TemporaryDirectory, name: String = "meta.img", sectors: UInt64 = 16384) -> String {
        let xmlPath = folder.write("\(name).xml", xml)
        let meta = folder.sparseImage(name, sectors: sectors)
        shell("thin_restore -i \"$1\" -o \"$2\"", [xmlPath, meta])
        return meta
    }
}

/// The (virtual → data) mappings of each device in `thin_dump`'s XML.
func parseThinDump(_ xml: String) -> [UInt64: [UInt64: UInt64]] {
    func attribute(_ line: Substring, _ name: String) -> UInt64 {
        let start = line.range(of: " \(name)=\"")!.upperBound
        return UInt64(line[start...].prefix { $0 != "\"" })!
    }
    var devices: [UInt64: [UInt64: UInt64]] = [:]
    var current: UInt64 = 0
    for line in xml.split(separator: "\n") {
        if line.contains("<device ") {
            current = attribute(line, "dev_id")
            devices[current] = [:]
        } else if line.contains("<single_mapping ") {
            devices[current]![attribute(line, "origin_block")] = attribute(line, "data_block")
        } else if line.contains("<range_mapping ") {
            let (o, d, n) = (attribute(line, "origin_begin"), attribute(line, "data_begin"), attribute(line, "length"))
            for k in 0..<n { devices[current]![o + k] = d + k }
        }
    }
    return devices
}

/// Rewrites the checksum of a btree node (or, with `xor` 160774, the superblock) after an edit.
func resealBlock(_ bytes: inout [UInt8], block: Int, xor: UInt32 = 121_107) {
    let base = block * 4096
    let csum = bytes[base + 4..<base + 4096].withUnsafeBytes { CRC32C.blockChecksum($0, xor: xor) }
    putLE32(&bytes, base, csum)
}

@Suite(.enabled(if: thinToolsPresent, "thin-provisioning-tools (thin_restore, thin_dump) are not installed: `apt-get install thin-provisioning-tools`"))
struct ThinTests {
    let folder = TemporaryDirectory()

    func load(pool: String, thin: String, meta: String, data: String, origin: String? = nil) throws -> TableLoader.Loaded {
        var devices = ["META": meta, "DATA": data]
        if let origin { devices["EXT"] = origin }
        return try loadTables(thin, lower: [("POOL", pool)], devices: devices.filter { named($0.key, in: pool, thin) })
    }

    /// The data block (or nil) each virtual block of `map` reads, from its extents.
    func blockSources(_ map: SectorMap, blockSize: UInt64, data: String) -> [UInt64?] {
        var out = [UInt64?](repeating: nil, count: Int(map.size.value / blockSize))
        map.forEachExtent { e in
            guard case .data(let leaf, let offset) = e.source, leaf.path == data else { return }
            for s in stride(from: e.start.value, to: e.end.value, by: Int(blockSize)) {
                out[Int(s / blockSize)] = (offset.value + (s - e.start.value)) / blockSize
            }
        }
        return out
    }

    @Test func crc32cIsTheCastagnoliChecksum() {
        #expect(Array("123456789".utf8).withUnsafeBytes { CRC32C.checksum($0) } == 0xE306_9283)
    }

    @Test(arguments: 0..<4)
    func thinMappingsMatchThinDumpForRandomPoolsWithSharedBlocks(_ seed: Int) throws {
        let virtualBlocks: UInt64 = 6000
        let spec = ThinPoolSpec.random(seed: UInt64(seed) &+ 11, devices: 3, mappings: 2500 + 500 * seed, virtualBlocks: virtualBlocks)
        let meta = spec.restore(into: folder)
        let dumped = parseThinDump(try #require(shell("thin_dump \"$1\"", [meta])))
        #expect(dumped == spec.devices, "thin_dump gives back what thin_restore was given")
        let data = folder.sparseImage("data.img", sectors: spec.dataBlocks * spec.blockSize)
        let poolLength = spec.dataBlocks * spec.blockSize
        for (id, mappings) in dumped {
            let loaded = try load(pool: "0 \(poolLength) thin-pool META DATA 128 0", thin: "0 \(virtualBlocks * 128) thin POOL \(id)", meta: meta, data: data)
            let thin = try #require(loaded.top.segments[0].target as? ThinTarget)
            #expect(thin.mappings.blockCount == UInt64(mappings.count))
            let sources = blockSources(SectorMap(top: loaded.top), blockSize: 128, data: data)
            let expected = (0..<virtualBlocks).map { mappings[$0] }
            #expect(sources == expected, "device \(id)")
        }
    }

    @Test func readsComeFromTheDataBlocksAndUnmappedBlocksReadZeros() throws {
        let spec = ThinPoolSpec(dataBlocks: 16, devices: [3: [0: 5, 1: 6, 4: 0]])
        let meta = spec.restore(into: folder)
        let data = GoldenImages.path("T", sectors: 16 * 128)
        let loaded = try load(pool: "0 2048 thin-pool META DATA 128 0", thin: "0 800 thin POOL 3", meta: meta, data: data)
        let map = SectorMap(top: loaded.top)
        #expect(extents(map).map(summary) == ["0 256 data T-2048+0.img 640", "256 256 zero", "512 128 data T-2048+0.img 0", "640 160 zero"])
        // Provenance: the thin line, with the pool's data device.
        #expect(extents(map)[0].origin == Origin(table: "t.table", line: 1, target: "thin", device: "DATA"))
        #expect(extents(map)[1].origin == Origin(table: "t.table", line: 1, target: "thin", device: nil))
        // Reading the pool device reads the data device.
        #expect(extents(SectorMap(top: loaded.devices["POOL"]!)).map(summary) == ["0 2048 data T-2048+0.img 0"])
    }

    @Test func anExternalOriginFillsUnmappedBlocksAndPastItsEndAReadOnlyPoolFails() throws {
        let spec = ThinPoolSpec(dataBlocks: 8, devices: [0: [1: 2]])
        let meta = spec.restore(into: folder)
        let data = GoldenImages.path("T", sectors: 8 * 128)
        let ext = GoldenImages.path("E", sectors: 300)
        let writable = try load(pool: "0 1024 thin-pool META DATA 128 0", thin: "0 512 thin POOL 0 EXT", meta: meta, data: data, origin: ext)
        #expect(extents(SectorMap(top: writable.top)).map(summary) == ["0 128 data E-300+0.img 0", "128 128 data T-1024+0.img 256", "256 44 data E-300+0.img 256", "300 212 zero"])
        let readOnly = try load(pool: "0 1024 thin-pool META DATA 128 0 1 read_only", thin: "0 512 thin POOL 0 EXT", meta: meta, data: data, origin: ext)
        #expect(extents(SectorMap(top: readOnly.top)).map(summary).last == "300 212 error")
        #expect((readOnly.devices["POOL"]!.segments[0].target as? ThinPoolTarget)?.tableArguments == "META DATA 128 0 1 read_only ")
    }

    @Test func aZeroedMetadataDeviceIsANewPoolWithoutDevices() {
        let meta = folder.sparseImage("meta.img", sectors: 2048)
        let data = folder.sparseImage("data.img", sectors: 1024)
        let error = failure { _ = try load(pool: "0 1024 thin-pool META DATA 128 0", thin: "0 128 thin POOL 0", meta: meta, data: data) }
        #expect(error?.description == "t.table:1: thin: Couldn't open thin internal device: pool POOL has no thin device 0 (its metadata is new: no devices)")
        #expect(readBytes(meta).allSatisfy { $0 == 0 }, "imgmap does not format it")
    }

    @Test func aMissingDeviceIdIsRefusedNamingTheKnownOnes() {
        let meta = ThinPoolSpec(dataBlocks: 8, devices: [0: [:], 5: [1: 1]]).restore(into: folder)
        let data = folder.sparseImage("data.img", sectors: 1024)
        let error = failure { _ = try load(pool: "0 1024 thin-pool META DATA 128 0", thin: "0 128 thin POOL 7", meta: meta, data: data) }
        #expect(error?.description == "t.table:1: thin: Couldn't open thin internal device: pool POOL has no thin device 7 (devices: 0, 5)")
        #expect(error?.exitStatus == .dataError)
    }

    /// A pool whose device 1 has enough scattered mappings for a two-level tree, its bytes, and the
    /// block of the device's mapping root.
    func twoLevelPool() throws -> (bytes: [UInt8], root: Int, meta: String, data: String) {
        var mappings: [UInt64: UInt64] = [:]
        for v in 0..<1000 as Range<UInt64> { mappings[v * 3] = 999 - v }
        let meta = ThinPoolSpec(dataBlocks: 1000, devices: [1: mappings]).restore(into: folder)
        let bytes = readBytes(meta)
        let top = Int(le64(bytes, 320))
        // The top level is a leaf with one entry: device 1 → its tree's root.
        let topMax = Int(le32(bytes, top * 4096 + 20))
        let root = Int(le64(bytes, top * 4096 + 32 + 8 * topMax))
        #expect(le32(bytes, root * 4096 + 4) == 1, "device 1's root is an internal node")
        return (bytes, root, meta, folder.sparseImage("data.img", sectors: 1000 * 128))
    }

    func loadError(_ bytes: [UInt8], data: String, blocks: UInt64 = 1000, id: UInt64 = 1) -> (any ImgMapFailure)? {
        let meta = folder.file("bad.img")
        _ = FileManager.default.createFile(atPath: meta, contents: Data(bytes))
        return failure { _ = try load(pool: "0 \(blocks * 128) thin-pool META DATA 128 0", thin: "0 1024 thin POOL \(id)", meta: meta, data: data) }
    }

    @Test func aBadNodeChecksumIsRefusedNamingTheTreeAndBlock() throws {
        var (bytes, root, _, data) = try twoLevelPool()
        bytes[root * 4096 + 100] ^= 1
        let error = loadError(bytes, data: data)
        #expect(error?.description.hasPrefix("t.table:1: thin: Error creating metadata object: mapping tree of thin device 1 of thin-pool metadata META, btree node at metadata block \(root): bad checksum: stored 0x") == true,
                "\(String(describing: error))")
        #expect(error?.exitStatus == .dataError)
    }

    @Test func aBadSuperblockChecksumIsRefused() throws {
        var (bytes, _, _, data) = try twoLevelPool()
        bytes[400] ^= 1
        let error = loadError(bytes, data: data)
        #expect(error?.description.hasPrefix("lower POOL") == false)
        #expect(error?.description.contains("thin-pool: Error creating metadata object: superblock of thin-pool metadata META at metadata block 0: bad checksum") == true,
                "\(String(describing: error))")
    }

    @Test func aLoopInTheBtreeIsRefusedNotFollowed() throws {
        var (bytes, root, _, data) = try twoLevelPool()
        let max = Int(le32(bytes, root * 4096 + 20))
        putLE64(&bytes, root * 4096 + 32 + 8 * max + 8, UInt64(root))   // the second child is the root itself
        resealBlock(&bytes, block: root)
        let error = loadError(bytes, data: data)
        #expect(error?.description.hasSuffix("btree node at metadata block \(root): node met twice in one tree (child of node \(root)): the btree has a loop or shares a node with itself") == true,
                "\(String(describing: error))")
    }

    @Test func aChildPastTheMetadataDeviceIsRefused() throws {
        var (bytes, root, _, data) = try twoLevelPool()
        let max = Int(le32(bytes, root * 4096 + 20))
        putLE64(&bytes, root * 4096 + 32 + 8 * max, 1_000_000)
        resealBlock(&bytes, block: root)
        let error = loadError(bytes, data: data)
        #expect(error?.description.hasSuffix("btree node at metadata block \(root): child of node \(root) points to block 1000000, past the 2048 blocks of the metadata device") == true,
                "\(String(describing: error))")
    }

    @Test func aDataBlockPastThePoolIsRefusedNamingTheLeaf() throws {
        var (bytes, root, _, data) = try twoLevelPool()
        let max = Int(le32(bytes, root * 4096 + 20))
        let leaf = Int(le64(bytes, root * 4096 + 32 + 8 * max))
        let leafMax = Int(le32(bytes, leaf * 4096 + 20))
        putLE64(&bytes, leaf * 4096 + 32 + 8 * leafMax, 5000 << 24)
        resealBlock(&bytes, block: leaf)
        let error = loadError(bytes, data: data)
        #expect(error?.description == "t.table:1: thin: Couldn't open thin internal device: mapping tree of thin device 1 of thin-pool metadata META, leaf at metadata block \(leaf): virtual block 0 maps to data block 5000, past the pool's 1000 data blocks")
    }

    @Test func keysOutOfOrderAreRefused() throws {
        var (bytes, root, _, data) = try twoLevelPool()
        let max = Int(le32(bytes, root * 4096 + 20))
        let leaf = Int(le64(bytes, root * 4096 + 32 + 8 * max))
        putLE64(&bytes, leaf * 4096 + 32 + 8, 0)
        resealBlock(&bytes, block: leaf)
        let error = loadError(bytes, data: data)
        #expect(error?.description.hasSuffix("btree node at metadata block \(leaf): keys out of order: entry 1 has key 0 after 0") == true, "\(String(describing: error))")
    }

    @Test func metadataOfAnotherKindIsRefusedAndNamed() throws {
        let cow = folder.file("cow.img")
        makeCOW(cow, sectors: 2048, chunk: 8, exceptions: [])
        let data = folder.sparseImage("data.img", sectors: 1024)
        let error = failure { _ = try load(pool: "0 1024 thin-pool META DATA 128 0", thin: "0 128 thin POOL 0", meta: cow, data: data) }
        #expect(error?.description == "POOL.table:1: thin-pool: Error creating metadata object: superblock of thin-pool metadata META at metadata block 0: magic 0, not 27022010: not thin-pool metadata (it looks like a snapshot COW device (magic \"SnAp\"))")
    }

    @Test func aBlockSizeOtherThanTheMetadatasIsRefused() throws {
        let meta = ThinPoolSpec(dataBlocks: 8, devices: [0: [:]]).restore(into: folder)
        let data = folder.sparseImage("data.img", sectors: 2048)
        let error = failure { _ = try load(pool: "0 2048 thin-pool META DATA 256 0", thin: "0 128 thin POOL 0", meta: meta, data: data) }
        #expect(error?.description == "POOL.table:1: thin-pool: Error creating metadata object: superblock of thin-pool metadata META at metadata block 0: changing the data block size (from 128 to 256) is not supported: the table's block size must be the metadata's")
    }

    @Test(arguments: [
        ("0 1024 thin-pool META DATA 128", "Invalid argument count"),
        ("0 1024 thin-pool META META 128 0", "Error setting metadata or data device"),
        ("0 1024 thin-pool META DATA 100 0", "Invalid block size"),
        ("0 1024 thin-pool META DATA 128 x", "Invalid low water mark"),
        ("0 1024 thin-pool META DATA 128 0 1 bogus", "Unrecognised pool feature requested"),
        ("0 1024 thin-pool META DATA 128 0 5 a b c d e", "Invalid number of pool feature arguments"),
        ("0 512 thin-pool META DATA 128 0", "pool target (4 blocks) too small: expected 8"),
    ])
    func badPoolTablesAreRefused(_ pool: String, _ phrase: String) throws {
        let meta = ThinPoolSpec(dataBlocks: 8, devices: [0: [:]]).restore(into: folder)
        let data = folder.sparseImage("data.img", sectors: 1024)
        let error = failure { _ = try load(pool: pool, thin: "0 128 thin POOL 0", meta: meta, data: data) }
        #expect(error?.description.hasPrefix("POOL.table:1: thin-pool: \(phrase)") == true, "\(String(describing: error))")
        #expect(error?.exitStatus == .dataError)
    }

    @Test(arguments: [
        ("0 128 thin POOL", "Invalid argument count"),
        ("0 128 thin POOL 16777216", "Invalid device id"),
        ("0 128 thin DATA 0", "Couldn't get pool mapped device"),
        ("0 128 thin POOL 0 POOL", "Error setting origin device"),
    ])
    func badThinTablesAreRefused(_ thin: String, _ phrase: String) throws {
        let meta = ThinPoolSpec(dataBlocks: 8, devices: [0: [:]]).restore(into: folder)
        let data = folder.sparseImage("data.img", sectors: 1024)
        let error = failure { _ = try load(pool: "0 1024 thin-pool META DATA 128 0", thin: thin, meta: meta, data: data) }
        #expect(error?.description.hasPrefix("t.table:1: thin: \(phrase)") == true, "\(String(describing: error))")
    }

    @Test func writesThroughThinAreRefusedBeforeAnythingIsWritten() throws {
        let meta = ThinPoolSpec(dataBlocks: 8, devices: [0: [0: 1]]).restore(into: folder)
        let data = folder.sparseImage("data.img", sectors: 1024)
        let loaded = try load(pool: "0 1024 thin-pool META DATA 128 0", thin: "0 256 thin POOL 0", meta: meta, data: data)
        let before = (sha256(file: meta), sha256(file: data))
        let input = folder.write("in.img", String(repeating: "w", count: 512))
        let error = failure { _ = try scatterFile(SectorMap(top: loaded.top), input: input) }
        #expect(error?.description == "t.table:1: thin: sectors 0+1 of device top cannot be written: writing through thin (which allocates data blocks and rewrites the pool's metadata btrees) is not supported; imgmap reads thin devices only; nothing was written")
        #expect(error?.exitStatus == .dataError)
        #expect((sha256(file: meta), sha256(file: data)) == before)
    }

    @Test func aMillionScatteredMappingsAreHeldAsRunsAndMapByBisection() throws {
        // Not a timing test: the structure that keeps it fast. 100,000 mappings at every other block.
        var mappings = ThinMappings()
        for v in 0..<100_000 as Range<UInt64> { mappings.append(virtual: v * 2, data: v) }
        #expect(mappings.runCount == 100_000)
        #expect(mappings.dataBlock(for: 77_776) == 38_888)
        #expect(mappings.dataBlock(for: 77_777) == nil)
        var sequential = ThinMappings()
        for v in 0..<100_000 as Range<UInt64> { sequential.append(virtual: v, data: v + 10) }
        #expect(sequential.runCount == 1)
    }
}
