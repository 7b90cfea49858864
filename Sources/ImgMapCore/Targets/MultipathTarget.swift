/// The `multipath` target: every path reaches the same LUN, and I/O goes to the first path of the initial priority group.
///
/// dm-mpath.c (Linux 6.1): every path is the same LUN, so reads and writes go to one path: the first
/// path of the initial priority group, the one the kernel's selectors start with. Selectors:
/// round-robin and queue-length (at most one path argument, a repeat count shown as 1), service-time
/// (repeat count, relative throughput 0..100).
///
/// Table arguments:
///
/// ```
/// multipath <#features> <features…> <#hw_handler_args> <hw_handler…> <#priority_groups> <initial_group>
///           (<selector> <#selector_args> <selector_args…> <#paths> <#path_args> (<path> <path_args…>){#paths}){#priority_groups}
/// ```
public struct MultipathTarget: Target {
    public static let name = "multipath"

    package struct Path: Sendable {
        package let device: Device
        package let token: String
        package let arguments: [String]
    }

    package struct Group: Sendable {
        package let selector: String
        package let selectorArguments: [String]
        package let paths: [Path]
    }

    package let groups: [Group]
    package let initialGroup: Int
    let features: [String]
    let handler: [String]
    let length: UInt64

    static let handlers = ["alua", "emc", "hp_sw", "rdac"]

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        var args = arguments[...]
        // dm_read_arg / dm_read_arg_group: a %u in [min, max] (and, grouped, no more than what is left).
        func readArg(_ min: UInt32, _ max: UInt32, _ phrase: String, grouped: Bool = false) throws(TargetError) -> Int {
            guard let text = args.popFirst(), let value = RaidTarget.scanUnsigned(text), value >= min, value <= max,
                  !grouped || Int(value) <= args.count else {
                throw TargetError(phrase, detail: "`\(args.startIndex > 0 && args.startIndex <= arguments.count ? arguments[args.startIndex - 1] : "")`")
            }
            return Int(value)
        }
        var features: [String] = []
        var featureCount = try readArg(0, 8, "invalid number of feature args", grouped: true)
        var bio = false
        while featureCount > 0 {
            let name = args.popFirst()!
            featureCount -= 1
            features.append(name)
            switch name.lowercased() {
            case "queue_if_no_path", "retain_attached_hw_handler":
                continue
            case "pg_init_retries" where featureCount >= 1:
                features.append(String(try readArg(1, 50, "pg_init_retries must be between 1 and 50")))
                featureCount -= 1
            case "pg_init_delay_msecs" where featureCount >= 1:
                features.append(String(try readArg(0, 60000, "pg_init_delay_msecs must be between 0 and 60000")))
                featureCount -= 1
            case "queue_mode" where featureCount >= 1:
                let mode = args.popFirst()!
                featureCount -= 1
                guard ["bio", "rq", "mq"].contains(mode.lowercased()) else {
                    throw TargetError("Unknown 'queue_mode' requested", detail: "`\(mode)`: bio, rq or mq")
                }
                bio = mode.lowercased() == "bio"
                features.append(mode)
            default:
                throw TargetError("Unrecognised multipath feature request", detail: "`\(name)`")
            }
        }
        var handler: [String] = []
        let handlerCount = try readArg(0, 1024, "invalid number of hardware handler args", grouped: true)
        if handlerCount > 0 {
            handler = Array(args.prefix(handlerCount))
            args = args.dropFirst(handlerCount)
            // bio-based multipath ignores a hardware handler ("doesn't allow hardware handler args").
            if !bio && !Self.handlers.contains(handler[0]) {
                throw TargetError("unknown hardware handler type", detail: "`\(handler[0])`: " + Self.handlers.joined(separator: ", "))
            }
        }
        let groupCount = try readArg(0, 1024, "invalid number of priority groups")
        var next = try readArg(0, 1024, "invalid initial priority group number")
        if (groupCount == 0) != (next == 0) {
            throw TargetError("invalid initial priority group", detail: "group \(next) of \(groupCount)")
        }
        let initial = next
        var groups: [Group] = []
        while !args.isEmpty {
            guard args.count >= 2 else {
                throw TargetError("not enough priority group arguments", detail: "group \(groups.count + 1): `\(args.joined(separator: " "))`")
            }
            let selector = args.popFirst()!
            guard ["round-robin", "queue-length", "service-time"].contains(selector) else {
                throw TargetError("unknown path selector type", detail: "`\(selector)`: round-robin, queue-length or service-time")
            }
            let selectorCount = try readArg(0, 1024, "invalid number of path selector args", grouped: true)
            let selectorArgs = Array(args.prefix(selectorCount))
            args = args.dropFirst(selectorCount)
            let pathCount = try readArg(1, 1024, "invalid number of paths")
            let pathArgCount = try readArg(0, 1024, "invalid number of selector args")
            var paths: [Path] = []
            for p in 0..<pathCount {
                guard args.count >= 1 + pathArgCount else {
                    throw TargetError("not enough path parameters", detail: "group \(groups.count + 1) path \(p + 1): \(1 + pathArgCount) arguments needed, \(args.count) left")
                }
                let token = args.popFirst()!
                let pathArgs = Array(args.prefix(pathArgCount))
                args = args.dropFirst(pathArgCount)
                let device: Device
                do { device = try context.device(token) } catch {
                    throw TargetError("error getting device", detail: "`\(token)`: \(error.message)", exitStatus: error.exitStatus)
                }
                try Self.checkPathArguments(selector, pathArgs)
                paths.append(Path(device: device, token: token, arguments: pathArgs))
            }
            groups.append(Group(selector: selector, selectorArguments: selectorArgs, paths: paths))
            next -= 1
        }
        guard groups.count == groupCount else {
            throw TargetError("priority group count mismatch", detail: "\(groupCount) announced, \(groups.count) given")
        }
        self.groups = groups
        self.initialGroup = initial
        self.features = features
        self.handler = handler
        self.length = length.value
    }

    static func checkPathArguments(_ selector: String, _ args: [String]) throws(TargetError) {
        let max = selector == "service-time" ? 2 : 1
        guard args.count <= max else {
            throw TargetError("\(selector) ps: incorrect number of arguments", detail: "\(args.count) path arguments, at most \(max)")
        }
        if let first = args.first, RaidTarget.scanUnsigned(first) == nil {
            throw TargetError("\(selector) ps: invalid repeat count", detail: "`\(first)`")
        }
        if args.count == 2 {
            guard let throughput = RaidTarget.scanUnsigned(args[1]), throughput <= 100 else {
                throw TargetError("service-time ps: invalid relative_throughput value", detail: "`\(args[1])`: 0 to 100")
            }
        }
    }

    /// The path I/O goes to: the first path of the initial group.
    var activePath: Path? { groups.isEmpty ? nil : groups[max(0, initialGroup - 1)].paths.first }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {
        for group in groups {
            for path in group.paths { try body(DeviceArea(device: path.device, token: path.token, start: 0, length: length)) }
        }
    }

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        guard let path = activePath else { return try body(.error(count: count)) }
        try body(.device(path.device, token: path.token, sector: offset, count: count))
    }

    public var tableArguments: String {
        var text = "\(features.count)" + features.map { " \($0)" }.joined() + " \(handler.count)" + handler.map { " \($0)" }.joined()
        text += " \(groups.count) \(initialGroup)"
        for group in groups {
            let shown = group.selector == "service-time" ? 2 : 1
            text += " \(group.selector) 0 \(group.paths.count) \(shown)"
            for path in group.paths {
                text += " \(path.token)"
                text += group.selector == "service-time" ? " 1 \(path.arguments.count == 2 ? path.arguments[1] : "1")" : " 1"
            }
        }
        return text + " "
    }
}
