import Foundation
import Testing

@testable import ImgMapCore

// cache: the kernel's reads of caches with clean and dirty blocks (metadata formats 1 and 2,
// passthrough, an unclean shutdown), kept in Fixtures/cache; the kernel's constructor phrases; and
// corrupted metadata (checksums, magic, loops, blocks out of range) refused with the structure and
// block named.

let cacheToolsPresent = FileManager.default.isExecutableFile(atPath: "/usr/sbin/cache_restore")
    || FileManager.default.isExecutableFile(atPath: "/usr/bin/cache_restore")

/// One vector of Fixtures/cache.
struct CacheKernelCase: CustomTestStringConvertible, Sendable {
    let name: String
    var testDescription: String { name }

    static let root = fixturesURL.appendingPathComponent("cache")
    static let all = ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? [])
        .filter { !$0.hasSuffix(".md") }.sorted().map(CacheKernelCase.init)

    var json: [String: Any] {
        let data = FileManager.default.contents(atPath: Self.root.appendingPathComponent(name).appendingPathComponent("case.json").path)!
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    var metadata: String {
        GoldenImages.unpacked(Self.root.appendingPathComponent(name).appendingPathComponent("meta.img.gz").path,
                              sha256: json["metadata_sha256"] as? String)
    }

    func load() throws -> TableLoader.Loaded {
        try loadTables(json["table"] as! String,
                       devices: ["MD": metadata, "CD": GoldenImages.path("C", sectors: 1024), "OD": GoldenImages.path("O", sectors: 2048)])
    }
}

/// A cache description for cache_restore.
struct CacheSpec {
    var blockSize: UInt64 = 128
    var cacheBlocks: UInt64
    /// cache block → (origin block, dirty)
    var mappings: [UInt64: (UInt64, Bool)]

    var xml: String {
        var text = "<superblock uuid=\"\" block_size=\"\(blockSize)\" nr_cache_blocks=\"\(cacheBlocks)\" policy=\"smq\" hint_width=\"4\">\n  <mappings>\n"
        for (c, (o, dirty)) in mappings.sorted(by: { $0.key < $1.key }) {
            text += "    <mapping cache_block=\"\(c)\" origin_block=\"\(o)\" dirty=\"\(dirty)\"/>\n"
        }
        return text + "  </mappings>\n</superblock>\n"
    }

    func restore(into folder: TemporaryDirectory, version: Int, name: String = "meta.img", sectors: UInt64 = 2048) -> String {
        let xmlPath = folder.write("\(name).xml", xml)
        let meta = folder.sparseImage(name, sectors: sectors)
        shell("cache_restore -i \"$1\" -o \"$2\" --metadata-version \(version)", [xmlPath, meta])
        return meta
    }
}

/// The 64 KiB blocks of `bytes` as the fixtures name them: `O` for the origin's same block, `C<n>` for
/// block n of the cache image.
func cacheBlockNames(_ bytes: [UInt8], origin: [UInt8], cache: [UInt8]) -> String {
    let bs = 65536
    return (0..<bytes.count / bs).map { b -> String in
        let block = bytes[b * bs..<(b + 1) * bs]
        if block.elementsEqual(origin[b * bs..<(b + 1) * bs]) { return "O" }
        if let c = (0..<cache.count / bs).first(where: { block.elementsEqual(cache[$0 * bs..<($0 + 1) * bs]) }) { return "C\(c)" }
        return "?"
    }.joined(separator: " ")
}

@Suite struct CacheKernelTests {
    @Test(arguments: CacheKernelCase.all)
    func readsAreTheKernels(_ c: CacheKernelCase) throws {
        let json = c.json
        if let rejected = json["rejected"] as? [String] {
            let error = failure { _ = try c.load() }
            // The kernel's resume message, which imgmap gives with the constructor's.
            let phrase = "cannot enter passthrough mode unless all blocks are clean"
            #expect(rejected.contains { $0.contains(phrase) })
            #expect(error?.description == "t.table:1: cache: could not load cache mappings: cache metadata MD: \(phrase) (cache block 2 is dirty)")
            #expect(error?.exitStatus == .dataError)
            return
        }
        let loaded = try c.load()
        let bytes = try readAll(SectorMap(top: loaded.top))
        #expect(sha256(bytes) == json["kernel_read_sha256"] as? String)
        let names = cacheBlockNames(bytes, origin: GoldenImages.bytes("O", sectors: 2048), cache: GoldenImages.bytes("C", sectors: 1024))
        #expect(names == json["kernel_64k_blocks"] as? String)
        // The cache line as the kernel prints it back.
        let line = loaded.top.segments.last!
        #expect("\(line.start) \(line.length) \(line.target.name) \(line.target.tableArguments)"
                == (json["kernel_table"] as? String)?.split(separator: "\n").last.map(String.init))
        #expect(sha256(file: c.metadata) == json["metadata_sha256"] as? String, "reading does not write the metadata")
    }

    @Test func theMapShowsCacheBlocksAndOriginRangesWithTheLine() throws {
        let loaded = try CacheKernelCase(name: "v1-writeback-clean-and-dirty").load()
        let map = SectorMap(top: loaded.top)
        #expect(extents(map).map(summary) == [
            "0 128 data O-2048+0.img 0", "128 128 data C-1024+0.img 384", "256 384 data O-2048+0.img 256",
            "640 128 data C-1024+0.img 0", "768 768 data O-2048+0.img 768", "1536 128 data C-1024+0.img 768",
            "1664 256 data O-2048+0.img 1664", "1920 128 data C-1024+0.img 256",
        ])
        #expect(extents(map)[1].origin == Origin(table: "t.table", line: 1, target: "cache", device: "CD"))
        #expect(extents(map)[0].origin == Origin(table: "t.table", line: 1, target: "cache", device: "OD"))
        let cache = try #require(loaded.top.segments[0].target as? CacheTarget)
        #expect(cache.dirtyBlocks == 2)
        #expect(cache.metadata?.version == 1)
    }

    @Test func formatTwoTakesDirtyBitsFromTheBitsetAndAnUncleanShutdownMakesEveryBlockDirty() throws {
        let v2 = try #require(try CacheKernelCase(name: "v2-writethrough-at-an-offset").load().top.segments[1].target as? CacheTarget)
        #expect(v2.metadata?.version == 2)
        #expect(v2.metadata?.mappings.map { "\($0.cacheBlock)>\($0.originBlock)\($0.dirty ? "d" : "")" } == ["0>1", "1>5", "4>6d", "7>13"])
        // Origin block 13 lies past the segment's 12 blocks: dropped, as it is clean.
        #expect(v2.mappings.blockCount == 3)
        let unclean = try #require(try CacheKernelCase(name: "v1-unclean-shutdown-mq-tunables").load().top.segments[0].target as? CacheTarget)
        #expect(unclean.metadata?.cleanShutdown == false)
        #expect(unclean.dirtyBlocks == 3)
        #expect(unclean.ioMode == .writethrough)
    }
}

@Suite(.enabled(if: cacheToolsPresent, "thin-provisioning-tools (cache_restore) are not installed: `apt-get install thin-provisioning-tools`"))
struct CacheTests {
    let folder = TemporaryDirectory()
    let origin = GoldenImages.path("O", sectors: 2048)
    let cache = GoldenImages.path("C", sectors: 1024)

    func load(_ table: String, meta: String, cache: String? = nil) throws -> TableLoader.Loaded {
        try loadTables(table, devices: ["MD": meta, "CD": cache ?? self.cache, "OD": origin])
    }

    func loadError(_ bytes: [UInt8], table: String = "0 2048 cache MD CD OD 128 0 smq 0") -> (any ImgMapFailure)? {
        let meta = folder.file("bad.img")
        _ = FileManager.default.createFile(atPath: meta, contents: Data(bytes))
        return failure { _ = try load(table, meta: meta) }
    }

    static let small = CacheSpec(cacheBlocks: 8, mappings: [0: (5, false), 3: (1, true), 6: (12, false)])

    @Test func aZeroedMetadataDeviceIsANewCacheThatReadsTheOrigin() throws {
        let meta = folder.sparseImage("meta.img", sectors: 2048)
        let loaded = try load("0 2048 cache MD CD OD 128 1 metadata2 smq 0", meta: meta)
        #expect(extents(SectorMap(top: loaded.top)).map(summary) == ["0 2048 data O-2048+0.img 0"])
        #expect((loaded.top.segments[0].target as? CacheTarget)?.metadata?.isNew == true)
        #expect(readBytes(meta).allSatisfy { $0 == 0 }, "imgmap does not format it")
    }

    @Test(arguments: [1, 2])
    func bothFormatsReadTheSameMappings(_ version: Int) throws {
        let meta = Self.small.restore(into: folder, version: version)
        let target = try #require(try load("0 2048 cache MD CD OD 128 0 smq 0", meta: meta).top.segments[0].target as? CacheTarget)
        #expect(target.metadata?.mappings == [CacheMapping(cacheBlock: 0, originBlock: 5, dirty: false),
                                              CacheMapping(cacheBlock: 3, originBlock: 1, dirty: true),
                                              CacheMapping(cacheBlock: 6, originBlock: 12, dirty: false)])
        #expect(target.mappings.dataBlock(for: 12) == 6)
        #expect(target.mappings.dataBlock(for: 2) == nil)
    }

    @Test func passthroughReadsTheOriginEvenForCachedBlocks() throws {
        let meta = CacheSpec(cacheBlocks: 8, mappings: [0: (5, false)]).restore(into: folder, version: 1)
        let loaded = try load("0 2048 cache MD CD OD 128 1 passthrough smq 0", meta: meta)
        #expect(extents(SectorMap(top: loaded.top)).map(summary) == ["0 2048 data O-2048+0.img 0"])
    }

    @Test func aSmallerCacheDeviceDropsCleanBlocksAndRefusesToDropDirtyOnes() throws {
        // The cache device holds 4 blocks of 128 sectors; the metadata counts 8.
        let small = GoldenImages.path("C", sectors: 512)
        let clean = CacheSpec(cacheBlocks: 8, mappings: [0: (5, false), 6: (12, false)]).restore(into: folder, version: 1, name: "clean.img")
        let target = try #require(try load("0 2048 cache MD CD OD 128 0 smq 0", meta: clean, cache: small).top.segments[0].target as? CacheTarget)
        #expect(target.mappings.blockCount == 1)
        let dirty = CacheSpec(cacheBlocks: 8, mappings: [0: (5, false), 6: (12, true)]).restore(into: folder, version: 1, name: "dirty.img")
        let error = failure { _ = try load("0 2048 cache MD CD OD 128 0 smq 0", meta: dirty, cache: small) }
        #expect(error?.description == "t.table:1: cache: could not resize cache metadata: cache metadata MD: unable to shrink cache due to dirty blocks: the cache device holds 4 blocks, the metadata 8, and cache block 6 is dirty")
    }

    @Test func aDirtyBlockPastTheOriginIsRefused() throws {
        let meta = CacheSpec(cacheBlocks: 8, mappings: [2: (40, true)]).restore(into: folder, version: 2)
        let error = failure { _ = try load("0 2048 cache MD CD OD 128 0 smq 0", meta: meta) }
        #expect(error?.description == "t.table:1: cache: could not load cache mappings: cache metadata MD: unable to shrink origin; cache block 2 is dirty (it caches origin block 40, past the segment's 16 blocks)")
    }

    @Test func anOriginBlockCachedTwiceIsRefused() throws {
        let meta = CacheSpec(cacheBlocks: 8, mappings: [1: (4, false), 5: (4, false)]).restore(into: folder, version: 1)
        let error = failure { _ = try load("0 2048 cache MD CD OD 128 0 smq 0", meta: meta) }
        #expect(error?.description == "t.table:1: cache: could not load cache mappings: cache metadata MD, mapping array: origin block 4 is cached twice (cache blocks 1 and 5)")
    }

    @Test func aBadSuperblockChecksumIsRefused() {
        var bytes = readBytes(Self.small.restore(into: folder, version: 1))
        bytes[300] ^= 1
        let error = loadError(bytes)
        #expect(error?.description.hasPrefix("t.table:1: cache: Error creating metadata object: superblock of cache metadata MD at metadata block 0: bad checksum: stored 0x") == true,
                "\(String(describing: error))")
        #expect(error?.exitStatus == .dataError)
    }

    @Test func metadataOfAnotherKindIsRefusedAndNamed() {
        let thin = ThinPoolSpec(dataBlocks: 8, devices: [0: [:]]).restore(into: folder, name: "thin.img", sectors: 2048)
        let error = failure { _ = try load("0 2048 cache MD CD OD 128 0 smq 0", meta: thin) }
        #expect(error?.description == "t.table:1: cache: Error creating metadata object: superblock of cache metadata MD at metadata block 0: magic 27022010, not 1623043 (06142003 octal): not cache metadata (it looks like thin-pool metadata)")
    }

    @Test func thinPoolsNameCacheMetadataWhenGivenIt() {
        let meta = Self.small.restore(into: folder, version: 1)
        let data = folder.sparseImage("data.img", sectors: 1024)
        let error = failure {
            _ = try loadTables("0 128 thin POOL 0", lower: [("POOL", "0 1024 thin-pool META DATA 128 0")], devices: ["META": meta, "DATA": data])
        }
        #expect(error?.description.hasSuffix("not thin-pool metadata (it looks like dm-cache metadata)") == true, "\(String(describing: error))")
    }

    @Test func anUnknownVersionAndAnotherBlockSizeAreRefused() {
        var bytes = readBytes(Self.small.restore(into: folder, version: 1))
        putLE32(&bytes, 40, 3)
        resealBlock(&bytes, block: 0, xor: 9_031_977)
        #expect(loadError(bytes)?.description == "t.table:1: cache: Error creating metadata object: superblock of cache metadata MD at metadata block 0: Cache metadata version 3 found, but only versions between 1 and 2 supported")
        let other = loadError(readBytes(Self.small.restore(into: folder, version: 1, name: "m2.img")), table: "0 2048 cache MD CD OD 256 0 smq 0")
        #expect(other?.description == "t.table:1: cache: Error creating metadata object: superblock of cache metadata MD at metadata block 0: changing the data block size (from 128 to 256) is not supported: the table's block size must be the metadata's")
    }

    @Test func metadataThatNeedsCheckingIsRefused() {
        var bytes = readBytes(Self.small.restore(into: folder, version: 2))
        putLE32(&bytes, 4, le32(bytes, 4) | 2)
        resealBlock(&bytes, block: 0, xor: 9_031_977)
        #expect(loadError(bytes)?.description == "t.table:1: cache: Unable to get write access to metadata, please check/repair metadata.: cache metadata MD: the superblock's needs_check flag is set")
    }

    /// The block of the mapping array's first array block, and the bytes.
    func firstArrayBlock(version: Int = 1) -> (bytes: [UInt8], btree: Int, block: Int) {
        let bytes = readBytes(Self.small.restore(into: folder, version: version))
        let root = Int(le64(bytes, 192))
        let max = Int(le32(bytes, root * 4096 + 20))
        return (bytes, root, Int(le64(bytes, root * 4096 + 32 + 8 * max)))
    }

    @Test func aBadArrayBlockChecksumIsRefusedNamingTheArrayAndBlock() {
        var (bytes, _, block) = firstArrayBlock()
        bytes[block * 4096 + 200] ^= 1
        let error = loadError(bytes)
        #expect(error?.description.hasPrefix("t.table:1: cache: Error creating metadata object: mapping array of cache metadata MD, array block at metadata block \(block): bad checksum: stored 0x") == true,
                "\(String(describing: error))")
    }

    @Test func anArrayBlockPastTheMetadataDeviceIsRefused() {
        var (bytes, btree, _) = firstArrayBlock()
        let max = Int(le32(bytes, btree * 4096 + 20))
        putLE64(&bytes, btree * 4096 + 32 + 8 * max, 99_999)
        resealBlock(&bytes, block: btree)
        #expect(loadError(bytes)?.description == "t.table:1: cache: Error creating metadata object: mapping array (btree of array blocks) of cache metadata MD, btree node at metadata block \(btree): array block 0 is at block 99999, past the 256 blocks of the metadata device")
    }

    @Test func aCacheBlockCountPastTheArrayIsRefused() {
        var (bytes, _, _) = firstArrayBlock()
        putLE32(&bytes, 240, 5000)
        resealBlock(&bytes, block: 0, xor: 9_031_977)
        let error = loadError(bytes)
        #expect(error?.description.hasSuffix("the array holds 8 values, fewer than the 5000 the superblock counts") == true, "\(String(describing: error))")
    }

    @Test func aBadDirtyBitsetBlockIsRefusedNamingTheBitset() {
        var bytes = readBytes(Self.small.restore(into: folder, version: 2))
        let root = Int(le64(bytes, 284))
        let max = Int(le32(bytes, root * 4096 + 20))
        let block = Int(le64(bytes, root * 4096 + 32 + 8 * max))
        putLE64(&bytes, block * 4096 + 16, 3)  // the blocknr field
        PersistentDataTestSupport.resealArrayBlock(&bytes, block: block)
        #expect(loadError(bytes)?.description == "t.table:1: cache: Error creating metadata object: dirty bitset of cache metadata MD, array block at metadata block \(block): blocknr field says 3: the block was written elsewhere")
    }

    @Test func aLoopInTheArraysBtreeIsRefusedNotFollowed() throws {
        // 200,000 cache blocks need 393 array blocks: more than one btree leaf holds, so the root is internal.
        let meta = CacheSpec(blockSize: 64, cacheBlocks: 200_000, mappings: [0: (1, false)]).restore(into: folder, version: 1, sectors: 8192)
        var bytes = readBytes(meta)
        let root = Int(le64(bytes, 192))
        #expect(le32(bytes, root * 4096 + 4) == 1, "the array's btree root is an internal node")
        let max = Int(le32(bytes, root * 4096 + 20))
        putLE64(&bytes, root * 4096 + 32 + 8 * max + 8, UInt64(root))
        resealBlock(&bytes, block: root)
        let big = folder.sparseImage("big-cache.img", sectors: 200_000 * 64)
        let file = folder.file("loop.img")
        _ = FileManager.default.createFile(atPath: file, contents: Data(bytes))
        let error = failure { _ = try loadTables("0 2048 cache MD CD OD 64 0 smq 0", devices: ["MD": file, "CD": big, "OD": origin]) }
        #expect(error?.description.hasSuffix("mapping array (btree of array blocks) of cache metadata MD, btree node at metadata block \(root): node met twice in one tree (child of node \(root)): the btree has a loop or shares a node with itself") == true,
                "\(String(describing: error))")
    }

    @Test(arguments: [
        ("0 2048 cache MD CD OD", "Insufficient args"),
        ("0 2048 cache MD CD OD 100 0 smq 0", "Invalid data block size"),
        ("0 2048 cache MD CD OD 32 0 smq 0", "Invalid data block size"),
        ("0 2048 cache MD CD OD 2048 0 smq 0", "Data block size is larger than the cache device"),
        ("0 4096 cache MD CD OD 128 0 smq 0", "Device size larger than cached device"),
        ("0 2048 cache MD CD OD 128 4 a b c d smq 0", "Invalid number of cache feature arguments"),
        ("0 2048 cache MD CD OD 128 5 writeback smq 0", "Invalid number of cache feature arguments"),
        ("0 2048 cache MD CD OD 128 2 writeback smq 0", "Unrecognised cache feature requested"),
        ("0 2048 cache MD CD OD 128 1 writearound smq 0", "Unrecognised cache feature requested"),
        ("0 2048 cache MD CD OD 128 2 writeback passthrough smq 0", "Duplicate cache io_mode features requested"),
        ("0 2048 cache MD CD OD 128 0", "Insufficient args"),
        ("0 2048 cache MD CD OD 128 0 lru 0", "Error creating cache's policy"),
        ("0 2048 cache MD CD OD 128 0 smq 1 migration_threshold", "Error setting cache policy's config values"),
        ("0 2048 cache MD CD OD 128 0 smq 2 sequential_threshold 5", "Error setting cache policy's config values"),
        ("0 2048 cache MD CD OD 128 0 smq 2 migration_threshold x", "Error setting cache policy's config values"),
    ])
    func badTablesAreRefusedWithTheKernelsPhrase(_ table: String, _ phrase: String) {
        let meta = folder.sparseImage("meta.img", sectors: 2048)
        let error = failure { _ = try load(table, meta: meta) }
        #expect(error?.description.hasPrefix("t.table:1: cache: \(phrase)") == true, "\(String(describing: error))")
        #expect(error?.exitStatus == .dataError)
    }

    @Test func migrationThresholdAndMqTunablesAreAccepted() throws {
        let meta = folder.sparseImage("meta.img", sectors: 2048)
        _ = try load("0 2048 cache MD CD OD 128 0 cleaner 2 migration_threshold 4096", meta: meta)
        _ = try load("0 2048 cache MD CD OD 128 0 mq 4 read_promote_adjustment 4 Migration_Threshold 1", meta: meta)
    }

    @Test(arguments: ["writeback", "writethrough", "passthrough"])
    func writesThroughCacheAreRefusedBeforeAnythingIsWritten(_ mode: String) throws {
        let meta = CacheSpec(cacheBlocks: 8, mappings: [0: (0, false)]).restore(into: folder, version: 2)
        let cacheCopy = folder.file("cache.img")
        let originCopy = folder.file("origin.img")
        try FileManager.default.copyItem(atPath: cache, toPath: cacheCopy)
        try FileManager.default.copyItem(atPath: origin, toPath: originCopy)
        let loaded = try loadTables("0 2048 cache MD CD OD 128 1 \(mode) smq 0", devices: ["MD": meta, "CD": cacheCopy, "OD": originCopy])
        let before = (sha256(file: meta), sha256(file: cacheCopy), sha256(file: originCopy))
        let input = folder.write("in.img", String(repeating: "w", count: 512))
        let error = failure { _ = try scatterFile(SectorMap(top: loaded.top), input: input) }
        #expect(error?.description.hasPrefix("t.table:1: cache: sectors 0+1 of device top cannot be written: writing through cache in \(mode) mode") == true,
                "\(String(describing: error))")
        #expect(error?.description.hasSuffix("imgmap reads cache devices only; nothing was written") == true)
        #expect((sha256(file: meta), sha256(file: cacheCopy), sha256(file: originCopy)) == before)
    }
}

enum PersistentDataTestSupport {
    /// Rewrites an array block's checksum (xor 595846735) after an edit.
    static func resealArrayBlock(_ bytes: inout [UInt8], block: Int) {
        resealBlock(&bytes, block: block, xor: 595_846_735)
    }
}
