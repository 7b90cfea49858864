#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `raid` target (dm-raid): md's raid0/1/10/4/5/6 over member devices, a missing member's data rebuilt from the others.
///
/// dm-raid (drivers/md/dm-raid.c, Linux 6.1) over md's raid0/1/10/4/5/6. The constructor runs the
/// kernel's checks in its order: raid_ctr (type, #raid_params, #raid_devs), parse_raid_params (chunk,
/// then each optional parameter, then the combinations, region size, raid10 layout, the flags the
/// type allows), parse_dev_params (`-` for an absent member), the sizes, the metadata superblocks, and
/// last md_run (too many members missing: "Failed to run raid array").
///
/// Table arguments:
///
/// ```
/// raid <raid_type> <#raid_params> <chunk_size> [optional params…] <#raid_devs> (<meta_dev> <data_dev>){#raid_devs}
/// ```
///
/// Mapping: raid0 data chunks go straight to the members. Every other level returns computed pieces
/// (RaidSource): a healthy data chunk reads with one pread of its member, a missing member's chunk is
/// rebuilt from the rest of its row, and writes update every copy (raid1/10) or data and parity
/// (raid4/5/6) as md does.
public struct RaidTarget: Target {
    public static let name = "raid"

    struct Member: Sendable {
        var metaToken: String
        var dataToken: String
        var meta: Device?
        var device: Device?
        /// First sector of array data on the member.
        var dataOffset: UInt64
    }

    struct TypeInfo {
        let name: String
        let level: Int
        let algorithm: ParityAlgorithm?
        let parity: Int
        let minimal: Int
    }

    static let types: [TypeInfo] = [
        TypeInfo(name: "raid0", level: 0, algorithm: nil, parity: 0, minimal: 2),
        TypeInfo(name: "raid1", level: 1, algorithm: nil, parity: 0, minimal: 2),
        TypeInfo(name: "raid10", level: 10, algorithm: nil, parity: 0, minimal: 2),
        TypeInfo(name: "raid4", level: 4, algorithm: .parity0, parity: 1, minimal: 2),
        TypeInfo(name: "raid5_n", level: 5, algorithm: .parityN, parity: 1, minimal: 2),
        TypeInfo(name: "raid5_ls", level: 5, algorithm: .leftSymmetric, parity: 1, minimal: 2),
        TypeInfo(name: "raid5_rs", level: 5, algorithm: .rightSymmetric, parity: 1, minimal: 2),
        TypeInfo(name: "raid5_la", level: 5, algorithm: .leftAsymmetric, parity: 1, minimal: 2),
        TypeInfo(name: "raid5_ra", level: 5, algorithm: .rightAsymmetric, parity: 1, minimal: 2),
        TypeInfo(name: "raid6_zr", level: 6, algorithm: .zeroRestart, parity: 2, minimal: 4),
        TypeInfo(name: "raid6_nr", level: 6, algorithm: .nRestart, parity: 2, minimal: 4),
        TypeInfo(name: "raid6_nc", level: 6, algorithm: .nContinue, parity: 2, minimal: 4),
        TypeInfo(name: "raid6_n_6", level: 6, algorithm: .parityN6, parity: 2, minimal: 4),
        TypeInfo(name: "raid6_ls_6", level: 6, algorithm: .leftSymmetric6, parity: 2, minimal: 4),
        TypeInfo(name: "raid6_rs_6", level: 6, algorithm: .rightSymmetric6, parity: 2, minimal: 4),
        TypeInfo(name: "raid6_la_6", level: 6, algorithm: .leftAsymmetric6, parity: 2, minimal: 4),
        TypeInfo(name: "raid6_ra_6", level: 6, algorithm: .rightAsymmetric6, parity: 2, minimal: 4),
    ]

    /// The ctr flags (dm-raid's CTR_FLAG_*), in the order `dmsetup table` prints them.
    enum Flag: String, CaseIterable {
        case sync, nosync, rebuild, daemon_sleep, min_recovery_rate, max_recovery_rate, write_mostly
        case max_write_behind, stripe_cache, region_size, raid10_copies, raid10_format, delta_disks
        case data_offset, raid10_use_near_sets, journal_dev, journal_mode
    }

    package let typeName: String
    let geometry: RaidGeometry
    let members: [Member]
    /// Members whose data cannot be read (`-`, marked failed or rebuilding).
    let missing: Set<Int>
    let source: RaidSource?
    let length: UInt64
    let parameters: [String]

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        var args = arguments[...]
        guard let typeText = args.popFirst() else { throw TargetError("No arguments", detail: "raid needs <raid_type> <#raid_params> <chunk_size> … <#raid_devs> <meta> <data> …") }
        guard let type = Self.types.first(where: { $0.name.lowercased() == typeText.lowercased() }) else {
            throw TargetError("Unrecognised raid_type", detail: "`\(typeText)`: one of " + Self.types.map(\.name).joined(separator: ", "))
        }
        // dm_read_arg_group: #raid_params must be a number no larger than the arguments left.
        guard let paramText = args.popFirst(), let paramCount = Self.scanUnsigned(paramText), paramCount <= args.count else {
            throw TargetError("Cannot understand number of raid parameters", detail: "`\(args.startIndex > 1 ? arguments[1] : "")` with \(max(0, arguments.count - 2)) arguments after it")
        }
        let params = Array(args.prefix(Int(paramCount)))
        args = args.dropFirst(Int(paramCount))
        let devMax = max(0, args.count - 1) / 2
        guard let devText = args.popFirst(), let devCount = Self.scanUnsigned(devText), devCount >= 1, devCount <= devMax else {
            throw TargetError("Cannot understand number of raid devices parameters",
                              detail: "`\(args.startIndex < arguments.count ? arguments[args.startIndex - 1] : "")` after \(paramCount) raid parameters; the pairs that follow allow 1 to \(devMax)")
        }
        guard devCount <= 253 else { throw TargetError("Invalid number of supplied raid devices", detail: "\(devCount) (1 to 253)") }
        let n = Int(devCount)
        guard !params.isEmpty else {
            throw TargetError("Cannot understand number of raid parameters", detail: "the chunk size is the first raid parameter; #raid_params is 0")
        }

        // parse_raid_params: the chunk size first.
        guard let chunkValue = Self.kstrtoint(params[0]) else {
            throw TargetError("Bad numerical argument given for chunk_size", detail: "`\(params[0])`")
        }
        var chunk = Int64(chunkValue)
        if type.level == 1 {
            chunk = 0   // "Ignoring chunk size parameter for RAID 1"
        } else if chunk <= 0 || chunk & (chunk - 1) != 0 {
            throw TargetError("Chunk size must be a power of 2", detail: "\(params[0]) sectors")
        } else if chunk < 8 {
            throw TargetError("Chunk size value is too small", detail: "\(chunk) sectors; at least 8 (4 KiB)")
        }
        var flags = Set<Flag>()
        var rebuild = Set<Int>()
        var writeMostly = Set<Int>()
        var writeMostlyCount = 0
        var raid10Format = Raid10Format.near
        var raid10Copies = 2
        var regionSize: Int64 = 0
        var dataOffset: Int64 = 0
        var minRate: Int64 = 0
        var maxRate: Int64 = 0
        var journal: (token: String, device: Device)?
        var i = 1
        func once(_ flag: Flag, _ phrase: String) throws(TargetError) {
            if flags.contains(flag) { throw TargetError(phrase, detail: "`\(flag.rawValue)` given twice") }
            flags.insert(flag)
        }
        while i < params.count {
            let key = params[i].lowercased()
            i += 1
            switch key {
            case "nosync": try once(.nosync, "Only one 'nosync' argument allowed"); continue
            case "sync": try once(.sync, "Only one 'sync' argument allowed"); continue
            case "raid10_use_near_sets": try once(.raid10_use_near_sets, "Only one 'raid10_use_new_sets' argument allowed"); continue
            default: break
            }
            guard i < params.count else {
                throw TargetError("Wrong number of raid parameters given", detail: "`\(params[i - 1])` needs a value")
            }
            let value = params[i]
            i += 1
            switch key {
            case "raid10_format":
                try once(.raid10_format, "Only one 'raid10_format' argument pair allowed")
                guard type.level == 10 else { throw TargetError("'raid10_format' is an invalid parameter for this RAID type", detail: type.name) }
                guard let format = Raid10Format(rawValue: value.lowercased()) else {
                    throw TargetError("Invalid 'raid10_format' value given", detail: "`\(value)`: near, far or offset")
                }
                raid10Format = format
                continue
            case "journal_dev":
                try once(.journal_dev, "Only one raid4/5/6 set journaling device allowed")
                guard type.parity > 0 else { throw TargetError("'journal_dev' is an invalid parameter for this RAID type", detail: type.name) }
                let device: Device
                do { device = try context.device(value) } catch {
                    throw TargetError("raid4/5/6 journal device lookup failure", detail: "`\(value)`: \(error.message)", exitStatus: error.exitStatus)
                }
                // MIN_RAID456_JOURNAL_SPACE: 4 MiB + 8 KiB.
                guard device.size.value >= 2 * 4096 + 16 else {
                    throw TargetError("No space for raid4/5/6 journal", detail: "`\(value)` holds \(device.size.value) sectors; at least 8208")
                }
                journal = (value, device)
                continue
            case "journal_mode":
                guard flags.contains(.journal_dev) else { throw TargetError("raid4/5/6 'journal_mode' is invalid without 'journal_dev'") }
                try once(.journal_mode, "Only one raid4/5/6 'journal_mode' argument allowed")
                guard ["writethrough", "writeback"].contains(value.lowercased()) else {
                    throw TargetError("Invalid 'journal_mode' argument", detail: "`\(value)`: writethrough or writeback")
                }
                continue
            default: break
            }
            guard let number = Self.kstrtoint(value).map(Int64.init) else {
                throw TargetError("Bad numerical argument given in raid params", detail: "\(key) `\(value)`")
            }
            switch key {
            case "rebuild":
                guard number >= 0, number <= Int64(n - 1) else { throw TargetError("Invalid rebuild index given", detail: "\(number) (0 to \(n - 1))") }
                guard !rebuild.contains(Int(number)) else { throw TargetError("rebuild for this index already given", detail: "\(number)") }
                rebuild.insert(Int(number))
                flags.insert(.rebuild)
            case "write_mostly":
                guard type.level == 1 else { throw TargetError("write_mostly option is only valid for RAID1", detail: type.name) }
                guard number >= 0, number <= Int64(n - 1) else { throw TargetError("Invalid write_mostly index given", detail: "\(number) (0 to \(n - 1))") }
                writeMostlyCount += 1
                writeMostly.insert(Int(number))
                flags.insert(.write_mostly)
            case "max_write_behind":
                guard type.level == 1 else { throw TargetError("max_write_behind option is only valid for RAID1", detail: type.name) }
                try once(.max_write_behind, "Only one max_write_behind argument pair allowed")
                guard number >= 0 else { throw TargetError("Max write-behind limit out of range", detail: "\(number)") }
            case "daemon_sleep":
                try once(.daemon_sleep, "Only one daemon_sleep argument pair allowed")
                guard number >= 0 else { throw TargetError("daemon sleep period out of range", detail: "\(number)") }
            case "data_offset":
                try once(.data_offset, "Only one data_offset argument pair allowed")
                // MIN_FREE_RESHAPE_SPACE is 32 sectors; the offset is whole pages.
                guard number >= 0, number == 0 || (number >= 32 && number % 8 == 0) else {
                    throw TargetError("Bogus data_offset value", detail: "\(number): 0, or a multiple of 8 sectors from 32")
                }
                dataOffset = number
            case "delta_disks":
                try once(.delta_disks, "Only one delta_disks argument pair allowed")
                guard abs(number) >= 1, abs(number) <= Int64(253 - type.minimal) else {
                    throw TargetError("Too many delta_disk requested", detail: "\(number) (1 to \(253 - type.minimal) either way)")
                }
            case "stripe_cache":
                try once(.stripe_cache, "Only one stripe_cache argument pair allowed")
                guard type.parity > 0 else { throw TargetError("Inappropriate argument: stripe_cache", detail: type.name) }
                guard number >= 0 else { throw TargetError("Bogus stripe cache entries value", detail: "\(number)") }
            case "min_recovery_rate":
                try once(.min_recovery_rate, "Only one min_recovery_rate argument pair allowed")
                guard number >= 0 else { throw TargetError("min_recovery_rate out of range", detail: "\(number)") }
                minRate = number
            case "max_recovery_rate":
                try once(.max_recovery_rate, "Only one max_recovery_rate argument pair allowed")
                guard number >= 0 else { throw TargetError("max_recovery_rate out of range", detail: "\(number)") }
                maxRate = number
            case "region_size":
                try once(.region_size, "Only one region_size argument pair allowed")
                regionSize = number
            case "raid10_copies":
                try once(.raid10_copies, "Only one raid10_copies argument pair allowed")
                guard number >= 2, number <= Int64(n) else { throw TargetError("Bad value for 'raid10_copies'", detail: "\(number) (2 to \(n))") }
                raid10Copies = Int(number)
            default:
                throw TargetError("Unable to parse RAID parameter", detail: "`\(params[i - 2])`")
            }
        }
        if flags.contains(.sync) && flags.contains(.nosync) { throw TargetError("sync and nosync are mutually exclusive") }
        if flags.contains(.rebuild) && (flags.contains(.sync) || flags.contains(.nosync)) {
            throw TargetError("sync/nosync and rebuild are mutually exclusive")
        }
        if writeMostlyCount >= n { throw TargetError("Can't set all raid1 devices to write_mostly", detail: "\(writeMostlyCount) of \(n)") }
        if maxRate != 0 && minRate > maxRate { throw TargetError("Bogus recovery rates", detail: "min \(minRate) > max \(maxRate)") }
        // validate_region_size (not for raid0).
        if type.level != 0 && regionSize != 0 {
            let minRegion = Int64(length.value / (1 << 21))
            if regionSize > Int64(length.value) { throw TargetError("Supplied region size is too large", detail: "\(regionSize) > \(length.value) sectors") }
            if regionSize < minRegion { throw TargetError("Supplied region size is too small", detail: "\(regionSize) < \(minRegion) sectors") }
            if regionSize & (regionSize - 1) != 0 { throw TargetError("Region size is not a power of 2", detail: "\(regionSize)") }
            if regionSize < chunk { throw TargetError("Region size is smaller than the chunk size", detail: "\(regionSize) < \(chunk)") }
        }
        if type.level == 10 {
            if raid10Copies > n { throw TargetError("Not enough devices to satisfy specification", detail: "\(raid10Copies) copies over \(n) devices") }
            if raid10Format == .near && flags.contains(.raid10_use_near_sets) {
                throw TargetError("RAID10 format 'near' and 'raid10_use_near_sets' are incompatible")
            }
        }
        // rs_check_for_valid_flags: what each level accepts.
        let allowed: Set<Flag> = switch type.level {
        case 0: [.data_offset]
        case 1: [.sync, .nosync, .rebuild, .write_mostly, .daemon_sleep, .min_recovery_rate, .max_recovery_rate,
                 .max_write_behind, .region_size, .delta_disks, .data_offset]
        case 10: [.sync, .nosync, .rebuild, .daemon_sleep, .min_recovery_rate, .max_recovery_rate, .region_size,
                  .raid10_copies, .raid10_format, .delta_disks, .data_offset, .raid10_use_near_sets]
        case 6: [.sync, .rebuild, .daemon_sleep, .min_recovery_rate, .max_recovery_rate, .stripe_cache, .region_size,
                 .delta_disks, .data_offset, .journal_dev, .journal_mode]
        default: [.sync, .nosync, .rebuild, .daemon_sleep, .min_recovery_rate, .max_recovery_rate, .stripe_cache,
                  .region_size, .delta_disks, .data_offset, .journal_dev, .journal_mode]
        }
        let invalid = flags.subtracting(allowed)
        guard invalid.isEmpty else {
            throw TargetError("Invalid flags combination",
                              detail: "\(type.name) does not take " + Flag.allCases.filter(invalid.contains).map(\.rawValue).joined(separator: ", "))
        }

        // parse_dev_params.
        let pairs = Array(args)
        var members: [Member] = []
        for k in 0..<n {
            let metaToken = pairs[2 * k]
            let dataToken = pairs[2 * k + 1]
            var member = Member(metaToken: metaToken, dataToken: dataToken, meta: nil, device: nil, dataOffset: UInt64(dataOffset))
            if metaToken != "-" {
                do { member.meta = try context.device(metaToken) } catch {
                    throw TargetError("RAID metadata device lookup failure", detail: "member \(k): `\(metaToken)`: \(error.message)", exitStatus: error.exitStatus)
                }
            }
            if dataToken == "-" {
                if rebuild.contains(k) { throw TargetError("Drive designated for rebuild not specified", detail: "member \(k) is `-`") }
                if member.meta != nil { throw TargetError("No data device supplied with metadata device", detail: "member \(k)") }
                members.append(member)
                continue
            }
            do { member.device = try context.device(dataToken) } catch {
                throw TargetError("RAID device lookup failure", detail: "member \(k): `\(dataToken)`: \(error.message)", exitStatus: error.exitStatus)
            }
            members.append(member)
        }

        // rs_set_dev_and_array_sectors.
        let level: RaidLevel
        var devSectors: UInt64
        var arraySectors = length.value
        switch type.level {
        case 0:
            level = .raid0
            guard length.value % UInt64(n) == 0 else {
                throw TargetError("Target length not divisible by number of data devices", detail: "\(length.value) sectors over \(n) members")
            }
            devSectors = length.value / UInt64(n)
        case 1:
            level = .raid1
            devSectors = length.value
        case 10:
            level = .raid10(raid10Format, copies: raid10Copies)
            let scaled = length.value * UInt64(raid10Copies)
            guard scaled % UInt64(n) == 0 else {
                throw TargetError("Target length not divisible by number of data devices", detail: "\(length.value) sectors × \(raid10Copies) copies over \(n) members")
            }
            devSectors = scaled / UInt64(n)
        default:
            level = .parity(type.algorithm!, parityMembers: type.parity)
            let data = UInt64(max(1, n - type.parity))
            guard n > type.parity, length.value % data == 0 else {
                throw TargetError("Target length not divisible by number of data devices", detail: "\(length.value) sectors over \(n - type.parity) data members")
            }
            devSectors = length.value / data
        }
        for (k, member) in members.enumerated() {
            guard let device = member.device else { continue }
            if device.size.value < member.dataOffset + devSectors {
                throw TargetError("Component device(s) too small",
                                  detail: "member \(k) `\(member.dataToken)` holds \(device.size.value) sectors; it needs \(member.dataOffset + devSectors)")
            }
        }

        // analyse_superblocks: failed or rebuilding members from the metadata devices.
        var missing = Set(members.indices.filter { members[$0].device == nil })
        missing.formUnion(rebuild)
        if members.contains(where: { $0.meta != nil }) {
            let found = try Self.readSuperblocks(members, count: n)
            missing.formUnion(found.missing)
            for (k, offset) in found.dataOffsets { members[k].dataOffset = offset }
        }

        // md_run: the personality's own checks.
        var arrayChunk = UInt64(chunk)
        switch level {
        case .raid0:
            devSectors = devSectors / arrayChunk * arrayChunk
            arraySectors = devSectors * UInt64(n)
            if !missing.isEmpty { throw Self.failedToRun("raid0 cannot run with member(s) \(Self.list(missing)) missing") }
        case .raid1:
            arrayChunk = 0
            if missing.count >= n { throw Self.failedToRun("every raid1 leg is missing") }
        case .raid10:
            if !members.contains(where: { $0.meta != nil }) {
                throw Self.failedToRun("Linux 6.1's md refuses raid10 without metadata devices as an unsupported layout",
                                       hint: "give each member a metadata device (1 MiB zeroed images will do)")
            }
            let geometry = RaidGeometry(level: level, members: n, chunk: arrayChunk, memberSectors: devSectors, arraySectors: arraySectors)
            // Every array chunk must keep one readable copy.
            let rows = max(1, Int(min(UInt64(n * raid10Copies), arraySectors / arrayChunk)))
            for x in 0..<rows where geometry.raid10Copies(UInt64(x) * arrayChunk).allSatisfy({ missing.contains($0.member) }) {
                throw Self.failedToRun("raid10 members \(Self.list(missing)) hold every copy of chunk \(x)")
            }
        case .parity(_, let parity):
            if n < type.minimal { throw Self.failedToRun("\(type.name) needs at least \(type.minimal) members, got \(n)") }
            if missing.count > parity {
                throw Self.failedToRun("\(type.name) tolerates \(parity) missing member\(parity == 1 ? "" : "s"); \(missing.count) are missing (\(Self.list(missing)))")
            }
            devSectors = devSectors / arrayChunk * arrayChunk
            arraySectors = devSectors * UInt64(n - parity)
        }
        _ = journal
        self.typeName = type.name
        self.geometry = RaidGeometry(level: level, members: n, chunk: arrayChunk, memberSectors: devSectors, arraySectors: arraySectors)
        self.members = members
        self.missing = missing
        self.length = length.value
        self.parameters = params
        if case .raid0 = level {
            self.source = nil
        } else {
            self.source = RaidSource(typeName: type.name, geometry: geometry, members: members, missing: missing)
        }
    }

    static func failedToRun(_ detail: String, hint: String? = nil) -> TargetError {
        TargetError("Failed to run raid array", detail: detail, hint: hint)
    }

    static func list(_ members: Set<Int>) -> String { members.sorted().map(String.init).joined(separator: ", ") }

    /// sscanf("%u"): optional whitespace and sign, decimal digits, nothing after; -1 wraps past any max.
    static func scanUnsigned(_ text: String) -> UInt32? {
        var t = Substring(text)
        while let c = t.first, c == " " || c == "\t" || c == "\n" { t = t.dropFirst() }
        var negative = false
        if t.first == "+" { t = t.dropFirst() } else if t.first == "-" { negative = true; t = t.dropFirst() }
        guard !t.isEmpty, t.allSatisfy({ $0.isASCII && $0.isNumber }), let value = UInt64(t), value <= UInt32.max else { return nil }
        return negative ? (value == 0 ? 0 : UInt32.max) : UInt32(value)
    }

    /// The kernel's kstrtoint(…, 10): optional sign, decimal digits, an optional trailing newline.
    static func kstrtoint(_ text: String) -> Int32? {
        var t = Substring(text)
        if t.last == "\n" { t = t.dropLast() }
        var negative = false
        if t.first == "+" { t = t.dropFirst() } else if t.first == "-" { negative = true; t = t.dropFirst() }
        guard !t.isEmpty, t.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int64(t) else { return nil }
        let signed = negative ? -value : value
        guard signed >= Int64(Int32.min), signed <= Int64(Int32.max) else { return nil }
        return Int32(signed)
    }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {
        try Self.forEachMemberArea(members, sectors: geometry.memberSectors, body)
    }

    /// The data area of each present member (raid and mdraid).
    static func forEachMemberArea<E: Error>(_ members: [Member], sectors: UInt64, _ body: (DeviceArea) throws(E) -> Void) throws(E) {
        for member in members {
            guard let device = member.device else { continue }
            try body(DeviceArea(device: device, token: member.dataToken, start: member.dataOffset, length: sectors))
        }
    }

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        var x = offset
        let end = offset + count
        while x < end {
            if x >= geometry.arraySectors {
                try body(.error(count: end - x))
                return
            }
            let stop = min(end, geometry.arraySectors)
            guard let source else {
                // raid0: plain striping over the members.
                let n = UInt64(geometry.members)
                let chunkIndex = x / geometry.chunk
                let inner = x % geometry.chunk
                let piece = min(stop - x, geometry.chunk - inner)
                let member = members[Int(chunkIndex % n)]
                try body(.device(member.device!, token: member.dataToken,
                                 sector: member.dataOffset + (chunkIndex / n) * geometry.chunk + inner, count: piece))
                x += piece
                continue
            }
            let piece: UInt64
            if geometry.chunk == 0 {
                piece = stop - x
            } else {
                piece = min(stop - x, geometry.chunk - x % geometry.chunk)
            }
            try body(.computed(source, token: source.readToken(x), sector: x, count: piece))
            x += piece
        }
    }

    public var tableArguments: String {
        "\(typeName) \(parameters.count) " + parameters.joined(separator: " ") + " \(members.count) "
            + members.map { "\($0.metaToken) \($0.dataToken)" }.joined(separator: " ")
    }
}
