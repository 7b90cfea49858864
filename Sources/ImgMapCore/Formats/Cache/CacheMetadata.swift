// dm-cache's metadata device (the kernel's dm-cache-metadata.c), formats 1 and 2, in persistent-data
// 4 KiB blocks (Formats/PersistentData/BTree.swift), all little-endian:
//
//   block 0   superblock: csum (crc32c of bytes 4..<4096, xor 9031977), flags (bit 0 clean shutdown,
//             bit 1 needs check), blocknr (0), uuid, magic 06142003 octal (offset 32), version (40),
//             policy name (44, 16 bytes), policy hint size (60), the metadata space-map root (64, 128
//             bytes, starting with nr_blocks), the mapping root (192), hint root (200), discard root
//             (208), discard block size and count (216, 224), data block size (232, sectors), metadata
//             block size (236), cache blocks (240), compat/ro/incompat flags (244…), statistics,
//             policy version (272), and in format 2 the dirty bitset root (284)
//   mapping   a persistent-data array of LE64 values, one per cache block: origin block << 16 | flags
//             (1 valid, 2 dirty; the dirty flag counts in format 1 only)
//   dirty     format 2: a bitset with a bit per cache block
//
// What the kernel loads (dm_cache_load_mappings): each valid entry below the cache-block count; it is
// dirty by its flag or bit when the superblock says the cache was shut down cleanly, and dirty in any
// case otherwise. A superblock that is all zeros is a new cache (the kernel formats it; imgmap's readers
// never write). The hint array and the discard bitset do not change what a read returns; they are not
// read.

/// One valid entry of the mapping array, as the kernel loads it.
public struct CacheMapping: Sendable, Equatable {
    /// Block of the cache device holding the data.
    public var cacheBlock: UInt64
    /// Block of the origin it caches.
    public var originBlock: UInt64
    /// Dirty as the kernel treats it: the flag or bit, or every block after an unclean shutdown.
    public var dirty: Bool
}

/// A cache's metadata as the cache constructor reads it.
public final class CacheMetadata: Sendable {
    /// CACHE_SUPERBLOCK_MAGIC, written in octal in the kernel (06142003).
    public static let magic: UInt64 = 0o6142003
    static let superblockXor: UInt32 = 9_031_977
    static let validFlag: UInt64 = 1
    static let dirtyFlag: UInt64 = 2
    static let cleanShutdownFlag: UInt32 = 1
    static let needsCheckFlag: UInt32 = 2

    /// The metadata device as the table names it.
    public let token: String
    /// Whether the superblock was all zeros: a cache the kernel would format, with nothing cached.
    public let isNew: Bool
    /// Metadata format version (1, or 2 with the dirty bitset).
    public let version: UInt32
    /// Cache block size in sectors, as the superblock records it.
    public let blockSize: UInt64
    /// Cache blocks as the superblock counts them (the length of the mapping array).
    public let cacheBlocks: UInt64
    /// Whether the cache was shut down cleanly (else every cached block counts as dirty).
    public let cleanShutdown: Bool
    /// The superblock's needs_check flag (cache_check should run before the kernel uses it).
    public let needsCheck: Bool
    /// The replacement policy the metadata was written with (smq, mq, cleaner).
    public let policyName: String
    /// The valid entries, by cache block.
    public let mappings: [CacheMapping]
    /// Dirty as the metadata itself says (format 1: valid and flagged; format 2: the bit, for every
    /// cache block), one bit per cache block: what the kernel checks before it shrinks the cache.
    let storedDirty: [UInt64]

    /// Reads and checks the superblock, the mapping array and (format 2) the dirty bitset, in the
    /// kernel's order. `blockSize` is the table's. Memory: 24 bytes per valid entry and a bit per
    /// cache block; one metadata block is read at a time.
    public init(device: Device, token: String, blockSize: UInt64) throws(MetadataError) {
        self.token = token
        let owner = "cache metadata \(token)"
        let deviceBlocks = device.size.value / PersistentData.blockSectors
        guard deviceBlocks > 0 else {
            throw MetadataError(message: PersistentData.defaultMessage, structure: owner, block: nil,
                                reason: "the device holds \(device.size.value) sectors, less than one 4 KiB metadata block")
        }
        let sb = try PersistentData.readBlock(device, owner: owner, 0, structure: "superblock")
        if sb.allSatisfy({ $0 == 0 }) {
            isNew = true
            version = 0
            self.blockSize = blockSize
            cacheBlocks = 0
            cleanShutdown = true
            needsCheck = false
            policyName = ""
            mappings = []
            storedDirty = []
            return
        }
        isNew = false
        func fail(_ reason: String) -> MetadataError {
            MetadataError(message: PersistentData.defaultMessage, structure: "superblock of \(owner)", block: 0, reason: reason)
        }
        // sb_check: location, magic, checksum, version; then __open_metadata: block size, features.
        guard le64(sb, 8) == 0 else { throw fail("blocknr field says \(le64(sb, 8)), not 0") }
        let magic = le64(sb, 32)
        guard magic == Self.magic else {
            throw fail("magic \(magic), not \(Self.magic) (06142003 octal): not cache metadata\(Self.foreignKind(sb).map { " (it looks like \($0))" } ?? "")")
        }
        let csum = le32(sb, 0)
        let computed = PersistentData.checksum(sb, xor: Self.superblockXor)
        guard csum == computed else {
            throw fail("bad checksum: stored 0x\(PersistentData.hex(csum)), computed 0x\(PersistentData.hex(computed))")
        }
        let version = le32(sb, 40)
        guard version == 1 || version == 2 else {
            throw fail("Cache metadata version \(version) found, but only versions between 1 and 2 supported")
        }
        self.version = version
        let diskBlockSize = UInt64(le32(sb, 232))
        guard diskBlockSize == blockSize else {
            throw fail("changing the data block size (from \(diskBlockSize) to \(blockSize)) is not supported: the table's block size must be the metadata's")
        }
        self.blockSize = diskBlockSize
        let incompat = le32(sb, 252)
        guard incompat == 0 else {
            throw fail("could not access metadata due to unsupported optional features (incompat flags 0x\(PersistentData.hex(incompat)))")
        }
        let compatRO = le32(sb, 248)
        guard compatRO == 0 else {
            // The kernel opens the metadata read-write, which these flags forbid.
            throw fail("could not access metadata RDWR due to unsupported optional features (compat_ro flags 0x\(PersistentData.hex(compatRO)))")
        }
        let flags = le32(sb, 4)
        cleanShutdown = flags & Self.cleanShutdownFlag != 0
        needsCheck = flags & Self.needsCheckFlag != 0
        policyName = String(decoding: sb[44..<60].prefix { $0 != 0 }, as: UTF8.self)
        let cacheBlocks = UInt64(le32(sb, 240))
        self.cacheBlocks = cacheBlocks
        // Structures must lie in the blocks both the space map and the device allow.
        let declared = le64(sb, 64)
        let metadataBlocks = declared == 0 ? deviceBlocks : min(declared, deviceBlocks)
        let mappingRoot = le64(sb, 192)

        var storedDirty = [UInt64](repeating: 0, count: Int((cacheBlocks + 63) / 64))
        var mappings: [CacheMapping] = []
        try PersistentData.forEachArrayValue(device, owner: owner, root: mappingRoot, metadataBlocks: metadataBlocks, valueSize: 8,
                                             count: cacheBlocks, array: "mapping array") { (cblock, bytes, at, _) throws(MetadataError) in
            let value = le64(bytes, at)
            guard value & Self.validFlag != 0 else { return }
            if version == 1 && value & Self.dirtyFlag != 0 { storedDirty[Int(cblock / 64)] |= 1 << (cblock % 64) }
            mappings.append(CacheMapping(cacheBlock: cblock, originBlock: value >> 16, dirty: value & Self.dirtyFlag != 0))
        }
        if version == 2 {
            let dirtyRoot = le64(sb, 284)
            try PersistentData.forEachArrayValue(device, owner: owner, root: dirtyRoot, metadataBlocks: metadataBlocks, valueSize: 8,
                                                 count: UInt64(storedDirty.count), array: "dirty bitset") { (word, bytes, at, _) throws(MetadataError) in
                var bits = le64(bytes, at)
                // Bits past the last cache block are not cache blocks.
                let first = word * 64
                if first + 64 > cacheBlocks { bits &= (1 << (cacheBlocks - first)) &- 1 }
                storedDirty[Int(word)] = bits
            }
            for i in mappings.indices {
                let c = mappings[i].cacheBlock
                mappings[i].dirty = storedDirty[Int(c / 64)] & (1 << (c % 64)) != 0
            }
        }
        if !cleanShutdown {
            // __load_mapping_v1/v2: without a clean shutdown every valid block is dirty.
            for i in mappings.indices { mappings[i].dirty = true }
        }
        self.mappings = mappings
        self.storedDirty = storedDirty
    }

    /// The first cache block in `range` the metadata marks dirty (the check of `dm_cache_resize`
    /// before it drops cache blocks: format 1 looks at valid entries, format 2 at every bit).
    func firstStoredDirty(in range: Range<UInt64>) -> UInt64? {
        var c = range.lowerBound
        while c < range.upperBound {
            let word = storedDirty[Int(c / 64)]
            if word == 0 { c = (c / 64 + 1) * 64; continue }
            if word & (1 << (c % 64)) != 0 { return c }
            c += 1
        }
        return nil
    }

    /// What a block that is not cache metadata looks like, for the refusal.
    static func foreignKind(_ block: [UInt8]) -> String? {
        if le32(block, 0) == PersistentSnapshotStore.magic { return "a snapshot COW device (magic \"SnAp\")" }
        if le64(block, 32) == ThinPoolMetadata.magic { return "thin-pool metadata" }
        return nil
    }
}
