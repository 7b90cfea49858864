// A thin pool's metadata device in the persistent-data format (the kernel's dm-thin-metadata.c and
// persistent-data/dm-btree*.c), in 4 KiB blocks, all little-endian:
//
//   block 0   superblock: csum (crc32c of bytes 4..<4096, xor 160774), flags, blocknr (0), uuid,
//             magic 27022010 (offset 32), version, time, transaction id, held root, the data and
//             metadata space-map roots (128 bytes each; the data one starts with nr_blocks), the data
//             mapping root (320), the device-details root (328), data block size (336, sectors),
//             metadata block size (340), metadata block count (344), compat/ro/incompat flags (352…)
//   btree     persistent-data nodes (Formats/PersistentData/BTree.swift, shared with cache metadata)
//
// The mapping tree has two levels: thin device id → root of that device's tree; virtual block →
// (data block << 24 | time). The device-details tree maps a device id to {mapped blocks, transaction,
// creation time, snapshot time}. A superblock that is all zeros is a new pool (the kernel formats it;
// imgmap's readers never write).

/// One thin device's entry in the device-details tree.
public struct ThinDeviceDetails: Sendable, Equatable {
    /// Data blocks the device maps, as its details entry counts them.
    public var mappedBlocks: UInt64
    /// The pool transaction that last changed the device.
    public var transactionID: UInt64
    /// The pool time (snapshot counter) when the device was created.
    public var creationTime: UInt32
    /// The pool time when the device was last snapshotted.
    public var snapshottedTime: UInt32
}

/// A thin device's block mappings as runs (virtual block, data block, length), sorted and coalesced
/// where both sides continue: 24 bytes per run, searched by bisection. A million scattered mappings
/// cost 24 MB; a volume written sequentially costs a few runs.
public struct ThinMappings: Sendable {
    /// First virtual block of each run.
    public private(set) var virtualStarts: [UInt64] = []
    /// First data block of each run.
    public private(set) var dataStarts: [UInt64] = []
    /// Blocks in each run.
    public private(set) var lengths: [UInt64] = []
    /// Mapped blocks in all.
    public private(set) var blockCount: UInt64 = 0

    /// No mappings.
    public init() {}

    /// Appends a mapping; virtual blocks must come in ascending order (as a btree walk yields them).
    mutating func append(virtual: UInt64, data: UInt64) {
        blockCount += 1
        if let last = virtualStarts.indices.last, virtualStarts[last] + lengths[last] == virtual, dataStarts[last] + lengths[last] == data {
            lengths[last] += 1
            return
        }
        virtualStarts.append(virtual)
        dataStarts.append(data)
        lengths.append(1)
    }

    /// How many runs.
    public var runCount: Int { virtualStarts.count }

    /// The index of the first run that ends after virtual block `block`.
    public func firstRun(endingAfter block: UInt64) -> Int {
        var lo = 0
        var hi = virtualStarts.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if virtualStarts[mid] + lengths[mid] <= block { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// The data block of virtual block `block`, if mapped.
    public func dataBlock(for block: UInt64) -> UInt64? {
        let i = firstRun(endingAfter: block)
        guard i < virtualStarts.count, virtualStarts[i] <= block else { return nil }
        return dataStarts[i] + (block - virtualStarts[i])
    }
}

/// The pool's metadata as read by the pool's constructor: the superblock and the device-details tree.
/// A thin device's mappings are read when a `thin` line opens it.
public final class ThinPoolMetadata: Sendable {
    /// The metadata block size: 4 KiB, as persistent-data uses.
    public static let blockBytes = 4096
    static let blockSectors: UInt64 = 8
    /// THIN_SUPERBLOCK_MAGIC.
    public static let magic: UInt64 = 27_022_010
    static let superblockXor: UInt32 = 160_774

    /// The metadata device.
    public let device: Device
    /// The metadata device as the table names it.
    public let token: String
    /// Whether the superblock was all zeros: a pool the kernel would format, with no thin devices.
    public let isNew: Bool
    /// Data block size in sectors, as the superblock records it.
    public let dataBlockSize: UInt64
    /// Data blocks the pool holds.
    public let nrDataBlocks: UInt64
    /// The pool's current transaction id.
    public let transactionID: UInt64
    /// Metadata block of the mapping tree's root (device id → block mappings).
    public let mappingRoot: UInt64
    /// Metadata block of the device-details tree's root.
    public let detailsRoot: UInt64
    /// Blocks of the metadata device that structures may use.
    public let metadataBlocks: UInt64
    /// Each thin device's details, by device id.
    public let devices: [UInt64: ThinDeviceDetails]

    /// Reads and checks the superblock and the device-details tree. `dataBlockSize` is the table's.
    public init(device: Device, token: String, dataBlockSize: UInt64) throws(ThinMetadataError) {
        self.device = device
        self.token = token
        let deviceBlocks = device.size.value / Self.blockSectors
        guard deviceBlocks > 0 else {
            throw ThinMetadataError(message: "Error creating metadata object", structure: "thin-pool metadata \(token)", block: nil,
                                    reason: "the device holds \(device.size.value) sectors, less than one 4 KiB metadata block")
        }
        let sb = try Self.readBlock(device, token: token, 0, structure: "superblock")
        if sb.allSatisfy({ $0 == 0 }) {
            isNew = true
            self.dataBlockSize = dataBlockSize
            nrDataBlocks = 0
            transactionID = 0
            mappingRoot = 0
            detailsRoot = 0
            metadataBlocks = deviceBlocks
            devices = [:]
            return
        }
        isNew = false
        let structure = "superblock of thin-pool metadata \(token)"
        func fail(_ reason: String) -> ThinMetadataError {
            ThinMetadataError(message: "Error creating metadata object", structure: structure, block: 0, reason: reason)
        }
        let magic = le64(sb, 32)
        guard magic == Self.magic else {
            throw fail("magic \(magic), not 27022010: not thin-pool metadata\(Self.foreignKind(sb).map { " (it looks like \($0))" } ?? "")")
        }
        let csum = le32(sb, 0)
        let computed = sb.withUnsafeBytes { CRC32C.blockChecksum(UnsafeRawBufferPointer(rebasing: $0[4...]), xor: Self.superblockXor) }
        guard csum == computed else {
            throw fail("bad checksum: stored 0x\(PersistentSnapshotStore.hex(csum)), computed 0x\(PersistentSnapshotStore.hex(computed))")
        }
        guard le64(sb, 8) == 0 else { throw fail("blocknr field says \(le64(sb, 8)), not 0") }
        let version = le32(sb, 40)
        guard version == 1 || version == 2 else { throw fail("unsupported metadata version \(version) (1 and 2 exist)") }
        let incompat = le32(sb, 360)
        guard incompat == 0 else {
            throw fail("could not access metadata due to unsupported optional features (incompat flags 0x\(PersistentSnapshotStore.hex(incompat)))")
        }
        let diskBlockSize = UInt64(le32(sb, 336))
        guard diskBlockSize == dataBlockSize else {
            throw fail("changing the data block size (from \(diskBlockSize) to \(dataBlockSize)) is not supported: the table's block size must be the metadata's")
        }
        let metadataBlockSize = le32(sb, 340)
        guard metadataBlockSize == 8 else { throw fail("metadata block size \(metadataBlockSize) sectors, not 8 (4 KiB)") }
        let declared = le64(sb, 344)
        self.dataBlockSize = diskBlockSize
        nrDataBlocks = le64(sb, 64)
        transactionID = le64(sb, 48)
        mappingRoot = le64(sb, 320)
        detailsRoot = le64(sb, 328)
        // Structures must lie in the blocks both the superblock and the device allow.
        metadataBlocks = declared == 0 ? deviceBlocks : min(declared, deviceBlocks)
        var devices: [UInt64: ThinDeviceDetails] = [:]
        try Self.walk(device, token: token, root: detailsRoot, metadataBlocks: metadataBlocks, valueSize: 24, tree: "device-details tree") { key, values, at in
            devices[key] = ThinDeviceDetails(mappedBlocks: le64(values, at), transactionID: le64(values, at + 8),
                                             creationTime: le32(values, at + 16), snapshottedTime: le32(values, at + 20))
        }
        self.devices = devices
    }

    /// The mappings of thin device `id` (nil when the mapping tree has no such device), each data block
    /// checked against the pool's data blocks.
    public func mappings(of id: UInt64) throws(ThinMetadataError) -> ThinMappings? {
        guard !isNew else { return nil }
        var deviceRoot: UInt64?
        try Self.walk(device, token: token, root: mappingRoot, metadataBlocks: metadataBlocks, valueSize: 8, tree: "mapping tree (top level)") { key, values, at in
            if key == id { deviceRoot = le64(values, at) }
        }
        guard let deviceRoot else { return nil }
        var mappings = ThinMappings()
        let limit = nrDataBlocks
        let tree = "mapping tree of thin device \(id)"
        try Self.walk(device, token: token, root: deviceRoot, metadataBlocks: metadataBlocks, valueSize: 8, tree: tree) { (key, values, at, node) throws(ThinMetadataError) in
            let data = le64(values, at) >> 24
            guard data < limit else {
                throw ThinMetadataError(message: "Couldn't open thin internal device", structure: "\(tree) of thin-pool metadata \(self.token), leaf", block: node,
                                        reason: "virtual block \(key) maps to data block \(data), past the pool's \(limit) data blocks")
            }
            mappings.append(virtual: key, data: data)
        }
        return mappings
    }

    /// What a block that is not thin metadata looks like, for the refusal.
    static func foreignKind(_ block: [UInt8]) -> String? {
        if le32(block, 0) == PersistentSnapshotStore.magic { return "a snapshot COW device (magic \"SnAp\")" }
        if le64(block, 32) == CacheMetadata.magic { return "dm-cache metadata" }
        return nil
    }

    static func readBlock(_ device: Device, token: String, _ block: UInt64, structure: String) throws(ThinMetadataError) -> [UInt8] {
        try PersistentData.readBlock(device, owner: "thin-pool metadata \(token)", block, structure: structure)
    }

    static func walk(_ device: Device, token: String, root: UInt64, metadataBlocks: UInt64, valueSize: Int, tree: String,
                     _ visit: (UInt64, [UInt8], Int) throws(ThinMetadataError) -> Void) throws(ThinMetadataError) {
        try PersistentData.walk(device, owner: "thin-pool metadata \(token)", root: root, metadataBlocks: metadataBlocks, valueSize: valueSize,
                                tree: tree) { (key, values, at, _) throws(ThinMetadataError) in
            try visit(key, values, at)
        }
    }

    static func walk(_ device: Device, token: String, root: UInt64, metadataBlocks: UInt64, valueSize: Int, tree: String,
                     _ visit: (UInt64, [UInt8], Int, UInt64) throws(ThinMetadataError) -> Void) throws(ThinMetadataError) {
        try PersistentData.walk(device, owner: "thin-pool metadata \(token)", root: root, metadataBlocks: metadataBlocks, valueSize: valueSize,
                                tree: tree, visit)
    }
}
