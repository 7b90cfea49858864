/// The `mirror` target (legacy dm-mirror): reads come from the first leg, writes go to every leg.
///
/// The legacy dm-mirror (drivers/md/dm-raid1.c, dm-log.c, Linux 6.1). Logs: `core <region_size>
/// [[no]sync]` and `disk <log_dev> <region_size> [[no]sync]`; a region size must be a power of two from 2
/// to the target length. Reads come from the default mirror (the first leg), as the kernel reads
/// them whatever the legs hold; writes go to every leg. The log is not written offline: a disk log
/// keeps the state it had, which the kernel would at worst answer with a resync of equal legs.
///
/// Table arguments:
///
/// ```
/// mirror <log_type> <#log_args> <log_args…> <#mirrors> (<dev> <offset>){#mirrors} [<#features> <features…>]
/// ```
public struct MirrorTarget: Target {
    public static let name = "mirror"

    package struct Leg: Sendable {
        package let device: Device
        package let token: String
        package let offset: UInt64
    }

    package let legs: [Leg]
    let logArguments: [String]
    let features: [String]
    let length: UInt64
    let source: LegsSource

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        // create_dirty_log.
        guard arguments.count >= 2 else {
            throw TargetError("Insufficient mirror log arguments", detail: "mirror needs <log_type> <#log_args> …")
        }
        guard let logCount = RaidTarget.scanUnsigned(arguments[1]) else {
            throw TargetError("Invalid mirror log argument count", detail: "`\(arguments[1])`")
        }
        let used = 2 + Int(logCount)
        guard arguments.count >= used else {
            throw TargetError("Insufficient mirror log arguments", detail: "\(logCount) log arguments announced, \(arguments.count - 2) given")
        }
        let logArgs = Array(arguments[2..<used])
        try Self.checkLog(type: arguments[0], logArgs, length: length.value, context: context)

        var rest = arguments[used...]
        guard let mirrorText = rest.first, let count = RaidTarget.scanUnsigned(mirrorText), mirrorText.first != "-",
              count >= 2, count <= 9 else {
            throw TargetError("Invalid number of mirrors", detail: "`\(rest.first ?? "")`: 2 to 9")
        }
        rest = rest.dropFirst()
        guard rest.count >= 2 * Int(count) else {
            throw TargetError("Too few mirror arguments", detail: "\(count) mirrors need \(2 * count) device and offset arguments, got \(rest.count)")
        }
        var legs: [Leg] = []
        for m in 0..<Int(count) {
            let token = rest[rest.startIndex + 2 * m]
            let offsetText = rest[rest.startIndex + 2 * m + 1]
            guard let offset = KernelNumber.sector(offsetText) else {
                throw TargetError("Invalid offset", detail: "mirror \(m): `\(offsetText)`")
            }
            let device: Device
            do { device = try context.device(token) } catch {
                throw TargetError("Device lookup failure", detail: "mirror \(m): `\(token)`: \(error.message)", exitStatus: error.exitStatus)
            }
            legs.append(Leg(device: device, token: token, offset: offset))
        }
        rest = rest.dropFirst(2 * Int(count))
        // parse_features.
        var features: [String] = []
        if let first = rest.first {
            guard let featureCount = RaidTarget.scanUnsigned(first) else {
                throw TargetError("Invalid number of features", detail: "`\(first)`")
            }
            rest = rest.dropFirst()
            guard Int(featureCount) <= rest.count else {
                throw TargetError("Not enough arguments to support feature count", detail: "\(featureCount) features, \(rest.count) arguments")
            }
            for _ in 0..<Int(featureCount) {
                let feature = rest.first!
                guard feature == "handle_errors" || feature == "keep_log" else {
                    throw TargetError("Unrecognised feature requested", detail: "`\(feature)`: handle_errors or keep_log")
                }
                features.append(feature)
                rest = rest.dropFirst()
            }
            if features.contains("keep_log") && !features.contains("handle_errors") {
                throw TargetError("keep_log feature requires the handle_errors feature")
            }
        }
        guard rest.isEmpty else {
            throw TargetError("Too many mirror arguments", detail: "left over: " + rest.joined(separator: " "))
        }
        self.legs = legs
        self.logArguments = [arguments[0], arguments[1]] + logArgs
        self.features = features
        self.length = length.value
        self.source = LegsSource(legs: legs.map { ($0.device, $0.token, $0.offset) }, what: "mirror")
    }

    /// dm-log.c: every refusal of the log is "Error creating mirror dirty log" for the mirror.
    static func checkLog(type: String, _ args: [String], length: UInt64, context: TargetContext) throws(TargetError) {
        func fail(_ detail: String) -> TargetError { TargetError("Error creating mirror dirty log", detail: detail) }
        var args = args
        switch type {
        case "core":
            break
        case "disk":
            guard args.count >= 2, args.count <= 3 else { throw fail("wrong number of arguments to disk dirty region log (\(args.count))") }
            do { _ = try context.device(args[0]) } catch { throw fail("log device `\(args[0])`: \(error.message)") }
            args.removeFirst()
        default:
            throw fail("unknown log type `\(type)`: core or disk")
        }
        guard args.count >= 1, args.count <= 2 else { throw fail("wrong number of arguments to dirty region log (\(args.count))") }
        if args.count == 2 && args[1] != "sync" && args[1] != "nosync" {
            throw fail("unrecognised sync argument to dirty region log: \(args[1])")
        }
        guard let region = RaidTarget.scanUnsigned(args[0]), args[0].first != "-", region >= 2, UInt64(region) <= length,
              region & (region - 1) == 0 else {
            throw fail("invalid region size \(args[0]): a power of two from 2 to the target length \(length)")
        }
    }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {
        for leg in legs { try body(DeviceArea(device: leg.device, token: leg.token, start: leg.offset, length: length)) }
    }

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        try body(.computed(source, token: legs[0].token, sector: offset, count: count))
    }

    public var tableArguments: String {
        var text = logArguments.joined(separator: " ") + " \(legs.count) " + legs.map { "\($0.token) \($0.offset)" }.joined(separator: " ")
        if !features.isEmpty { text += " \(features.count) " + features.joined(separator: " ") }
        return text
    }
}

/// Identical legs: reads from the first, writes to every one (mirror, and raid1's shape).
final class LegsSource: ComputedSource {
    let legs: [(device: Device, token: String, offset: UInt64)]
    let what: String

    init(legs: [(Device, String, UInt64)], what: String) {
        self.legs = legs.map { (device: $0.0, token: $0.1, offset: $0.2) }
        self.what = what
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at sector: UInt64, io: DeviceIO) throws {
        try io.read(legs[0].device, into: buffer, at: legs[0].offset + sector)
    }

    func write(_ bytes: UnsafeRawBufferPointer, at sector: UInt64, io: DeviceIO) throws {
        for leg in legs { try io.write(leg.device, bytes, at: leg.offset + sector) }
    }

    func writeRefusal(sector: UInt64, count: UInt64) -> String? { nil }

    func forEachLowerArea(sector: UInt64, count: UInt64, _ body: (Device, String, UInt64, UInt64) throws -> Void) rethrows {
        for leg in legs { try body(leg.device, leg.token, leg.offset + sector, count) }
    }

    func describe(sector: UInt64, count: UInt64) -> String {
        "\(what) leg 0 (\(legs[0].token)) sector \(legs[0].offset + sector); writes to every leg"
    }
}
