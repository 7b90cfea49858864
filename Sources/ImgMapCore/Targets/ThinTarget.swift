/// A thin device of a pool: its blocks mapped through the pool's metadata, unmapped ones zeros.
///
/// ```
/// thin <pool dev> <dev id> [<external origin dev>]
/// ```
///
/// A thin device of a pool (dm-thin.c `thin_ctr`): virtual block b of the segment (counted from the
/// segment start, in the pool's block size) reads data block d of the pool's data device when the
/// device's mapping tree maps b to d, else zeros, or the external origin's same sectors when one is
/// given. Past the origin's end an unmapped read gives zeros with a writable pool, EIO with a
/// `read_only` one (the kernel then sends it to the origin unchecked). The mappings are read here, in the
/// constructor, and kept as sorted runs (Formats/Thin/ThinMetadata.swift), so `map` is a bisection.
///
/// Constructor checks, in the kernel's order: 2 or 3 arguments, the origin (not the pool itself), the
/// pool device, the device id (< 2^24), that the device is a pool, and that the pool has the device
/// ("Couldn't open thin internal device").
public struct ThinTarget: Target {
    public static let name = "thin"
    static let maxDeviceID: UInt64 = (1 << 24) - 1

    package let poolToken: String
    package let pool: ThinPoolTarget
    package let deviceID: UInt64
    package let externalOrigin: Device?
    package let originToken: String?
    /// Empty when the pool's metadata could not be read (`check` without `--dev`).
    package let mappings: ThinMappings
    let blockSize: UInt64

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        guard arguments.count == 2 || arguments.count == 3 else {
            throw TargetError("Invalid argument count", detail: "<pool dev> <dev id> [<external origin dev>], got \(arguments.count) arguments")
        }
        if arguments.count == 3 {
            guard arguments[0] != arguments[2] else {
                throw TargetError("Error setting origin device", detail: "the origin `\(arguments[2])` is the pool device")
            }
            do {
                externalOrigin = try context.device(arguments[2])
            } catch {
                throw TargetError("Error opening origin device", detail: error.detail ?? error.message, hint: error.hint, exitStatus: error.exitStatus)
            }
            originToken = arguments[2]
        } else {
            externalOrigin = nil
            originToken = nil
        }
        poolToken = arguments[0]
        let poolDevice: Device
        do {
            poolDevice = try context.device(poolToken)
        } catch {
            throw TargetError("Error opening pool device", detail: error.detail ?? error.message, hint: error.hint, exitStatus: error.exitStatus)
        }
        guard let id = KernelNumber.unsignedLong(arguments[1]), id <= Self.maxDeviceID else {
            throw TargetError("Invalid device id", detail: "`\(arguments[1])`: a decimal number from 0 to \(Self.maxDeviceID)")
        }
        deviceID = id
        guard case .mapped(let poolMapped) = poolDevice else {
            throw TargetError("Couldn't get pool mapped device", detail: "`\(poolToken)` is an image file, not a thin-pool device",
                              hint: "name the pool's table with --table \(poolToken)=FILE")
        }
        guard poolMapped.segments.count == 1, let pool = poolMapped.segments[0].target as? ThinPoolTarget else {
            throw TargetError("Couldn't find pool object", detail: "device \(poolMapped.name) is not a single thin-pool segment")
        }
        self.pool = pool
        blockSize = pool.blockSize
        guard let metadata = pool.metadata else {
            mappings = ThinMappings()
            return
        }
        guard metadata.devices[id] != nil else {
            let known = metadata.devices.keys.sorted().map(String.init).joined(separator: ", ")
            throw TargetError("Couldn't open thin internal device",
                              detail: "pool \(poolMapped.name) has no thin device \(id) (\(metadata.isNew ? "its metadata is new: no devices" : "devices: \(known.isEmpty ? "none" : known)"))")
        }
        do {
            mappings = try metadata.mappings(of: id) ?? ThinMappings()
        } catch {
            throw TargetError(error.message, detail: error.description, exitStatus: error.exitStatus)
        }
    }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {
        // thin_iterate_devices checks the pool device up to its whole blocks; the pool is a mapped device
        // whose size is its table's, so there is nothing more to check here. The external origin is not
        // checked by the kernel either.
    }

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        var s = offset
        var left = count
        var run = mappings.firstRun(endingAfter: s / blockSize)
        while left > 0 {
            let block = s / blockSize
            while run < mappings.runCount && mappings.virtualStarts[run] + mappings.lengths[run] <= block { run += 1 }
            if run < mappings.runCount && mappings.virtualStarts[run] <= block {
                // Inside a run: to its end at most, onto the data device.
                let runEnd = (mappings.virtualStarts[run] + mappings.lengths[run]) * blockSize
                let piece = min(left, runEnd - s)
                let data = (mappings.dataStarts[run] + (block - mappings.virtualStarts[run])) * blockSize + s % blockSize
                try SnapshotTarget.emit(pool.dataDevice, token: pool.dataToken, sector: data, count: piece, body)
                s += piece
                left -= piece
            } else {
                let next = run < mappings.runCount ? mappings.virtualStarts[run] * blockSize : UInt64.max
                let piece = min(left, next - s)
                try unmapped(s, piece, body)
                s += piece
                left -= piece
            }
        }
    }

    /// Unmapped sectors: zeros, or the external origin's.
    func unmapped(_ sector: UInt64, _ count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        guard let origin = externalOrigin, let token = originToken else {
            try body(.zero(count: count))
            return
        }
        let size = origin.size.value
        let inside = sector < size ? min(count, size - sector) : 0
        if inside > 0 { try body(.device(origin, token: token, sector: sector, count: inside)) }
        if count > inside { try body(pool.isReadOnly ? .error(count: count - inside) : .zero(count: count - inside)) }
    }

    /// imgmap does not provision: a write would allocate data blocks and rewrite the pool's btrees.
    public var writeRefusal: String? {
        "writing through thin (which allocates data blocks and rewrites the pool's metadata btrees) is not supported; imgmap reads thin devices only"
    }

    public var tableArguments: String {
        "\(poolToken) \(deviceID)" + (originToken.map { " \($0)" } ?? "")
    }
}
