// hello_target <device> <sector>
//
// The device-mapper tutorial's module (huwan/dm-target, mapper.c) as an imgmap target: exactly two
// arguments, the second parsed as a sector number but unused, and sector s of the mapped device is
// sector s of <device>.

import ImgMapCore

public struct HelloTarget: Target {
    public static let name = "hello_target"

    let device: Device
    let token: String
    let start: UInt64
    let length: UInt64

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        guard arguments.count == 2 else {
            throw TargetError("Invalid argument count", detail: "hello_target takes 2 arguments (<device> <sector>), got \(arguments.count)")
        }
        // The module reads the sector with sscanf("%llu") and then ignores it, as here.
        guard let start = KernelNumber.sector(arguments[1]) else {
            throw TargetError("Invalid device sector", detail: "`\(arguments[1])` is not a decimal sector number")
        }
        self.device = try context.device(arguments[0])
        self.token = arguments[0]
        self.start = start
        self.length = length.value
    }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {
        try body(DeviceArea(device: device, token: token, start: 0, length: length))
    }

    /// The module's map sets `bio->bi_bdev` and leaves the sector alone: s goes to s.
    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        try body(.device(device, token: token, sector: offset, count: count))
    }

    public var tableArguments: String { "\(token) \(start)" }
}
