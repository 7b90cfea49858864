/// A device-mapper target type, like the kernel's `struct target_type`: a constructor that does every
/// check (`ctr`) and a mapping that is plain arithmetic with no I/O (`map`).
public protocol Target: Sendable {
    /// The name tables use, as `DM_MSG_PREFIX`.
    static var name: String { get }

    /// Validates `arguments` for a segment of `length` sectors, looking devices up through `context`.
    /// Throws the kernel's phrase for the first check that fails, in the kernel's order.
    init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError)

    /// Calls `body` with each device area the segment uses, checked against their devices once the whole
    /// table is read ("too small for target"), as the kernel does when the table is completed.
    func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E)

    /// Maps `count` sectors from `offset` (relative to the segment start) onto pieces, in order.
    func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows

    /// The constructor arguments in the kernel's normal form (`dmsetup table`), devices by their token.
    var tableArguments: String { get }

    /// Why a write through this target is refused before anything is written (nil: it can be written).
    /// Scatter consults it for every segment a write reaches, through every layer.
    var writeRefusal: String? { get }

    /// Checks, before anything is written, that a write of `count` sectors from `offset` can be done
    /// (a snapshot's COW has room for the new exceptions).
    func checkWrite(offset: UInt64, count: UInt64) throws

    /// Called by scatter just before it writes `count` sectors from `offset` through this target, for
    /// targets whose mapping changes when written (a snapshot allocates exceptions in its COW and copies
    /// the origin's chunks there, as the kernel does before the data goes down). Afterwards `map` must
    /// give where the data goes.
    func prepareWrite(offset: UInt64, count: UInt64, io: WriteIO) throws

    /// Devices a write may change beyond the extents `map` gives now (a snapshot's COW), so that scatter
    /// opens their images for writing up front.
    var devicesWrittenOnWrite: [Device] { get }
}

extension Target {
    public var writeRefusal: String? { nil }
    public func checkWrite(offset: UInt64, count: UInt64) throws {}
    public func prepareWrite(offset: UInt64, count: UInt64, io: WriteIO) throws {}
    public var devicesWrittenOnWrite: [Device] { [] }
}

/// What a target's `prepareWrite` may do: read and write whole devices' sectors through the images
/// scatter opened for writing.
public struct WriteIO {
    let writers: [ObjectIdentifier: ImageFile]

    /// Scatter builds it from the images it opened for writing, by device identity.
    package init(writers: [ObjectIdentifier: ImageFile]) {
        self.writers = writers
    }

    /// Reads sectors of `device` (through its map when it is a mapped device).
    public func read(_ device: Device, sector: UInt64, count: Int) throws -> [UInt8] {
        try device.readSectors(sector, count: count)
    }

    /// Writes `bytes` (whole sectors) at `sector` of `device`, through its map when it is a mapped device.
    public func write(_ device: Device, _ bytes: [UInt8], at sector: UInt64) throws {
        try bytes.withUnsafeBytes { try DeviceIO(writers: writers).write(device, $0, at: sector) }
    }
}

extension Target {
    /// The target type's table name (``Target/name``), for code that holds a target value.
    public var name: String { Self.name }

    /// The device areas as an array (for tests and small tables).
    public var deviceAreas: [DeviceArea] {
        var areas: [DeviceArea] = []
        forEachDeviceArea { areas.append($0) }
        return areas
    }
}

/// A range of a device a target uses.
public struct DeviceArea: Sendable {
    /// The device the area lies on.
    public var device: Device
    /// The device as the table spells it.
    public var token: String
    /// First sector of the area on `device` (512-byte sectors, absolute on the device).
    public var start: UInt64
    /// Sectors in the area; the loader refuses the table when `start + length` passes the device's end.
    public var length: UInt64

    /// An area of `length` sectors of `device` from sector `start`; `token` is how the table named it.
    public init(device: Device, token: String, start: UInt64, length: UInt64) {
        self.device = device
        self.token = token
        self.start = start
        self.length = length
    }
}

/// Where a target sends a piece of its range.
public enum MappedPiece {
    /// Sectors `sector ..< sector + count` of `device` (named `token` in the table).
    case device(Device, token: String, sector: UInt64, count: UInt64)
    /// Reads as zeros; writes are dropped.
    case zero(count: UInt64)
    /// Reads and writes fail with EIO.
    case error(count: UInt64)
    /// Sectors `sector ..< sector + count` of `source`'s own space: bytes computed from lower devices
    /// (decrypted, reconstructed …). `token` names the lower device for provenance (nil when several).
    case computed(any ComputedSource, token: String?, sector: UInt64, count: UInt64)
}

/// What a constructor may ask of the table loader: the device a token names (`dm_get_device`).
public struct TargetContext {
    let lookup: (String) throws(TargetError) -> Device
    let lookupCompressed: (String) throws(TargetError) -> Device
    /// The name of the device whose table is being loaded (for messages), when known.
    public var deviceName: String?
    /// Key material the user supplied for this device (`--key NAME=FILE`), for targets whose table
    /// holds no usable key (crypt's keyring keys, the zeros of a `dmsetup table` dump).
    public var suppliedKey: SecretBytes?
    /// The segment's first sector in its table. Most targets map relative to it; dm-snap's targets map
    /// by the absolute sector (the kernel's `snapshot_map` and `origin_map` never subtract it).
    public internal(set) var start: Sector = .zero
    /// The snapshots of each origin in this set of tables, shared by every table the loader builds
    /// (snapshot-origin writes copy into each of them).
    package internal(set) var snapshots = SnapshotRegistry()

    /// A context that resolves tokens with `lookup` (and BGZF image tokens with `compressed`, which by
    /// default refuses every token with "Device lookup failed"). The table loader builds the real one;
    /// build your own to construct a target in a test without tables.
    public init(lookup: @escaping (String) throws(TargetError) -> Device,
                compressed: @escaping (String) throws(TargetError) -> Device = { token throws(TargetError) in
                    throw TargetError("Device lookup failed", detail: "\(token): no compressed images here")
                },
                deviceName: String? = nil, suppliedKey: SecretBytes? = nil) {
        self.lookup = lookup
        self.lookupCompressed = compressed
        self.deviceName = deviceName
        self.suppliedKey = suppliedKey
    }

    /// The device `token` names: a `--dev` binding, a lower table, or a path.
    public func device(_ token: String) throws(TargetError) -> Device {
        try lookup(token)
    }

    /// The BGZF image `token` names, as a device of its uncompressed content.
    public func compressedDevice(_ token: String) throws(TargetError) -> Device {
        try lookupCompressed(token)
    }
}
