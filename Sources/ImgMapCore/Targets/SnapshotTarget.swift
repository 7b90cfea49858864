/// The `snapshot` target: a point-in-time view of an origin device, the chunks changed since kept in a COW device.
///
/// A snapshot of `origin` (dm-snap.c): chunks with an exception in the COW device read from their copy
/// there, the others from the origin. The persistent store (P, PO) keeps its exceptions on the COW
/// (Formats/Snapshot/ExceptionStore.swift) and is read here, in the constructor, as the kernel does; the
/// transient store (N) starts empty whatever the COW holds. An invalidated snapshot fails every read
/// (EIO); an invalidated merging snapshot reads the origin. snapshot-merge reads like the snapshot it
/// merges: what the origin becomes once the merge is done.
///
/// Table arguments:
///
/// ```
/// snapshot <origin> <COW> <P|PO|N> <chunk_sectors> [<#features> <feature>…]
/// snapshot-merge <origin> <COW> <P|PO> <chunk_sectors> [<#features> <feature>…]
/// ```
///
/// dm-snap maps by the absolute sector of the mapped device (snapshot_map never subtracts the segment
/// start), so a segment at sector S reads origin sector S onwards; the device check covers the origin's
/// sectors 0..<length, as snapshot_iterate_devices asks. Reads past the origin's end fail (EIO).
///
/// Constructor checks, in the kernel's order: at least 4 arguments, the feature group, the origin, the
/// COW (not the origin itself), the store type and chunk size ("Couldn't create exception store"), then
/// the metadata ("Failed to read snapshot metadata").
public struct SnapshotTarget: Target {
    public static let name = "snapshot"

    package enum StoreType: String, Sendable {
        case persistent = "P", persistentOverflow = "PO", transient = "N"
        package var isPersistent: Bool { self != .transient }
    }

    package let origin: Device
    package let originToken: String
    package let cow: Device
    package let cowToken: String
    package let storeType: StoreType
    /// Sectors per chunk, after the COW header's say.
    package let chunkSize: UInt64
    package let features: [String]
    /// nil for a transient store, and for a persistent one whose COW could not be read (`check` without
    /// `--dev`).
    package let store: PersistentSnapshotStore?
    /// The exceptions, shared with the write path (which adds to them) and with snapshot-origin.
    package let state: SnapshotState
    /// The segment's first sector: the origin and COW are addressed by the absolute sector.
    let start: UInt64
    let length: UInt64
    let merging: Bool

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        try self.init(arguments: arguments, length: length, context: context, merging: false)
    }

    init(arguments: [String], length: Sector, context: TargetContext, merging: Bool) throws(TargetError) {
        guard arguments.count >= 4 else {
            throw TargetError("requires 4 or more arguments",
                              detail: "<origin> <COW> <P|PO|N> <chunk_sectors> [<#features> <feature>…], got \(arguments.count)")
        }
        features = try Self.parseFeatures(Array(arguments[4...]))
        originToken = arguments[0]
        do {
            origin = try context.device(originToken)
        } catch {
            throw TargetError("Cannot get origin device", detail: error.detail ?? error.message, hint: error.hint, exitStatus: error.exitStatus)
        }
        cowToken = arguments[1]
        if cowToken == originToken {
            throw TargetError("COW device cannot be the same as origin device", detail: "both are `\(cowToken)`")
        }
        do {
            cow = try context.device(cowToken)
        } catch {
            throw TargetError("Cannot get COW device", detail: error.detail ?? error.message, hint: error.hint, exitStatus: error.exitStatus)
        }
        if case .leaf(let a) = origin, case .leaf(let b) = cow, a === b {
            throw TargetError("COW device cannot be the same as origin device", detail: "`\(originToken)` and `\(cowToken)` are the same image")
        }
        // dm_exception_store_create: the type is the first letter (any case); P takes an `O` option.
        let typeText = arguments[2].uppercased()
        let type: StoreType
        switch typeText.first {
        case "P":
            let option = typeText.dropFirst()
            guard option.isEmpty || option.first == "O" else {
                throw TargetError("Couldn't create exception store", detail: "Unsupported persistent store option: \(option)")
            }
            type = option.isEmpty ? .persistent : .persistentOverflow
        case "N":
            type = .transient
        default:
            throw TargetError("Couldn't create exception store", detail: "Exception store type is not P or N: `\(arguments[2])`")
        }
        guard let tableChunk = KernelNumber.unsigned32(arguments[3]) else {
            throw TargetError("Couldn't create exception store", detail: "Invalid chunk size `\(arguments[3])`")
        }
        let chunk = UInt64(tableChunk)
        if chunk != 0 {
            guard chunk & (chunk - 1) == 0 else {
                throw TargetError("Couldn't create exception store", detail: "Chunk size is not a power of 2: \(chunk)")
            }
            guard chunk <= UInt64(Int32.max) >> 9 else {
                throw TargetError("Couldn't create exception store", detail: "Chunk size is too high: \(chunk)")
            }
        }
        if merging && !type.isPersistent {
            throw TargetError("Couldn't create exception store", detail: "snapshot-merge needs a persistent store (P or PO), not N")
        }
        storeType = type
        self.merging = merging
        self.start = context.start.value
        self.length = length.value

        if type.isPersistent, cow.isReadable {
            do {
                let store = try PersistentSnapshotStore.read(cow: cow, tableChunkSize: chunk)
                self.store = store
                self.chunkSize = store.chunkSize
            } catch {
                throw TargetError(error.message, detail: "\(cowToken): \(error.detail)", exitStatus: error.exitStatus)
            }
        } else {
            self.store = nil
            guard chunk != 0 || type.isPersistent else {
                throw TargetError("Chunk size not set", detail: "a transient store needs a chunk size in the table")
            }
            self.chunkSize = chunk == 0 ? PersistentSnapshotStore.defaultChunkSize : chunk
        }
        state = SnapshotState(origin: origin, cow: cow, persistent: type.isPersistent, chunkSize: chunkSize, store: store,
                              end: start + length.value, merging: merging)
        context.snapshots.register(state)
    }

    /// A merging snapshot is not written by imgmap (the kernel merges it back into the origin).
    public var writeRefusal: String? {
        merging ? "writing through snapshot-merge (which copies chunks back into the origin as it merges) is not supported" : nil
    }

    public var devicesWrittenOnWrite: [Device] { [cow] }

    public func checkWrite(offset: UInt64, count: UInt64) throws {
        try state.checkRoom(start: start &+ offset, count: count, who: "snapshot \(originToken) \(cowToken)")
    }

    /// snapshot_map for a write: every chunk written gets an exception first (the origin's chunk copied
    /// unless the write covers it whole); the data then goes to the COW.
    public func prepareWrite(offset: UInt64, count: UInt64, io: WriteIO) throws {
        try state.allocate(start: start &+ offset, count: count, fullChunksNeedNoCopy: true, io: io)
    }

    /// The optional feature group: `discard_zeroes_cow`, `discard_passdown_origin` (which needs the first).
    static func parseFeatures(_ rest: [String]) throws(TargetError) -> [String] {
        guard let countText = rest.first else { return [] }
        guard let count = KernelNumber.unsigned32(countText), count <= 2, Int(count) <= rest.count - 1 else {
            throw TargetError("Invalid number of feature arguments", detail: "`\(countText)`: 0 to 2, followed by that many features")
        }
        let features = Array(rest[1..<1 + Int(count)])
        for feature in features where feature != "discard_zeroes_cow" && feature != "discard_passdown_origin" {
            throw TargetError("Unrecognised feature requested", detail: "`\(feature)`")
        }
        if features.contains("discard_passdown_origin") && !features.contains("discard_zeroes_cow") {
            throw TargetError("discard_passdown_origin feature depends on discard_zeroes_cow")
        }
        return features
    }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {
        try body(DeviceArea(device: origin, token: originToken, start: 0, length: length))
        try body(DeviceArea(device: cow, token: cowToken, start: 0, length: cow.size.value))
    }

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        let (exceptions, valid) = state.current
        guard valid else {
            if merging {
                try Self.emit(origin, token: originToken, sector: start &+ offset, count: count, body)
            } else {
                try body(.error(count: count))
            }
            return
        }
        var s = start &+ offset
        var left = count
        var index = exceptions.firstIndex(atOrAfter: s / chunkSize)
        while left > 0 {
            let chunk = s / chunkSize
            while index < exceptions.count && exceptions.oldChunks[index] < chunk { index += 1 }
            if index < exceptions.count && exceptions.oldChunks[index] == chunk {
                let inner = s % chunkSize
                let piece = min(left, chunkSize - inner)
                try Self.emit(cow, token: cowToken, sector: exceptions.newChunks[index] * chunkSize + inner, count: piece, body)
                s += piece
                left -= piece
            } else {
                // Up to the next chunk with an exception, from the origin.
                let next = index < exceptions.count ? exceptions.oldChunks[index] * chunkSize : UInt64.max
                let piece = min(left, next - s)
                try Self.emit(origin, token: originToken, sector: s, count: piece, body)
                s += piece
                left -= piece
            }
        }
    }

    /// Sectors of `device`, the part past its end as EIO (the bio would go past the device).
    static func emit(_ device: Device, token: String, sector: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        let size = device.size.value
        let inside = sector < size ? min(count, size - sector) : 0
        if inside > 0 { try body(.device(device, token: token, sector: sector, count: inside)) }
        if count > inside { try body(.error(count: count - inside)) }
    }

    public var tableArguments: String {
        var text = "\(originToken) \(cowToken) \(storeType.rawValue) \(chunkSize)"
        if !features.isEmpty { text += " \(features.count) " + features.joined(separator: " ") }
        return text
    }
}

/// snapshot-merge: the snapshot's constructor and mapping, read as the merged origin.
public struct SnapshotMergeTarget: Target {
    public static let name = "snapshot-merge"

    package let snapshot: SnapshotTarget

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        snapshot = try SnapshotTarget(arguments: arguments, length: length, context: context, merging: true)
    }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {
        try snapshot.forEachDeviceArea(body)
    }

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        try snapshot.map(offset: offset, count: count, body)
    }

    public var tableArguments: String { snapshot.tableArguments }

    // The write rules are the snapshot's (which refuses writes while merging).
    public var writeRefusal: String? { snapshot.writeRefusal }
    public func checkWrite(offset: UInt64, count: UInt64) throws { try snapshot.checkWrite(offset: offset, count: count) }
    public func prepareWrite(offset: UInt64, count: UInt64, io: WriteIO) throws { try snapshot.prepareWrite(offset: offset, count: count, io: io) }
    public var devicesWrittenOnWrite: [Device] { snapshot.devicesWrittenOnWrite }
}
