// compress <bgzf-image> <offset>
//
// Like linear, over the uncompressed content of a BGZF image (SAMv1 §4.1: gzip members of at most 64 KiB
// input with a `BC` extra field, as `bgzip` and `imgmap compress` write them): the segment maps onto
// sector `offset` of that content onwards. There is no such target in the kernel; imgmap defines it so
// that images can stay compressed and still be composed, mapped and verified. Random access uses
// IMAGE.gzi beside the image when present, else an index built by walking the member headers.
// Read-only: scatter refuses to write through it.

public struct CompressTarget: Target {
    public static let name = "compress"

    public let device: Device
    public let token: String
    public let offset: UInt64
    let length: UInt64

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        guard arguments.count == 2 else {
            throw TargetError("Invalid argument count", detail: "compress takes 2 arguments (<bgzf-image> <offset>), got \(arguments.count)")
        }
        guard let offset = KernelNumber.sector(arguments[1]) else {
            throw TargetError("Invalid device sector", detail: "`\(arguments[1])` is not a decimal sector number")
        }
        self.device = try context.compressedDevice(arguments[0])
        self.token = arguments[0]
        self.offset = offset
        self.length = length.value
    }

    public var deviceAreas: [DeviceArea] {
        [DeviceArea(device: device, token: token, start: offset, length: length)]
    }

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        try body(.device(device, token: token, sector: self.offset &+ offset, count: count))
    }

    public var tableArguments: String { "\(token) \(offset)" }
}
