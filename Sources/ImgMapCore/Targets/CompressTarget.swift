/// The `compress` target: a linear mapping over the uncompressed content of a BGZF image (imgmap's own; the kernel has none).
///
/// Like linear, over the uncompressed content of a BGZF image (SAMv1 §4.1: gzip members of at most 64 KiB
/// input with a `BC` extra field, as `bgzip` and `imgmap compress` write them): the segment maps onto
/// sector `offset` of that content onwards. There is no such target in the kernel; imgmap defines it so
/// that images can stay compressed and still be composed, mapped and verified. Random access uses
/// IMAGE.gzi beside the image when present, else an index built by walking the member headers.
/// Read-only: scatter refuses to write through it.
///
/// Table arguments:
///
/// ```
/// compress <bgzf-image> <offset>
/// ```
public struct CompressTarget: Target {
    public static let name = "compress"

    /// The mapping is linear's; only the device differs.
    let linear: LinearTarget

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        linear = try LinearTarget(arguments: arguments, length: length, name: Self.name, lookup: context.compressedDevice)
    }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {
        try linear.forEachDeviceArea(body)
    }

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        try linear.map(offset: offset, count: count, body)
    }

    public var tableArguments: String { linear.tableArguments }
}
