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
}

extension Target {
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
    public var device: Device
    /// The device as the table spells it.
    public var token: String
    public var start: UInt64
    public var length: UInt64
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
