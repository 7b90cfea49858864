// The persistent exception store on a snapshot's COW device (the kernel's dm-snap-persistent.c), all
// little-endian, in chunks of the snapshot's chunk size:
//
//   chunk 0            header: magic "SnAp" (LE32 0x70416e53), valid, version (1), chunk size (sectors)
//   chunk 1            metadata area 0: (old chunk, new chunk) LE64 pairs, chunk·512/16 of them
//   chunks 2…          data chunks, then area 1 at chunk 1 + (per-area + 1), and so on
//
// An area ends at the first pair whose new chunk is 0 (it would point at the header); a full area is
// followed by the next one. A header whose magic is 0 is a new store (the kernel writes a header there;
// imgmap's readers never write). The transient store (N) keeps nothing on disk.

/// The exceptions of a snapshot: which origin chunks have their own copy in the COW, and where.
/// Memory: 16 bytes per exception, in two sorted arrays searched by bisection.
package struct SnapshotExceptions: Sendable {
    /// Origin chunks with an exception, ascending.
    package private(set) var oldChunks: [UInt64] = []
    /// `newChunks[i]` is the COW chunk holding origin chunk `oldChunks[i]`.
    package private(set) var newChunks: [UInt64] = []

    package init() {}

    /// Builds the table from pairs in the order the store lists them. A chunk listed twice maps where its
    /// first entry says: the kernel's hash chain keeps the earlier one in front of the later.
    init(pairs: [(old: UInt64, new: UInt64)]) {
        let ordered = pairs.enumerated().sorted { $0.element.old != $1.element.old ? $0.element.old < $1.element.old : $0.offset < $1.offset }
        oldChunks.reserveCapacity(ordered.count)
        newChunks.reserveCapacity(ordered.count)
        for (_, pair) in ordered where oldChunks.last != pair.old {
            oldChunks.append(pair.old)
            newChunks.append(pair.new)
        }
    }

    package var count: Int { oldChunks.count }

    /// The index of the first exception whose origin chunk is ≥ `chunk`.
    package func firstIndex(atOrAfter chunk: UInt64) -> Int {
        var lo = 0
        var hi = oldChunks.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if oldChunks[mid] < chunk { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// The COW chunk holding origin chunk `chunk`, if it has an exception.
    package func cowChunk(for chunk: UInt64) -> UInt64? {
        let i = firstIndex(atOrAfter: chunk)
        return i < oldChunks.count && oldChunks[i] == chunk ? newChunks[i] : nil
    }

    /// Adds an exception (the write path), keeping the arrays sorted.
    mutating func insert(old: UInt64, new: UInt64) {
        let i = firstIndex(atOrAfter: old)
        precondition(i == oldChunks.count || oldChunks[i] != old, "chunk \(old) already has an exception")
        oldChunks.insert(old, at: i)
        newChunks.insert(new, at: i)
    }
}

/// What a persistent COW device holds, as the kernel's `persistent_read_metadata` reads it.
package struct PersistentSnapshotStore: Sendable {
    package static let magic: UInt32 = 0x7041_6e53
    package static let diskVersion: UInt32 = 1
    /// The chunk size the kernel uses when the table gives 0 (DM_CHUNK_SIZE_DEFAULT_SECTORS, 16 KiB).
    package static let defaultChunkSize: UInt64 = 32

    package enum State: Sendable, Equatable {
        /// Magic 0: a store the kernel would initialise (header written, area 0 zeroed).
        case new
        case valid
        /// The header's valid flag is 0: the kernel loads the snapshot but fails every I/O on it.
        case invalid
    }

    package var state: State
    /// Sectors per chunk: the table's, or the header's when they differ (the kernel lets the metadata
    /// override the table, with a warning).
    package var chunkSize: UInt64
    /// The table's chunk size when the header overrode it.
    package var overriddenTableChunkSize: UInt64?
    package var exceptions: SnapshotExceptions
    /// The next COW chunk an exception would get (the kernel's `next_free`).
    package var nextFree: UInt64
    /// The metadata area being filled, and its entries so far.
    package var currentArea: UInt64
    package var areaEntries: [(old: UInt64, new: UInt64)]

    /// Exceptions per metadata area: a chunk of 16-byte pairs.
    package var exceptionsPerArea: UInt64 { chunkSize * sectorSize / 16 }

    /// The COW chunk of metadata area `area`.
    package func areaLocation(_ area: UInt64) -> UInt64 { 1 + (exceptionsPerArea + 1) * area }

    /// A failure to read the store: the kernel's words, and what imgmap saw.
    package struct Failure: Error {
        package var message: String
        package var detail: String
        package var exitStatus: ExitStatus = .dataError
    }

    /// Reads the header and every metadata area from `cow`. `tableChunkSize` 0 means "not given".
    package static func read(cow: Device, tableChunkSize: UInt64) throws(Failure) -> PersistentSnapshotStore {
        let supplied = tableChunkSize != 0
        var chunkSize = supplied ? tableChunkSize : defaultChunkSize
        let cowChunks: UInt64
        let header: [UInt8]
        do {
            // The header's fields lie in its first sector; the rest of the chunk is not looked at.
            header = try cow.readSectors(0, count: 1)
        } catch {
            throw Failure(message: "Failed to read snapshot metadata", detail: "COW header (chunk 0): \(describe(error))",
                          exitStatus: exitStatus(of: error))
        }
        let magic = le32(header, 0)
        if magic == 0 {
            return PersistentSnapshotStore(state: .new, chunkSize: chunkSize, overriddenTableChunkSize: nil, exceptions: SnapshotExceptions(),
                                           nextFree: 2, currentArea: 0, areaEntries: [])
        }
        guard magic == Self.magic else {
            throw Failure(message: "Failed to read snapshot metadata",
                          detail: "Invalid or corrupt snapshot: the COW header (chunk 0) has magic 0x\(hex(magic)), not 0x70416e53 (\"SnAp\"), nor 0 (a new store)\(le64(header, 32) == ThinPoolMetadata.magic ? "; it looks like thin-pool metadata" : "")")
        }
        let valid = le32(header, 4)
        let version = le32(header, 8)
        let diskChunk = UInt64(le32(header, 12))
        var overridden: UInt64?
        if supplied && diskChunk != chunkSize || !supplied {
            guard diskChunk > 0, diskChunk & (diskChunk - 1) == 0, diskChunk <= UInt64(Int32.max) >> 9 else {
                throw Failure(message: "Failed to read snapshot metadata",
                              detail: "invalid on-disk chunk size \(diskChunk) in the COW header (chunk 0): not a power of two below 2^22 sectors")
            }
            if supplied { overridden = chunkSize }
            chunkSize = diskChunk
        }
        guard version == diskVersion else {
            throw Failure(message: "Failed to read snapshot metadata",
                          detail: "unable to handle snapshot disk version \(version) (COW header, chunk 0): only version 1 exists")
        }
        var store = PersistentSnapshotStore(state: valid == 0 ? .invalid : .valid, chunkSize: chunkSize, overriddenTableChunkSize: overridden,
                                            exceptions: SnapshotExceptions(), nextFree: 2, currentArea: 0, areaEntries: [])
        guard valid != 0 else { return store }
        cowChunks = cow.size.value / chunkSize
        var pairs: [(old: UInt64, new: UInt64)] = []
        var area: UInt64 = 0
        let perArea = Int(store.exceptionsPerArea)
        while true {
            let location = store.areaLocation(area)
            let bytes: [UInt8]
            do {
                guard location < cowChunks else {
                    throw DeviceReadError(device: cow.displayName, range: SectorRange(start: location * chunkSize, length: chunkSize), size: cow.size.value)
                }
                bytes = try cow.readSectors(location * chunkSize, count: Int(chunkSize))
            } catch {
                throw Failure(message: "Failed to read snapshot metadata",
                              detail: "COW metadata area \(area) (chunk \(location)): \(describe(error)); the previous area was full, so the store continues here",
                              exitStatus: exitStatus(of: error))
            }
            var entries: [(old: UInt64, new: UInt64)] = []
            var full = true
            for i in 0..<perArea {
                let old = le64(bytes, 16 * i)
                let new = le64(bytes, 16 * i + 8)
                if new == 0 {
                    full = false
                    break
                }
                guard new < cowChunks else {
                    throw Failure(message: "Failed to read snapshot metadata",
                                  detail: "COW metadata area \(area) (chunk \(location)), entry \(i): origin chunk \(old) is mapped to COW chunk \(new), past the end of the COW device (\(cowChunks) chunks of \(chunkSize) sectors)")
                }
                if store.nextFree <= new { store.nextFree = new + 1 }
                entries.append((old, new))
            }
            pairs += entries
            if !full {
                store.currentArea = area
                store.areaEntries = entries
                break
            }
            area += 1
        }
        // The kernel's skip_metadata: the next free chunk never lands on a metadata area.
        if store.nextFree % (store.exceptionsPerArea + 1) == 1 { store.nextFree += 1 }
        store.exceptions = SnapshotExceptions(pairs: pairs)
        return store
    }

    static func describe(_ error: Error) -> String {
        (error as? ImgMapFailure)?.description ?? String(describing: error)
    }

    static func exitStatus(of error: Error) -> ExitStatus {
        (error as? ImgMapFailure)?.exitStatus ?? .ioError
    }

    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }
}

/// Little-endian fields of on-disk structures.
@inline(__always) func le32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
    UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
}

@inline(__always) func le64(_ bytes: [UInt8], _ at: Int) -> UInt64 {
    UInt64(le32(bytes, at)) | UInt64(le32(bytes, at + 4)) << 32
}

@inline(__always) func le32(_ bytes: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
    UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self))
}

@inline(__always) func le64(_ bytes: UnsafeRawBufferPointer, _ at: Int) -> UInt64 {
    UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self))
}
