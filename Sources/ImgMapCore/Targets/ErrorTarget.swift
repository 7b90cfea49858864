/// The `error` target: every read and write of the segment fails with EIO (dm-target.c, io_err_map).
/// Linux 6.1 ignores any arguments.
///
/// Table arguments:
///
/// ```
/// error [ignored arguments…]
/// ```
public struct ErrorTarget: Target {
    public static let name = "error"

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {}

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {}

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        try body(.error(count: count))
    }

    public var tableArguments: String { "" }
}
