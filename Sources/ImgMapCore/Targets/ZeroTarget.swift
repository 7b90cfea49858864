/// The `zero` target: reads as zeros and drops writes (dm-zero.c). Takes no arguments.
///
/// Table arguments:
///
/// ```
/// zero
/// ```
public struct ZeroTarget: Target {
    public static let name = "zero"

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        guard arguments.isEmpty else {
            throw TargetError("No arguments required", detail: "zero takes no arguments, got `\(arguments.joined(separator: " "))`")
        }
    }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {}

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        try body(.zero(count: count))
    }

    public var tableArguments: String { "" }
}
