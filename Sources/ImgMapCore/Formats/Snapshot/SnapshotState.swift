import Synchronization

// A snapshot's exceptions while imgmap writes through it: the write path allocates new exceptions in
// the COW as the kernel's does (dm-snap.c `snapshot_map` and `__origin_write`, the stores'
// `prepare_exception` and `commit_exception`), so the COW ends up byte-identical to the kernel's:
//
// - persistent (P, PO): a new store first gets its header chunk (magic, valid 1, version 1, chunk
//   size, zeros) and a zeroed area 0, as the kernel writes them when the table is loaded. Each new
//   exception takes the next free chunk from 2 up, stepping over metadata areas (chunk 1 + k·(per-area
//   + 1)), and is appended to the current area, which is written back; a full area is followed by a
//   zeroed next area. Exceptions commit in the order they were allocated (the kernel completes them in
//   sequence order), which for one sequential writer is ascending chunk order.
// - transient (N): chunks from 0, nothing else on disk.
//
// An exception's chunk gets the origin's old chunk first unless the write covers the whole chunk
// (the kernel's start_full_bio), which leaves the same bytes. The last origin chunk may be short: only
// the origin's sectors are copied.

/// The mutable exception table of one snapshot, shared by its target value and by the snapshot-origin
/// targets of the same origin (the kernel's list of snapshots per origin).
package final class SnapshotState: @unchecked Sendable {
    struct Store {
        var exceptions: SnapshotExceptions
        var valid: Bool
        /// A persistent store whose header has not been written yet (its COW started with zeros).
        var needsHeader: Bool
        /// The next COW chunk to allocate.
        var nextFree: UInt64
        var currentArea: UInt64
        var areaEntries: [(old: UInt64, new: UInt64)]
    }

    let storage: Mutex<Store>
    package let origin: Device
    package let cow: Device
    package let persistent: Bool
    package let chunkSize: UInt64
    /// Where the snapshot's segment ends in its table: origin writes past it make no exception
    /// (the kernel compares with the snapshot table's size).
    let end: UInt64
    let merging: Bool

    init(origin: Device, cow: Device, persistent: Bool, chunkSize: UInt64, store: PersistentSnapshotStore?, end: UInt64, merging: Bool) {
        self.origin = origin
        self.cow = cow
        self.persistent = persistent
        self.chunkSize = chunkSize
        self.end = end
        self.merging = merging
        storage = Mutex(Store(exceptions: store?.exceptions ?? SnapshotExceptions(), valid: store?.state != .invalid,
                              needsHeader: persistent && (store == nil || store?.state == .new),
                              nextFree: persistent ? (store?.nextFree ?? 2) : 0,
                              currentArea: store?.currentArea ?? 0, areaEntries: store?.areaEntries ?? []))
    }

    var exceptionsPerArea: UInt64 { chunkSize * sectorSize / 16 }
    func areaLocation(_ area: UInt64) -> UInt64 { 1 + (exceptionsPerArea + 1) * area }

    /// The exceptions now, and whether the snapshot is valid.
    var current: (SnapshotExceptions, Bool) {
        storage.withLock { ($0.exceptions, $0.valid) }
    }

    /// Chunks the COW can still take.
    func room(_ store: Store) -> UInt64 {
        var next = store.nextFree
        var count: UInt64 = 0
        let cowChunks = cow.size.value / chunkSize
        // Bounded by the COW's chunks: each step allocates one.
        while next + 1 <= cowChunks {
            count += 1
            next += 1
            if persistent && next % (exceptionsPerArea + 1) == 1 { next += 1 }
        }
        return count
    }

    /// The origin chunks of sectors [start, start+count) that have no exception yet (and lie inside the
    /// origin).
    func chunksNeedingExceptions(_ store: Store, start: UInt64, count: UInt64) -> [UInt64] {
        guard count > 0 else { return [] }
        let originChunks = (origin.size.value + chunkSize - 1) / chunkSize
        let first = start / chunkSize
        let last = min((start + count - 1) / chunkSize, originChunks == 0 ? 0 : originChunks - 1)
        guard first <= last, first < originChunks else { return [] }
        return (first...last).filter { store.exceptions.cowChunk(for: $0) == nil }
    }

    /// Refuses, before anything is written, a write that would overflow the COW.
    func checkRoom(start: UInt64, count: UInt64, who: String) throws {
        try storage.withLock { store in
            guard store.valid, !merging else { return }
            let needed = UInt64(chunksNeedingExceptions(store, start: start, count: count).count)
            let room = room(store)
            if needed > room {
                throw PlainFailure("\(who): the write needs \(needed) new exceptions of \(chunkSize) sectors in the COW \(cow.displayName), which has room for \(room): the kernel would overflow (invalidate) the snapshot; refused, nothing was written", .dataError)
            }
        }
    }

    /// Allocates exceptions for the chunks of sectors [start, start+count) that have none, copying the
    /// origin's chunk into each unless `fullChunksNeedNoCopy` and the range covers it whole.
    func allocate(start: UInt64, count: UInt64, fullChunksNeedNoCopy: Bool, io: WriteIO) throws {
        try storage.withLock { store in
            guard store.valid, !merging else { return }
            let chunks = chunksNeedingExceptions(store, start: start, count: count)
            guard !chunks.isEmpty else { return }
            if store.needsHeader { try writeNewStore(io) ; store.needsHeader = false }
            var areaDirty = false
            for chunk in chunks {
                let new = store.nextFree
                guard (new + 1) * chunkSize <= cow.size.value else {
                    throw PlainFailure("the COW \(cow.displayName) is full (\(cow.size.value / chunkSize) chunks): the kernel would invalidate the snapshot", .ioError)
                }
                store.nextFree += 1
                if persistent && store.nextFree % (exceptionsPerArea + 1) == 1 { store.nextFree += 1 }
                let chunkStart = chunk * chunkSize
                let covered = start <= chunkStart && start + count >= chunkStart + chunkSize
                if !(covered && fullChunksNeedNoCopy) {
                    let n = min(chunkSize, origin.size.value - chunkStart)
                    let old = try io.read(origin, sector: chunkStart, count: Int(n))
                    try io.write(cow, old, at: new * chunkSize)
                }
                store.exceptions.insert(old: chunk, new: new)
                guard persistent else { continue }
                store.areaEntries.append((chunk, new))
                areaDirty = true
                if UInt64(store.areaEntries.count) == exceptionsPerArea {
                    try writeArea(store.currentArea, store.areaEntries, io)
                    try writeArea(store.currentArea + 1, [], io)
                    store.currentArea += 1
                    store.areaEntries = []
                    areaDirty = false
                }
            }
            if areaDirty { try writeArea(store.currentArea, store.areaEntries, io) }
        }
    }

    /// The header chunk and a zeroed area 0.
    func writeNewStore(_ io: WriteIO) throws {
        var header = [UInt8](repeating: 0, count: Int(chunkSize * sectorSize))
        putLE32(&header, 0, PersistentSnapshotStore.magic)
        putLE32(&header, 4, 1)
        putLE32(&header, 8, PersistentSnapshotStore.diskVersion)
        putLE32(&header, 12, UInt32(chunkSize))
        try io.write(cow, header, at: 0)
        try writeArea(0, [], io)
    }

    func writeArea(_ area: UInt64, _ entries: [(old: UInt64, new: UInt64)], _ io: WriteIO) throws {
        var bytes = [UInt8](repeating: 0, count: Int(chunkSize * sectorSize))
        for (i, entry) in entries.enumerated() {
            putLE64(&bytes, 16 * i, entry.old)
            putLE64(&bytes, 16 * i + 8, entry.new)
        }
        try io.write(cow, bytes, at: areaLocation(area) * chunkSize)
    }
}

/// The snapshots of each origin device in one set of tables (the kernel's `_origins` hash), so that a
/// write through snapshot-origin can copy old chunks into each of them.
package final class SnapshotRegistry: @unchecked Sendable {
    private let snapshots = Mutex<[ObjectIdentifier: [SnapshotState]]>([:])

    package init() {}

    static func key(_ device: Device) -> ObjectIdentifier {
        switch device {
        case .leaf(let leaf): ObjectIdentifier(leaf)
        case .mapped(let mapped): ObjectIdentifier(mapped)
        }
    }

    func register(_ snapshot: SnapshotState) {
        snapshots.withLock { $0[Self.key(snapshot.origin), default: []].append(snapshot) }
    }

    func snapshots(of origin: Device) -> [SnapshotState] {
        snapshots.withLock { $0[Self.key(origin)] ?? [] }
    }
}

@inline(__always) func putLE32(_ bytes: inout [UInt8], _ at: Int, _ value: UInt32) {
    for k in 0..<4 { bytes[at + k] = UInt8(truncatingIfNeeded: value >> (8 * k)) }
}

@inline(__always) func putLE64(_ bytes: inout [UInt8], _ at: Int, _ value: UInt64) {
    for k in 0..<8 { bytes[at + k] = UInt8(truncatingIfNeeded: value >> (8 * k)) }
}
