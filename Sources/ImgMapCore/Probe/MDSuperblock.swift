/// md (Linux software RAID) superblocks, as `mdadm --examine` reads them:
/// - 0.90: 4 KiB at the last 64 KiB-aligned 64 KiB of the member, written in the CPU's byte order
///   (either is read); sizes in KiB, data at offset 0.
/// - 1.x: little-endian, 256 bytes plus a 16-bit role per device; 1.0 at 8 KiB from the end (4 KiB
///   aligned), 1.1 at sector 0, 1.2 at 4 KiB; sizes and offsets in sectors.
/// Both carry a checksum that is checked.
package struct MDSuperblock: Sendable {
    package enum Role: Equatable, Sendable {
        case active(Int)
        case spare
        case faulty
        case journal
    }

    package static let magic: UInt32 = 0xa92b4efc
    /// The kernel's MaxSector: "fully recovered / in sync".
    static let maxSector = UInt64.max

    package var version: String
    /// `little` or `big` (0.90 only; 1.x is always little-endian).
    package var byteOrder: String = "little"
    package var uuid: String
    /// 1.x: `homehost:name` as stored; empty for 0.90.
    package var name: String
    package var level: Int
    package var layout: UInt32
    package var chunkSectors: UInt64
    package var raidDisks: Int
    /// Sectors of each member the array uses (raid1/4/5/6/10).
    package var componentSectors: UInt64
    package var dataOffset: UInt64
    /// Sectors of data space on this member (the kernel's rdev->sectors).
    package var dataSectors: UInt64
    /// Where the superblock is, in sectors.
    package var superOffset: UInt64
    package var events: UInt64
    /// This member's slot in the role table.
    package var deviceNumber: Int
    /// Role of each slot, as this superblock records it.
    package var roles: [Role]
    package var featureMap: UInt32 = 0
    /// Sectors of this member already rebuilt (1.x with the recovery-offset feature), else nil.
    package var recoveryOffset: UInt64?
    /// The array's resync checkpoint: `maxSector` when clean and in sync.
    package var resyncOffset: UInt64
    package var reshapeActive: Bool
    package var deviceUUID: String?
    /// 0.90: the preferred minor (`md<N>`).
    package var preferredMinor: Int?
    /// 1.x RAID0: the layout is recorded (MD_FEATURE_RAID0_LAYOUT).
    package var raid0LayoutRecorded = false

    package var role: Role { deviceNumber < roles.count ? roles[deviceNumber] : .spare }

    package var levelName: String {
        switch level {
        case -1: "linear"
        case 0, 1, 4, 5, 6, 10: "raid\(level)"
        case -4: "multipath"
        case -5: "faulty"
        default: "level \(level)"
        }
    }

    /// The name mdadm assembles the array as: the array name without `homehost:`, else `md<minor>`.
    /// A number N (what `mdadm --create /dev/mdN` without --name writes, `host:N`) is /dev/mdN, so its
    /// partitions are mdNp1… as the kernel names them.
    package var arrayName: String? {
        let short = name.split(separator: ":", maxSplits: 1).last.map(String.init) ?? ""
        if !short.isEmpty, short.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) { return "md\(short)" }
        return short.isEmpty ? nil : short
    }

    var json: JSONValue {
        var o: [(String, JSONValue)] = [
            ("version", .string(version)), ("uuid", .string(uuid)), ("level", .string(levelName)),
            ("raid_disks", .number(Int64(raidDisks))), ("events", .unsigned(events)), ("role", .string(roleText(role))),
            ("data_offset", .unsigned(dataOffset)), ("data_size", .unsigned(dataSectors)),
            ("super_offset", .unsigned(superOffset)),
        ]
        if version == "0.90" { o.append(("byte_order", .string(byteOrder))) }
        if !name.isEmpty { o.append(("name", .string(name))) }
        if let deviceUUID { o.append(("device_uuid", .string(deviceUUID))) }
        if level != -1 && level != 1 { o.append(("chunk", .unsigned(chunkSectors))) }
        if level >= 4 || level == 10 { o.append(("layout", .unsigned(UInt64(layout)))) }
        if level >= 1 { o.append(("component_size", .unsigned(componentSectors))) }
        o.append(("clean", .bool(resyncOffset == Self.maxSector)))
        if let recoveryOffset { o.append(("recovery_offset", .unsigned(recoveryOffset))) }
        if reshapeActive { o.append(("reshape", true)) }
        return .object(o)
    }

    /// The kernel's sanity checks of a superblock's geometry, so a corrupt one cannot make probe
    /// loop over billions of devices or divide by a zero chunk.
    func validate(slots: Int, place: String) throws {
        func bad(_ m: String) -> ProbeProblem { ProbeProblem(place: place, message: m) }
        let minimum: [Int: Int] = [-1: 1, 0: 1, 1: 1, 4: 2, 5: 2, 6: 4, 10: 2]
        if let least = minimum[level] {
            guard raidDisks >= least, raidDisks <= slots else {
                throw bad("raid_disks \(raidDisks) is outside \(least)...\(slots) for \(levelName)")
            }
        }
        if [0, 4, 5, 6, 10].contains(level) && chunkSectors == 0 { throw bad("chunk size 0 for \(levelName)") }
        if level >= 1 && componentSectors > dataSectors {
            throw bad("the array uses \(componentSectors) sectors of each member, more than the \(dataSectors) this member holds")
        }
    }

    /// Looks for a superblock in the order 1.2, 1.1, 1.0, 0.90. A block with the md magic whose
    /// checksum or fields fail is `corrupt` (unless a sound one is found at another place).
    static func find(_ volume: ProbeVolume) -> Finding<MDSuperblock> {
        let sectors = volume.size / 512
        var candidates: [(String, UInt64)] = [("1.2", 8), ("1.1", 0)]
        if sectors >= 16 { candidates.append(("1.0", (sectors - 16) & ~7)) }
        if sectors >= 128 { candidates.append(("0.90", (sectors & ~127) - 128)) }
        var corrupt: ProbeProblem?
        var sound: [MDSuperblock] = []
        for (version, at) in candidates {
            do {
                let bytes = try volume.read(at: at * 512, count: 4096)
                guard bytes.count >= 256 else { continue }
                let magicLE = bytes.le32(0), magicBE = bytes.be32(0)
                guard magicLE == magic || magicBE == magic else { continue }
                if version == "0.90" {
                    guard bytes.count == 4096 else { continue }
                    sound.append(try parse090(bytes, at: at, volume: volume))
                    continue
                }
                guard magicLE == magic, bytes.le32(4) == 1 else { continue }
                sound.append(try parse1(bytes, version: version, at: at, volume: volume))
            } catch let problem as ProbeProblem {
                if corrupt == nil { corrupt = problem }
            } catch {
                if corrupt == nil { corrupt = ProbeProblem(place: volume.name, message: "\(error)") }
            }
        }
        // Two sound superblocks of different arrays: the device cannot be told to belong to either
        // (mdadm asks for --metadata). The same array's superblock twice is not possible.
        let arrays = Set(sound.map(\.uuid))
        if arrays.count > 1 {
            let list = sound.map { "\($0.version) of \($0.uuid) at sector \($0.superOffset)" }.joined(separator: ", ")
            return .corrupt(ProbeProblem(place: "\(volume.name): md", message: "superblocks of two arrays (\(list)): the member is left out; zero the stale one with mdadm --zero-superblock --metadata=…"))
        }
        if let first = sound.first { return .found(first) }
        return corrupt.map { .corrupt($0) } ?? .none
    }

    static func parse1(_ b: [UInt8], version: String, at: UInt64, volume: ProbeVolume) throws -> MDSuperblock {
        let place = "\(volume.name): md \(version) superblock at sector \(at)"
        func bad(_ m: String) -> ProbeProblem { ProbeProblem(place: place, message: m) }
        let maxDev = Int(b.le32(220))
        guard maxDev <= (4096 - 256) / 2 else { throw bad("max_dev \(maxDev) is larger than the 4 KiB superblock holds") }
        let size = 256 + 2 * maxDev
        var sum: UInt64 = 0
        var i = 0
        while i + 4 <= size {
            if i != 216 { sum += UInt64(b.le32(i)) }
            i += 4
        }
        if size - i == 2 { sum += UInt64(b.le16(i)) }
        let computed = UInt32(truncatingIfNeeded: (sum & 0xffff_ffff) + (sum >> 32))
        let stored = b.le32(216)
        guard stored == computed else { throw bad("checksum mismatch (stored 0x\(hex32(stored)), computed 0x\(hex32(computed)))") }
        let superOffset = b.le64(144)
        guard superOffset == at else { throw bad("records super_offset \(superOffset)") }
        let feature = b.le32(8)
        let level = Int(Int32(bitPattern: b.le32(72)))
        let dataOffset = b.le64(128), dataSize = b.le64(136)
        let devSectors = volume.size / 512
        guard dataOffset <= devSectors, dataSize <= devSectors - dataOffset else {
            throw bad("data (offset \(dataOffset), \(dataSize) sectors) does not fit the \(devSectors)-sector device")
        }
        var roles: [Role] = []
        for k in 0..<maxDev {
            let r = b.le16(256 + 2 * k)
            switch r {
            case 0xffff: roles.append(.spare)
            case 0xfffe: roles.append(.faulty)
            case 0xfffd: roles.append(.journal)
            default: roles.append(.active(Int(r)))
            }
        }
        let devNumber = Int(b.le32(160))
        guard devNumber < maxDev else { throw bad("dev_number \(devNumber) is not below max_dev \(maxDev)") }
        let sb = MDSuperblock(
            version: version, uuid: mdadmUUID(b, 16), name: b.cString(32, 32), level: level, layout: b.le32(76),
            chunkSectors: UInt64(b.le32(88)), raidDisks: Int(b.le32(92)), componentSectors: b.le64(80),
            dataOffset: dataOffset, dataSectors: dataSize, superOffset: superOffset, events: b.le64(200),
            deviceNumber: devNumber, roles: roles, featureMap: feature,
            recoveryOffset: feature & 2 != 0 ? b.le64(152) : nil, resyncOffset: b.le64(208),
            reshapeActive: feature & 4 != 0, deviceUUID: uuidString(b, 168), preferredMinor: nil,
            raid0LayoutRecorded: feature & 4096 != 0)
        try sb.validate(slots: maxDev, place: place)
        return sb
    }

    static func parse090(_ b: [UInt8], at: UInt64, volume: ProbeVolume) throws -> MDSuperblock {
        let big = b.le32(0) != magic
        func w(_ index: Int) -> UInt32 { big ? b.be32(4 * index) : b.le32(4 * index) }
        let place = "\(volume.name): md 0.90 superblock at sector \(at)"
        func bad(_ m: String) -> ProbeProblem { ProbeProblem(place: place, message: m) }
        guard w(1) == 0, w(2) == 90 else { throw bad("version \(w(1)).\(w(2)), not 0.90") }
        var sum: UInt64 = 0
        for k in 0..<1024 where k != 38 { sum += UInt64(w(k)) }
        let computed = UInt32(truncatingIfNeeded: (sum & 0xffff_ffff) + (sum >> 32))
        guard w(38) == computed else { throw bad("checksum mismatch (stored 0x\(hex32(w(38))), computed 0x\(hex32(computed)))") }
        // events_hi comes first in memory on a big-endian writer, events_lo on a little-endian one.
        let events = big ? UInt64(w(39)) << 32 | UInt64(w(40)) : UInt64(w(40)) << 32 | UInt64(w(39))
        var uuidBytes: [UInt8] = []
        for k in [5, 13, 14, 15] {
            let v = w(k)
            uuidBytes += [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)]
        }
        let uuid = mdadmUUID(uuidBytes, 0)
        var roles: [Role] = []
        for k in 0..<27 {
            let base = 128 + 32 * k
            let state = w(base + 4), raidDisk = Int(w(base + 3))
            if state & 1 != 0 { roles.append(.faulty) }
            else if state & 6 == 6 { roles.append(.active(raidDisk)) }
            else { roles.append(.spare) }
        }
        let this = 992
        let number = Int(w(this))
        guard number < 27 else { throw bad("this_disk number \(number) is not below 27") }
        // The member's own descriptor decides its role as this superblock records it.
        let state = w(this + 4)
        roles[number] = state & 1 != 0 ? .faulty : state & 6 == 6 ? .active(Int(w(this + 3))) : .spare
        let level = Int(Int32(bitPattern: w(7)))
        // The kernel: a 0.90 member's data is everything before the superblock; RAID levels are
        // limited to the 32-bit KiB size field.
        var dataSectors = at
        if level >= 1 && dataSectors >= 2 << 32 { dataSectors = (2 << 32) - 2 }
        let sb = MDSuperblock(
            version: "0.90", byteOrder: big ? "big" : "little", uuid: uuid, name: "", level: level, layout: w(64),
            chunkSectors: UInt64(w(65)) / 512, raidDisks: Int(w(10)), componentSectors: UInt64(w(8)) * 2,
            dataOffset: 0, dataSectors: dataSectors, superOffset: at, events: events, deviceNumber: number,
            roles: roles, recoveryOffset: nil, resyncOffset: w(33) & 1 != 0 ? maxSector : UInt64(w(43)),
            reshapeActive: w(2) > 90, deviceUUID: nil, preferredMinor: Int(w(11)))
        try sb.validate(slots: 27, place: place)
        return sb
    }
}

/// An array UUID as mdadm prints it: four groups of eight hex digits joined by colons.
func mdadmUUID(_ b: [UInt8], _ at: Int) -> String {
    let u = Array(b.hex(at, 16))
    return [0, 8, 16, 24].map { String(u[$0..<$0 + 8]) }.joined(separator: ":")
}

func roleText(_ role: MDSuperblock.Role) -> String {
    switch role {
    case .active(let n): "active \(n)"
    case .spare: "spare"
    case .faulty: "faulty"
    case .journal: "journal"
    }
}

/// What a search for a structure found: a sound one, one that fails its checks, or nothing.
enum Finding<T> {
    case found(T)
    case corrupt(ProbeProblem)
    case none
}

/// A device carrying an md superblock.
struct MDMember {
    let volume: ProbeVolume
    let superblock: MDSuperblock
}
