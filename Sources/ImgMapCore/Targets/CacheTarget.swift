/// dm-cache: a fast cache device in front of a slow origin, read as the kernel reads it; writes are refused.
///
/// ```
/// cache <metadata dev> <cache dev> <origin dev> <block size> <#features> <feature>…
///       <policy> <#policy args> <policy arg>…
/// ```
///
/// dm-cache (dm-cache-target.c): a fast cache device in front of a slow origin, in blocks of `block
/// size` sectors. Origin block b reads cache block c of the cache device when the metadata
/// (Formats/Cache/CacheMetadata.swift) holds a valid mapping c → b, else the origin; dirty and clean
/// cached blocks alike read from the cache device (map_bio remaps every hit there), and in passthrough
/// mode every read goes to the origin. A metadata device that is all zeros is a new, empty cache. The
/// metadata is read here, in the constructor, as the kernel reads it between its constructor and its
/// first resume, so `map` is a bisection.
///
/// dm-cache maps by the absolute sector of the mapped device (cache_map never subtracts the segment
/// start). Blocks from the segment length on (ti->len / block size, the origin size since Linux's "fix
/// access beyond end of origin device", in 6.1 stable) are never cached and read the origin; so are
/// the sectors of a partial last block.
///
/// Constructor checks, in the kernel's order: the metadata, cache and origin devices ("Insufficient
/// args", "Error opening … device", the segment no longer than the origin), the block size (a multiple
/// of 64 sectors from 64 to 2097152, no larger than the cache device), the feature group (0 to 3 of
/// writeback, writethrough, passthrough, metadata2, no_discard_passdown, one io mode at most), the
/// policy and its key/value arguments, the metadata, and what the first resume checks: a cache device
/// smaller than the metadata's cache blocks drops only clean ones, mappings past the origin's end must
/// be clean, and passthrough mode needs every loaded block clean. Arguments after the policy's are
/// ignored, as the kernel ignores them.
public struct CacheTarget: Target {
    public static let name = "cache"
    static let minBlockSize: UInt64 = 64
    static let maxBlockSize: UInt64 = 2_097_152
    static let policies = ["smq", "mq", "cleaner", "default"]
    /// mq is an alias of smq that still takes its old tunables (and ignores them).
    static let mqTunables = ["random_threshold", "sequential_threshold", "discard_promote_adjustment",
                             "read_promote_adjustment", "write_promote_adjustment"]

    package enum IOMode: String, Sendable { case writeback, writethrough, passthrough }

    package let metadataDevice: Device
    package let metadataToken: String
    package let cacheDevice: Device
    package let cacheToken: String
    package let origin: Device
    package let originToken: String
    package let blockSize: UInt64
    package let ioMode: IOMode
    package let features: [String]
    package let policy: String
    package let policyArguments: [String]
    /// nil when the metadata device's content is unknown (`check` without `--dev`).
    package let metadata: CacheMetadata?
    /// The mappings the kernel loads, as runs of (origin block, cache block) sorted by origin block.
    package let mappings: ThinMappings
    /// Dirty cache blocks among them.
    package let dirtyBlocks: Int
    let start: UInt64
    let length: UInt64
    /// Blocks the cache may hold: the whole blocks of the segment.
    let originBlocks: UInt64
    /// All the arguments after the three devices, which the kernel prints back verbatim.
    let shownArguments: [String]

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        var rest = arguments[...]
        func next() throws(TargetError) -> String {
            guard let first = rest.popFirst() else {
                throw TargetError("Insufficient args",
                                  detail: "<metadata dev> <cache dev> <origin dev> <block size> <#features> <feature>… <policy> <#policy args> <policy arg>…, got \(arguments.count) arguments")
            }
            return first
        }
        metadataToken = try next()
        do {
            metadataDevice = try context.device(metadataToken)
        } catch {
            throw TargetError("Error opening metadata device", detail: error.detail ?? error.message, hint: error.hint, exitStatus: error.exitStatus)
        }
        cacheToken = try next()
        do {
            cacheDevice = try context.device(cacheToken)
        } catch {
            throw TargetError("Error opening cache device", detail: error.detail ?? error.message, hint: error.hint, exitStatus: error.exitStatus)
        }
        originToken = try next()
        do {
            origin = try context.device(originToken)
        } catch {
            throw TargetError("Error opening origin device", detail: error.detail ?? error.message, hint: error.hint, exitStatus: error.exitStatus)
        }
        guard length.value <= origin.size.value else {
            throw TargetError("Device size larger than cached device",
                              detail: "the segment is \(length.value) sectors, the origin `\(originToken)` \(origin.size.value)")
        }
        shownArguments = Array(rest)
        let sizeText = try next()
        guard let size = KernelNumber.unsignedLong(sizeText), size >= Self.minBlockSize, size <= Self.maxBlockSize,
              size % Self.minBlockSize == 0 else {
            throw TargetError("Invalid data block size", detail: "`\(sizeText)`: a multiple of 64 sectors (32 KiB) from 64 to 2097152 (1 GiB)")
        }
        guard size <= cacheDevice.size.value else {
            throw TargetError("Data block size is larger than the cache device",
                              detail: "\(size) sectors; the cache device `\(cacheToken)` holds \(cacheDevice.size.value)")
        }
        blockSize = size
        (ioMode, features) = try Self.parseFeatures(&rest)
        guard let policyName = rest.popFirst() else {
            throw TargetError("Insufficient args", detail: "the policy name is missing")
        }
        policy = policyName
        policyArguments = try Self.argumentGroup(&rest, max: 1024, error: "Invalid number of policy arguments")
        guard Self.policies.contains(policy) else {
            throw TargetError("Error creating cache's policy", detail: "unknown policy `\(policy)`; known: smq, mq, cleaner, default")
        }
        try Self.checkPolicyArguments(policyArguments, policy: policy)
        start = context.start.value
        self.length = length.value
        originBlocks = length.value / size

        guard metadataDevice.isReadable else {
            metadata = nil
            mappings = ThinMappings()
            dirtyBlocks = 0
            return
        }
        let metadata: CacheMetadata
        do {
            metadata = try CacheMetadata(device: metadataDevice, token: metadataToken, blockSize: size)
        } catch {
            throw TargetError(error.message, detail: error.description, exitStatus: error.exitStatus)
        }
        if metadata.needsCheck {
            throw TargetError("Unable to get write access to metadata, please check/repair metadata.",
                              detail: "cache metadata \(metadataToken): the superblock's needs_check flag is set")
        }
        self.metadata = metadata
        (mappings, dirtyBlocks) = try Self.load(metadata, cacheBlocks: cacheDevice.size.value / size, originBlocks: originBlocks,
                                                passthrough: ioMode == .passthrough, metadataToken: metadataToken)
    }

    /// What cache_preresume does before the first I/O: resize the metadata to the cache device's
    /// blocks (dm_cache_resize), then load the mappings (load_filtered_mapping, load_mapping), with
    /// their checks. Returns the mappings as runs by origin block, and the dirty count.
    static func load(_ metadata: CacheMetadata, cacheBlocks: UInt64, originBlocks: UInt64, passthrough: Bool,
                     metadataToken: String) throws(TargetError) -> (ThinMappings, Int) {
        let owner = "cache metadata \(metadataToken)"
        if cacheBlocks < metadata.cacheBlocks, let dirty = metadata.firstStoredDirty(in: cacheBlocks..<metadata.cacheBlocks) {
            throw TargetError("could not resize cache metadata",
                              detail: "\(owner): unable to shrink cache due to dirty blocks: the cache device holds \(cacheBlocks) blocks, the metadata \(metadata.cacheBlocks), and cache block \(dirty) is dirty")
        }
        var loaded: [CacheMapping] = []
        loaded.reserveCapacity(metadata.mappings.count)
        for m in metadata.mappings where m.cacheBlock < cacheBlocks {
            if m.originBlock >= originBlocks {
                guard !m.dirty else {
                    throw TargetError("could not load cache mappings",
                                      detail: "\(owner): unable to shrink origin; cache block \(m.cacheBlock) is dirty (it caches origin block \(m.originBlock), past the segment's \(originBlocks) blocks)")
                }
                continue  // a clean block past the origin is dropped (truncate_oblocks)
            }
            if passthrough && m.dirty {
                throw TargetError("could not load cache mappings",
                                  detail: "\(owner): cannot enter passthrough mode unless all blocks are clean (cache block \(m.cacheBlock) is dirty\(metadata.cleanShutdown ? "" : ": the cache was not shut down cleanly, so every block counts as dirty"))")
            }
            loaded.append(m)
        }
        loaded.sort { $0.originBlock < $1.originBlock }
        var runs = ThinMappings()
        var dirty = 0
        for (i, m) in loaded.enumerated() {
            if i > 0 && loaded[i - 1].originBlock == m.originBlock {
                // The kernel's policy would keep one of them; which one is not part of any format. A
                // metadata checker rejects this; so does imgmap.
                throw TargetError("could not load cache mappings",
                                  detail: "\(owner), mapping array: origin block \(m.originBlock) is cached twice (cache blocks \(loaded[i - 1].cacheBlock) and \(m.cacheBlock))")
            }
            runs.append(virtual: m.originBlock, data: m.cacheBlock)
            if m.dirty { dirty += 1 }
        }
        return (runs, dirty)
    }

    /// The feature group: dm_read_arg_group with 0 to 3 arguments, each a known feature.
    static func parseFeatures(_ rest: inout ArraySlice<String>) throws(TargetError) -> (IOMode, [String]) {
        let features = try argumentGroup(&rest, max: 3, error: "Invalid number of cache feature arguments")
        var mode = IOMode.writeback
        var modes = 0
        for feature in features {
            switch feature.lowercased() {
            case "writeback": mode = .writeback; modes += 1
            case "writethrough": mode = .writethrough; modes += 1
            case "passthrough": mode = .passthrough; modes += 1
            case "metadata2", "no_discard_passdown": break
            default:
                throw TargetError("Unrecognised cache feature requested",
                                  detail: "`\(feature)`; known: writeback, writethrough, passthrough, metadata2, no_discard_passdown")
            }
        }
        guard modes <= 1 else {
            throw TargetError("Duplicate cache io_mode features requested", detail: features.joined(separator: " "))
        }
        return (mode, features)
    }

    /// `dm_read_arg_group`: a count (`%u`) from 0 to `max`, then that many arguments.
    static func argumentGroup(_ rest: inout ArraySlice<String>, max: UInt32, error: String) throws(TargetError) -> [String] {
        guard let countText = rest.popFirst(), let count = KernelNumber.unsigned32Scanf(countText), count <= max, Int(count) <= rest.count else {
            throw TargetError(error, detail: "a count from 0 to \(max), followed by that many arguments")
        }
        let group = Array(rest.prefix(Int(count)))
        rest = rest.dropFirst(Int(count))
        return group
    }

    /// set_config_values: key/value pairs; `migration_threshold` for every policy, mq's old tunables for
    /// mq (which ignores them), nothing else.
    static func checkPolicyArguments(_ arguments: [String], policy: String) throws(TargetError) {
        let failure = "Error setting cache policy's config values"
        guard arguments.count % 2 == 0 else {
            throw TargetError(failure, detail: "Odd number of policy arguments given but they should be <key> <value> pairs")
        }
        for i in stride(from: 0, to: arguments.count, by: 2) {
            let key = arguments[i].lowercased()
            let value = arguments[i + 1]
            let known = key == "migration_threshold" || (policy == "mq" && mqTunables.contains(key))
            guard known, KernelNumber.unsignedLong(value) != nil else {
                throw TargetError(failure, detail: "bad config value for \(arguments[i]): \(value)")
            }
        }
    }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {
        // cache_iterate_devices: the whole cache device, and the origin up to the segment length.
        try body(DeviceArea(device: cacheDevice, token: cacheToken, start: 0, length: cacheDevice.size.value))
        try body(DeviceArea(device: origin, token: originToken, start: 0, length: length))
    }

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        var s = start &+ offset
        var left = count
        guard ioMode != .passthrough, mappings.runCount > 0 else {
            try SnapshotTarget.emit(origin, token: originToken, sector: s, count: left, body)
            return
        }
        var run = mappings.firstRun(endingAfter: s / blockSize)
        while left > 0 {
            let block = s / blockSize
            while run < mappings.runCount && mappings.virtualStarts[run] + mappings.lengths[run] <= block { run += 1 }
            if block < originBlocks, run < mappings.runCount, mappings.virtualStarts[run] <= block {
                // A hit: to the run's end at most, onto the cache device.
                let runEnd = (mappings.virtualStarts[run] + mappings.lengths[run]) * blockSize
                let piece = min(left, runEnd - s)
                let cached = (mappings.dataStarts[run] + (block - mappings.virtualStarts[run])) * blockSize + s % blockSize
                try SnapshotTarget.emit(cacheDevice, token: cacheToken, sector: cached, count: piece, body)
                s += piece
                left -= piece
            } else {
                // A miss: up to the next cached block, from the origin.
                let next = block < originBlocks && run < mappings.runCount ? mappings.virtualStarts[run] * blockSize : UInt64.max
                let piece = min(left, next - s)
                try SnapshotTarget.emit(origin, token: originToken, sector: s, count: piece, body)
                s += piece
                left -= piece
            }
        }
    }

    /// imgmap does not migrate blocks or update the cache's metadata.
    public var writeRefusal: String? {
        switch ioMode {
        case .writeback:
            "writing through cache in writeback mode (which puts the data in cache blocks, allocates them and marks them dirty in the metadata) is not supported; imgmap reads cache devices only"
        case .writethrough:
            "writing through cache in writethrough mode (which writes the origin and the cache blocks of clean cached data, and the cache alone for dirty ones) is not supported; imgmap reads cache devices only"
        case .passthrough:
            "writing through cache in passthrough mode (which writes the origin and invalidates cached blocks in the metadata) is not supported; imgmap reads cache devices only"
        }
    }

    /// As the kernel prints it back: the devices, then every other constructor argument unchanged.
    public var tableArguments: String {
        ([metadataToken, cacheToken, originToken] + shownArguments).joined(separator: " ")
    }
}
