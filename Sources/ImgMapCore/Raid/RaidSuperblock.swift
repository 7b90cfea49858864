// The dm-raid superblock (struct dm_raid_superblock, __packed, little-endian) at sector 0 of each
// metadata device. What imgmap takes from it, as analyse_superblocks does: the freshest superblock
// (most events) names the failed members; a member whose own superblock is missing (not `DmRd`, so
// the kernel would take it as new and rebuild it) or records an unfinished recovery is not read from;
// a reshape in progress is refused, since the data is then in two layouts at once.

extension RaidTarget {
    static let magic: UInt32 = 0x6452_6D44   // "DmRd"
    static let featureV190: UInt32 = 0x1
    static let reshapeActive: UInt32 = 0x1

    struct Superblock {
        var compat: UInt32
        var position: UInt32
        var events: UInt64
        var failed: [UInt64]
        var diskRecoveryOffset: UInt64
        var flags: UInt32
        var reshapePosition: UInt64
        var deltaDisks: Int32
        var dataOffset: UInt64
        var newDataOffset: UInt64
        var level: UInt32, layout: UInt32, stripe: UInt32
        var newLevel: UInt32, newLayout: UInt32, newStripe: UInt32

        init?(_ b: [UInt8]) {
            func u32(_ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[o + $1]) << (8 * $1) } }
            func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[o + $1]) << (8 * $1) } }
            guard u32(0) == RaidTarget.magic else { return nil }
            compat = u32(4)
            position = u32(12)
            events = u64(16)
            failed = [u64(24)]
            diskRecoveryOffset = u64(32)
            level = u32(48); layout = u32(52); stripe = u32(56)
            flags = 0; reshapePosition = UInt64.max; deltaDisks = 0; dataOffset = 0; newDataOffset = 0
            newLevel = level; newLayout = layout; newStripe = stripe
            if compat & RaidTarget.featureV190 != 0 {
                flags = u32(60)
                reshapePosition = u64(64)
                newLevel = u32(72); newLayout = u32(76); newStripe = u32(80)
                deltaDisks = Int32(bitPattern: u32(84))
                dataOffset = u64(96)
                newDataOffset = u64(104)
                failed += [u64(120), u64(128), u64(136)]
            }
        }

        func isFailed(_ member: Int) -> Bool {
            let word = member / 64
            return word < failed.count && failed[word] & (1 << UInt64(member % 64)) != 0
        }
    }

    /// Reads each metadata device's superblock; returns the members not to read from and the data
    /// offsets the superblocks record.
    static func readSuperblocks(_ members: [Member], count n: Int) throws(TargetError) -> (missing: Set<Int>, dataOffsets: [(Int, UInt64)]) {
        var blocks: [Int: Superblock] = [:]
        let io = DeviceIO()
        for (k, member) in members.enumerated() {
            guard let meta = member.meta else { continue }
            guard meta.size.value >= 1 else {
                throw TargetError("Failed to load superblock", detail: "member \(k): metadata device `\(member.metaToken)` is empty")
            }
            var bytes = [UInt8](repeating: 0, count: 512)
            do {
                try bytes.withUnsafeMutableBytes { try io.read(meta, into: $0, at: 0) }
            } catch {
                throw TargetError("Failed to load superblock", detail: "member \(k): metadata device `\(member.metaToken)`: \(error)")
            }
            if let sb = Superblock(bytes) { blocks[k] = sb }
        }
        guard let freshest = blocks.values.max(by: { $0.events < $1.events }) else {
            // No superblock anywhere: a new set, which the kernel would initialise; its data reads as it is.
            return ([], [])
        }
        if freshest.flags & reshapeActive != 0 || freshest.deltaDisks != 0 || freshest.reshapePosition != UInt64.max
            || freshest.newLevel != freshest.level || freshest.newLayout != freshest.layout || freshest.newStripe != freshest.stripe {
            throw TargetError("Failed to run raid array",
                              detail: "the superblocks record a reshape in progress (position \(freshest.reshapePosition), level \(freshest.level)→\(freshest.newLevel), layout \(freshest.layout)→\(freshest.newLayout), chunk \(freshest.stripe)→\(freshest.newStripe), delta_disks \(freshest.deltaDisks))",
                              hint: "imgmap cannot read a set halfway between two layouts; let the kernel finish the reshape first")
        }
        var missing = Set<Int>()
        var offsets: [(Int, UInt64)] = []
        for k in 0..<n where members[k].device != nil {
            if freshest.isFailed(k) { missing.insert(k); continue }
            guard members[k].meta != nil else { continue }
            guard let own = blocks[k] else { missing.insert(k); continue }   // new member: to be rebuilt
            if own.diskRecoveryOffset != UInt64.max { missing.insert(k) }
            if own.compat & featureV190 != 0 { offsets.append((k, own.dataOffset)) }
        }
        return (missing, offsets)
    }
}
