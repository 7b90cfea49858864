// persistent-data, the on-disk library of thin-pool and cache metadata (the kernel's
// drivers/md/persistent-data/: dm-block-manager.c, dm-btree.c, dm-array.c, dm-bitset.c), read only.
// 4 KiB blocks, all little-endian; every block carries a crc32c of its bytes 4..<4096 (xor a constant
// per block kind) and, for btree nodes and array blocks, its own block number.
//
//   btree node   csum (xor 121107), flags (1 internal, 2 leaf), blocknr, nr_entries, max_entries,
//                value_size, padding; then max_entries LE64 keys, then the values. Internal values are
//                child block numbers.
//   array        a btree (one level) from array-block index to the block of that array block
//   array block  csum (xor 595846735), max_entries, nr_entries, value_size, blocknr; then the values
//   bitset       an array of LE64 words, bit i of the set being bit i % 64 of word i / 64
//
// Every block is checked as the kernel's validators check it (location, checksum, sizes, kind), and
// beyond: keys must ascend within the range their parent gives them, a node may be met once (a loop or
// a shared subtree inside one tree is corruption), and every block must lie inside the metadata device.

/// A refusal to read corrupt or foreign metadata: which structure, at which block, and why.
public struct MetadataError: Error, CustomStringConvertible {
    /// The kernel's phrase for the constructor's failure.
    public var message: String
    /// The structure read, with its device (`data space map of thin-pool metadata META`).
    public var structure: String
    /// The metadata block (4 KiB blocks of the metadata device) at fault, when one is.
    public var block: UInt64?
    /// What is wrong there (a bad checksum, a loop, a value out of range).
    public var reason: String
    /// ``ExitStatus/dataError`` (65) for bad metadata; a failed read keeps the read's status.
    public var exitStatus: ExitStatus = .dataError

    public var description: String {
        "\(structure)" + (block.map { " at metadata block \($0)" } ?? "") + ": \(reason)"
    }
}

/// The name thin-pool code has always used for it.
public typealias ThinMetadataError = MetadataError

/// Reading persistent-data structures from a metadata device. `owner` names the metadata in messages
/// (`thin-pool metadata META`, `cache metadata META`); `message` is the kernel's phrase for the
/// constructor that reads it.
enum PersistentData {
    static let blockBytes = 4096
    static let blockSectors: UInt64 = 8
    static let btreeXor: UInt32 = 121_107
    static let arrayBlockXor: UInt32 = 595_846_735
    static let internalNode: UInt32 = 1
    static let leafNode: UInt32 = 2
    static let arrayBlockHeader = 24
    /// Deeper than any tree of 2^64 keys with the minimum fan-out the kernel keeps.
    static let maxDepth = 64
    static let defaultMessage = "Error creating metadata object"

    /// Block `block` of the metadata device (one pread of 4 KiB through the device's map).
    static func readBlock(_ device: Device, owner: String, _ block: UInt64, structure: String,
                          message: String = defaultMessage) throws(MetadataError) -> [UInt8] {
        do {
            return try device.readSectors(block * blockSectors, count: Int(blockSectors))
        } catch {
            throw MetadataError(message: message, structure: "\(structure) of \(owner)", block: block,
                                reason: (error as? ImgMapFailure)?.description ?? String(describing: error),
                                exitStatus: (error as? ImgMapFailure)?.exitStatus ?? .ioError)
        }
    }

    /// `dm_bm_checksum` of a block's bytes 4..<4096 with the block kind's xor.
    static func checksum(_ bytes: [UInt8], xor: UInt32) -> UInt32 {
        bytes.withUnsafeBytes { CRC32C.blockChecksum(UnsafeRawBufferPointer(rebasing: $0[4...]), xor: xor) }
    }

    static func hex(_ value: UInt32) -> String { PersistentSnapshotStore.hex(value) }

    /// Visits every leaf entry of the btree at `root` in key order: (key, node bytes, value offset, leaf
    /// block). Checks each node as the kernel's `btree_node_validator` does, plus key order, bounds and
    /// loops. Memory: one node per level, and the set of nodes seen.
    static func walk(_ device: Device, owner: String, root: UInt64, metadataBlocks: UInt64, valueSize: Int, tree: String,
                     message: String = defaultMessage,
                     _ visit: (UInt64, [UInt8], Int, UInt64) throws(MetadataError) -> Void) throws(MetadataError) {
        var seen = Set<UInt64>()
        // Keys of a subtree lie in [low, high); high nil means unbounded.
        func node(_ block: UInt64, low: UInt64, high: UInt64?, depth: Int, parent: UInt64?) throws(MetadataError) {
            let place = parent.map { "child of node \($0)" } ?? "root"
            func fail(_ reason: String, at: UInt64? = block) -> MetadataError {
                MetadataError(message: message, structure: "\(tree) of \(owner), btree node", block: at, reason: reason)
            }
            guard block < metadataBlocks else {
                throw fail("\(place) points to block \(block), past the \(metadataBlocks) blocks of the metadata device", at: parent)
            }
            guard block != 0 else { throw fail("\(place) points to block 0, the superblock", at: parent) }
            guard seen.insert(block).inserted else {
                throw fail("node met twice in one tree (\(place)): the btree has a loop or shares a node with itself")
            }
            guard depth < maxDepth else { throw fail("deeper than \(maxDepth) levels: a loop in the btree") }
            let bytes = try readBlock(device, owner: owner, block, structure: tree, message: message)
            let csum = le32(bytes, 0)
            let computed = checksum(bytes, xor: btreeXor)
            guard csum == computed else {
                throw fail("bad checksum: stored 0x\(hex(csum)), computed 0x\(hex(computed))")
            }
            guard le64(bytes, 8) == block else { throw fail("blocknr field says \(le64(bytes, 8)): the node was written elsewhere") }
            let flags = le32(bytes, 4)
            let count = Int(le32(bytes, 16))
            let maxEntries = Int(le32(bytes, 20))
            let nodeValueSize = Int(le32(bytes, 24))
            let isInternal = flags & internalNode != 0
            guard isInternal != (flags & leafNode != 0) else { throw fail("flags \(flags): neither an internal node nor a leaf") }
            let expected = isInternal ? 8 : valueSize
            guard nodeValueSize == expected else {
                throw fail("value size \(nodeValueSize), not \(expected) for \(isInternal ? "an internal node" : "a leaf") of this tree")
            }
            guard 32 + (8 + nodeValueSize) * maxEntries <= blockBytes else { throw fail("max_entries \(maxEntries) too large for a 4 KiB block") }
            guard count <= maxEntries else { throw fail("\(count) entries, more than max_entries \(maxEntries)") }
            let valuesAt = 32 + 8 * maxEntries
            var previous: UInt64?
            for i in 0..<count {
                let key = le64(bytes, 32 + 8 * i)
                if let previous, key <= previous { throw fail("keys out of order: entry \(i) has key \(key) after \(previous)") }
                if key < low || high.map({ key >= $0 }) == true {
                    throw fail("entry \(i) has key \(key), outside the keys its parent gives it (\(high.map { "from \(low), below \($0)" } ?? "from \(low) up"))")
                }
                previous = key
                if isInternal {
                    let next: UInt64? = i + 1 < count ? le64(bytes, 32 + 8 * (i + 1)) : high
                    try node(le64(bytes, valuesAt + 8 * i), low: key, high: next, depth: depth + 1, parent: block)
                } else {
                    try visit(key, bytes, valuesAt + nodeValueSize * i, block)
                }
            }
        }
        try node(root, low: 0, high: nil, depth: 0, parent: nil)
    }

    /// Visits the first `count` values of the array at `root` in index order, as the kernel's
    /// `dm_array_cursor` yields them: (index, array block bytes, value offset, array block). The array
    /// blocks come in the order of the btree's keys (0, 1, 2 …, each the index of an array block);
    /// each is checked as `array_block_check` does, plus its sizes. An array holding fewer than
    /// `count` values is refused, as the kernel's cursor fails there. Memory: one block at a time.
    static func forEachArrayValue(_ device: Device, owner: String, root: UInt64, metadataBlocks: UInt64, valueSize: Int,
                                  count: UInt64, array: String, message: String = defaultMessage,
                                  _ visit: (UInt64, [UInt8], Int, UInt64) throws(MetadataError) -> Void) throws(MetadataError) {
        guard count > 0 else { return }
        let maxEntries = (blockBytes - arrayBlockHeader) / valueSize
        var index: UInt64 = 0
        var expectedKey: UInt64 = 0
        try walk(device, owner: owner, root: root, metadataBlocks: metadataBlocks, valueSize: 8, tree: "\(array) (btree of array blocks)",
                 message: message) { (key, values, at, leaf) throws(MetadataError) in
            guard index < count else { return }
            func fail(_ reason: String, at block: UInt64) -> MetadataError {
                MetadataError(message: message, structure: "\(array) of \(owner), array block", block: block, reason: reason)
            }
            guard key == expectedKey else {
                throw MetadataError(message: message, structure: "\(array) (btree of array blocks) of \(owner), btree node", block: leaf,
                                    reason: "array block \(expectedKey) is missing (the next key is \(key))")
            }
            expectedKey += 1
            let block = le64(values, at)
            guard block < metadataBlocks, block != 0 else {
                throw MetadataError(message: message, structure: "\(array) (btree of array blocks) of \(owner), btree node", block: leaf,
                                    reason: "array block \(key) is at block \(block), \(block == 0 ? "the superblock" : "past the \(metadataBlocks) blocks of the metadata device")")
            }
            let bytes = try readBlock(device, owner: owner, block, structure: "\(array), array block", message: message)
            let csum = le32(bytes, 0)
            let computed = checksum(bytes, xor: arrayBlockXor)
            guard csum == computed else { throw fail("bad checksum: stored 0x\(hex(csum)), computed 0x\(hex(computed))", at: block) }
            guard le64(bytes, 16) == block else { throw fail("blocknr field says \(le64(bytes, 16)): the block was written elsewhere", at: block) }
            let blockMax = Int(le32(bytes, 4))
            let entries = Int(le32(bytes, 8))
            let blockValueSize = Int(le32(bytes, 12))
            guard blockValueSize == valueSize else { throw fail("value size \(blockValueSize), not \(valueSize)", at: block) }
            guard blockMax == maxEntries else { throw fail("max_entries \(blockMax), not \(maxEntries) for \(valueSize)-byte values", at: block) }
            guard entries <= blockMax else { throw fail("\(entries) entries, more than max_entries \(blockMax)", at: block) }
            for i in 0..<entries where index < count {
                try visit(index, bytes, arrayBlockHeader + valueSize * i, block)
                index += 1
            }
        }
        guard index == count else {
            throw MetadataError(message: message, structure: "\(array) of \(owner)", block: root,
                                reason: "the array holds \(index) values, fewer than the \(count) the superblock counts")
        }
    }
}
