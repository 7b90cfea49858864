/// The `linear` target: the segment maps onto one device from a start sector.
///
/// Maps the segment onto `device` from sector `offset` (dm-linear.c). The offset is plain decimal digits,
/// as the kernel's `sscanf("%llu%c")` reads it: `05` is fine, `+5`, `-1` and `0x10` are not.
///
/// Table arguments:
///
/// ```
/// linear <device> <offset>
/// ```
public struct LinearTarget: Target {
    public static let name = "linear"

    package let device: Device
    package let token: String
    package let offset: UInt64
    let length: UInt64

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        try self.init(arguments: arguments, length: length, name: Self.name, lookup: context.device)
    }

    /// linear's constructor with another way to look the device up (`compress` reads a BGZF image).
    init(arguments: [String], length: Sector, name: String, lookup: (String) throws(TargetError) -> Device) throws(TargetError) {
        guard arguments.count == 2 else {
            throw TargetError("Invalid argument count", detail: "\(name) takes 2 arguments (<device> <offset>), got \(arguments.count)")
        }
        guard let offset = KernelNumber.sector(arguments[1]) else {
            throw TargetError("Invalid device sector", detail: "`\(arguments[1])` is not a decimal sector number")
        }
        self.device = try lookup(arguments[0])
        self.token = arguments[0]
        self.offset = offset
        self.length = length.value
    }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {
        try body(DeviceArea(device: device, token: token, start: offset, length: length))
    }

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        try body(.device(device, token: token, sector: self.offset &+ offset, count: count))
    }

    public var tableArguments: String { "\(token) \(offset)" }
}
