/// `mdraid <level> <layout> <chunk> <member_sectors> <#devs> (<dev> <data_offset> | - -){#devs}`
///
/// An md array as md itself maps it, for the arrays dm-raid cannot present: RAID6 in md's own
/// layouts (mdadm's default, `left-symmetric`, is one; dm-raid names only the DDF and `-6` forms)
/// and RAID10 without dm-raid metadata devices (which Linux 6.1's dm-raid refuses). This is imgmap's
/// own target, not the kernel's: `imgmap probe` writes it for such arrays, and a table holding it
/// loads in imgmap only. Reads and writes go through the same code as `raid` (md's raid5.c and
/// raid10.c layouts, rebuilt chunks for missing members, parity updated on writes).
///
/// - `level`: `raid4`, `raid5`, `raid6` or `raid10`.
/// - `layout`: mdadm's name (`mdadm --examine` prints it): for raid4 `parity-last`; for raid5
///   `left-asymmetric`, `right-asymmetric`, `left-symmetric`, `right-symmetric`, `parity-first`,
///   `parity-last`; for raid6 those and `ddf-zero-restart`, `ddf-N-restart`, `ddf-N-continue`,
///   `left-asymmetric-6`, `right-asymmetric-6`, `left-symmetric-6`, `right-symmetric-6`,
///   `parity-first-6`; for raid10 `n<copies>`, `f<copies>` or `o<copies>`.
/// - `chunk`: sectors, a power of two, at least 8. `member_sectors`: the sectors of each member that
///   hold array data (md's component size), from each member's `data_offset`.
/// - The segment's length must be the array's size, as md computes it from these.
public struct MDRaidTarget: Target {
    public static let name = "mdraid"

    let level: String
    let layout: String
    let geometry: RaidGeometry
    let members: [RaidTarget.Member]
    let source: RaidSource

    static let parityLayouts: [String: (ParityAlgorithm, levels: Set<String>)] = [
        "left-asymmetric": (.leftAsymmetric, ["raid5"]), "right-asymmetric": (.rightAsymmetric, ["raid5"]),
        "left-symmetric": (.leftSymmetric, ["raid5"]), "right-symmetric": (.rightSymmetric, ["raid5"]),
        "parity-first": (.parity0, ["raid5"]), "parity-last": (.parityN, ["raid4", "raid5"]),
    ]

    static let raid6Layouts: [String: ParityAlgorithm] = [
        "left-asymmetric": .leftAsymmetricPQ, "right-asymmetric": .rightAsymmetricPQ,
        "left-symmetric": .leftSymmetricPQ, "right-symmetric": .rightSymmetricPQ,
        "parity-first": .parity0PQ, "parity-last": .parityN6,
        "ddf-zero-restart": .zeroRestart, "ddf-N-restart": .nRestart, "ddf-N-continue": .nContinue,
        "left-asymmetric-6": .leftAsymmetric6, "right-asymmetric-6": .rightAsymmetric6,
        "left-symmetric-6": .leftSymmetric6, "right-symmetric-6": .rightSymmetric6, "parity-first-6": .parity0Q6,
    ]

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        guard arguments.count >= 5 else {
            throw TargetError("Invalid argument count", detail: "mdraid takes <level> <layout> <chunk> <member_sectors> <#devs> and a <dev> <data_offset> pair per member, got \(arguments.count) arguments")
        }
        let level = arguments[0], layout = arguments[1]
        guard let chunk = KernelNumber.sector(arguments[2]), chunk >= 8, chunk & (chunk - 1) == 0 else {
            throw TargetError("Invalid chunk size", detail: "`\(arguments[2])`: the chunk is a power of two of at least 8 sectors")
        }
        guard let memberSectors = KernelNumber.sector(arguments[3]), memberSectors >= chunk else {
            throw TargetError("Invalid member size", detail: "`\(arguments[3])`: sectors of array data on each member, at least one chunk")
        }
        guard let count = Int(arguments[4]), count >= 2, count <= 253 else {
            throw TargetError("Invalid number of devices", detail: "`\(arguments[4])`: 2 to 253 members")
        }
        guard arguments.count == 5 + 2 * count else {
            throw TargetError("Invalid argument count", detail: "\(count) members need \(2 * count) arguments after <#devs>, got \(arguments.count - 5)")
        }

        let raidLevel: RaidLevel
        var minimal = 2
        var parity = 0
        switch level {
        case "raid4", "raid5":
            guard let (algorithm, levels) = Self.parityLayouts[layout], levels.contains(level) else {
                throw TargetError("Invalid layout", detail: "`\(layout)` for \(level): one of " + Self.parityLayouts.filter { $0.value.levels.contains(level) }.keys.sorted().joined(separator: ", "))
            }
            raidLevel = .parity(algorithm, parityMembers: 1)
            parity = 1
        case "raid6":
            guard let algorithm = Self.raid6Layouts[layout] else {
                throw TargetError("Invalid layout", detail: "`\(layout)` for raid6: one of " + Self.raid6Layouts.keys.sorted().joined(separator: ", "))
            }
            raidLevel = .parity(algorithm, parityMembers: 2)
            parity = 2
            minimal = 4
        case "raid10":
            let formats: [Character: Raid10Format] = ["n": .near, "f": .far, "o": .offset]
            guard let letter = layout.first, let format = formats[letter], let copies = Int(layout.dropFirst()),
                  copies >= 2, copies <= count else {
                throw TargetError("Invalid layout", detail: "`\(layout)` for raid10: n, f or o and a number of copies from 2 to the members (\(count)), as mdadm writes it (`n2`)")
            }
            raidLevel = .raid10(format, copies: copies)
        default:
            throw TargetError("Invalid level", detail: "`\(level)`: raid4, raid5, raid6 or raid10")
        }
        guard count >= minimal else { throw TargetError("Invalid number of devices", detail: "\(level) needs at least \(minimal) members, got \(count)") }

        var members: [RaidTarget.Member] = []
        var missing = Set<Int>()
        for k in 0..<count {
            let token = arguments[5 + 2 * k], offsetText = arguments[6 + 2 * k]
            if token == "-" {
                guard offsetText == "-" else {
                    throw TargetError("Invalid member", detail: "member \(k) is `-` (missing): its offset is `-` too, not `\(offsetText)`")
                }
                members.append(RaidTarget.Member(metaToken: "-", dataToken: "-", meta: nil, device: nil, dataOffset: 0))
                missing.insert(k)
                continue
            }
            guard let offset = KernelNumber.sector(offsetText) else {
                throw TargetError("Invalid device sector", detail: "member \(k): `\(offsetText)` is not a decimal sector number")
            }
            let device = try context.device(token)
            members.append(RaidTarget.Member(metaToken: "-", dataToken: token, meta: nil, device: device, dataOffset: offset))
        }

        // md's array size from the member size (raid5.c raid5_size, raid10.c raid10_size).
        let chunks = memberSectors / chunk
        let arraySectors: UInt64
        switch raidLevel {
        case .raid10(let format, let copies):
            if format == .near {
                arraySectors = chunks * UInt64(count) / UInt64(copies) * chunk
            } else {
                arraySectors = chunks / UInt64(copies) * UInt64(count) * chunk
            }
            let geometry = RaidGeometry(level: raidLevel, members: count, chunk: chunk, memberSectors: chunks * chunk, arraySectors: arraySectors)
            let rows = max(1, min(UInt64(count * copies), arraySectors / chunk))
            for x in 0..<rows where geometry.raid10Copies(x * chunk).allSatisfy({ missing.contains($0.member) }) {
                throw TargetError("Failed to run raid array", detail: "raid10 members \(RaidTarget.list(missing)) hold every copy of chunk \(x)")
            }
        default:
            arraySectors = chunks * chunk * UInt64(count - parity)
            if missing.count > parity {
                throw TargetError("Failed to run raid array", detail: "\(level) tolerates \(parity) missing member\(parity == 1 ? "" : "s"); \(missing.count) are missing (\(RaidTarget.list(missing)))")
            }
        }
        guard length.value == arraySectors else {
            throw TargetError("Target length is not the array's size",
                              detail: "\(length.value) sectors; \(level) \(layout) over \(count) members of \(chunks * chunk) sectors in \(chunk)-sector chunks holds \(arraySectors)")
        }
        for (k, member) in members.enumerated() {
            guard let device = member.device else { continue }
            if device.size.value < member.dataOffset + chunks * chunk {
                throw TargetError("Component device(s) too small",
                                  detail: "member \(k) `\(member.dataToken)` holds \(device.size.value) sectors; it needs \(member.dataOffset + chunks * chunk)")
            }
        }
        geometry = RaidGeometry(level: raidLevel, members: count, chunk: chunk, memberSectors: chunks * chunk, arraySectors: arraySectors)
        self.level = level
        self.layout = layout
        self.members = members
        source = RaidSource(typeName: "\(level) \(layout)", geometry: geometry, members: members, missing: missing)
    }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {
        try RaidTarget.forEachMemberArea(members, sectors: geometry.memberSectors, body)
    }

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        var x = offset
        let end = offset + count
        while x < end {
            let piece = min(end - x, geometry.chunk - x % geometry.chunk)
            try body(.computed(source, token: source.readToken(x), sector: x, count: piece))
            x += piece
        }
    }

    public var tableArguments: String {
        "\(level) \(layout) \(geometry.chunk) \(geometry.memberSectors) \(members.count) "
            + members.map { $0.device == nil ? "- -" : "\($0.dataToken) \($0.dataOffset)" }.joined(separator: " ")
    }
}
