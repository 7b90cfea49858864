/// Assembling md arrays from their members as `mdadm --assemble` does: members grouped by array
/// UUID, the freshest superblock (highest event count) decides every member's role, members with an
/// older event count or a faulty role are left out and reported, and the array becomes a table:
/// `linear` (md linear, and RAID1 read through its first in-sync member), `striped` (RAID0, one
/// line per zone), or `raid` in dm-raid syntax (RAID4/5/6/10, with `-` for a missing member).
extension Prober {
    /// Assembles every complete-enough array not yet assembled; returns whether any was.
    func assembleArrays() -> Bool {
        var groups: [String: [MDMember]] = [:]
        var order: [String] = []
        for member in mdMembers where !mdArraysDone.contains(member.superblock.uuid) {
            if groups[member.superblock.uuid] == nil { order.append(member.superblock.uuid) }
            groups[member.superblock.uuid, default: []].append(member)
        }
        var any = false
        for uuid in order {
            let members = groups[uuid]!
            let freshest = members.max { $0.superblock.events < $1.superblock.events }!.superblock
            let raidDisks = freshest.raidDisks
            // Only assemble once every member that may still come (from a later layer) had its
            // chance: an array missing members waits until nothing else turns up.
            var present: [Int: MDMember] = [:]
            var left: [(String, String)] = []
            for member in members {
                let sb = member.superblock
                let role = sb.deviceNumber < freshest.roles.count ? freshest.roles[sb.deviceNumber] : .spare
                if sb.events < freshest.events {
                    left.append((member.volume.name, "stale: events \(sb.events) < \(freshest.events)"))
                    continue
                }
                guard case .active(let slot) = role, slot < raidDisks else {
                    left.append((member.volume.name, roleText(role)))
                    continue
                }
                if let recovery = sb.recoveryOffset, recovery != MDSuperblock.maxSector {
                    left.append((member.volume.name, "being rebuilt (recovered up to sector \(recovery))"))
                    continue
                }
                if let other = present[slot] {
                    problems.append("md \(uuid): \(other.volume.name) and \(member.volume.name) both claim role \(slot) with events \(sb.events): \(member.volume.name) left out")
                    continue
                }
                if sb.level != freshest.level || sb.raidDisks != raidDisks || sb.chunkSectors != freshest.chunkSectors || sb.layout != freshest.layout {
                    problems.append("md \(uuid): \(member.volume.name) records a different geometry (\(sb.levelName), \(sb.raidDisks) devices) from the freshest superblock (\(freshest.levelName), \(raidDisks) devices): left out")
                    continue
                }
                present[slot] = member
            }
            let missing = (0..<raidDisks).filter { present[$0] == nil }
            let tolerated: Int
            switch freshest.level {
            case 1: tolerated = raidDisks - 1
            case 4, 5: tolerated = 1
            case 6: tolerated = 2
            case 10: tolerated = raidDisks - 1  // checked per copy set below
            default: tolerated = 0
            }
            if missing.count > tolerated || (freshest.level == 10 && !raid10Readable(freshest, present: Set(present.keys))) {
                // Maybe a later layer brings the rest; reportIncomplete says so at the end otherwise.
                continue
            }
            mdArraysDone.insert(uuid)
            any = true
            let name = claim(freshest.arrayName ?? "md\(freshest.preferredMinor ?? mdReports.count)")
            var report: [(String, JSONValue)] = [
                ("name", .string(name)), ("uuid", .string(uuid)), ("version", .string(freshest.version)),
                ("level", .string(freshest.levelName)), ("raid_disks", .number(Int64(raidDisks))),
                ("events", .unsigned(freshest.events)),
            ]
            if !freshest.name.isEmpty { report.append(("array_name", .string(freshest.name))) }
            if freshest.level != 1 && freshest.level != -1 { report.append(("chunk", .unsigned(freshest.chunkSectors))) }
            if freshest.level >= 4 || freshest.level == 10 { report.append(("layout", .unsigned(UInt64(freshest.layout)))) }
            report.append(("members", .array((0..<raidDisks).map { slot in
                guard let m = present[slot] else { return .object([("role", .number(Int64(slot))), ("device", .null), ("state", "missing")]) }
                return .object([("role", .number(Int64(slot))), ("device", .string(m.volume.name)),
                                ("events", .unsigned(m.superblock.events)), ("data_offset", .unsigned(m.superblock.dataOffset)),
                                ("state", "in sync")])
            })))
            report.append(("left_out", .array(left.map { .object([("device", .string($0.0)), ("reason", .string($0.1))]) })))
            for (device, reason) in left { notes.append("md \(name): \(device) left out (\(reason))") }
            let degraded = !missing.isEmpty
            report.append(("state", .string(freshest.reshapeActive ? "reshaping" : degraded ? "degraded" : freshest.resyncOffset == MDSuperblock.maxSector ? "clean" : "not in sync")))
            do {
                if freshest.reshapeActive {
                    throw ProbeProblem(place: "md \(name)", message: "a reshape is in progress (the layout changes part-way through the array): not mapped; finish it with mdadm first")
                }
                if freshest.resyncOffset != MDSuperblock.maxSector && freshest.level >= 1 {
                    notes.append("md \(name): the array was not clean (resync checkpoint \(freshest.resyncOffset)); copies or parity past it may differ")
                }
                let (lines, volume) = try mdTable(freshest, name: name, present: present)
                addDevice(name, lines)
                report.append(("size", .unsigned(lines.reduce(0) { $0 + $1.length })))
                if let volume { worklist.append(volume) }
                else { notes.append("md \(name): \(freshest.levelName) is mapped, but what it holds is not probed (probe reads inside RAID10 arrays of the near layout only, and inside RAID6 arrays missing at most one member)") }
            } catch let problem as ProbeProblem {
                problems.append(problem.description)
                report.append(("problem", .string(problem.message)))
            } catch {
                problems.append("md \(name): \(error)")
            }
            mdReports.append(.object(report))
        }
        return any
    }

    /// RAID10: every group of copies keeps at least one member (near layout; far/offset: any member
    /// missing from two adjacent devices loses data).
    func raid10Readable(_ sb: MDSuperblock, present: Set<Int>) -> Bool {
        let near = Int(sb.layout & 0xff), far = Int(sb.layout >> 8 & 0xff)
        let copies = max(1, near * far)
        let n = sb.raidDisks
        if far == 1 {
            // Near copies: a chunk's copies lie on `near` consecutive devices from a multiple of near.
            for k in 0..<n {
                let first = (k * near) % n
                if (0..<near).allSatisfy({ !present.contains((first + $0) % n) }) { return false }
            }
            return copies >= 1
        }
        for d in 0..<n where !present.contains(d) && !present.contains((d + 1) % n) { return false }
        return true
    }

    /// The table of an assembled array and, when it reads through plain mappings, a volume to probe
    /// further (a raid-target array is not read by probe).
    func mdTable(_ sb: MDSuperblock, name: String, present: [Int: MDMember]) throws -> ([ProbeLine], ProbeVolume?) {
        let n = sb.raidDisks
        let chunk = sb.chunkSectors
        func member(_ slot: Int) -> MDMember { present[slot]! }
        switch sb.level {
        case -1:
            var lines: [ProbeLine] = []
            var pieces: [(ProbeVolume, UInt64, UInt64)] = []
            var start: UInt64 = 0
            for slot in 0..<n {
                let m = member(slot)
                var sectors = m.superblock.dataSectors
                if chunk > 0 { sectors -= sectors % chunk }
                guard sectors > 0 else { continue }
                lines.append(ProbeLine(start: start, length: sectors, target: "linear", arguments: [m.volume.name, String(m.superblock.dataOffset)]))
                pieces.append((m.volume, m.superblock.dataOffset * 512, sectors * 512))
                start += sectors
            }
            return (lines, ProbeVolume(name: name, size: start * 512, layout: .concat(pieces), counter: counter))
        case 0:
            guard chunk > 0 else { throw ProbeProblem(place: "md \(name)", message: "RAID0 with chunk size 0") }
            let sizes = (0..<n).map { member($0).superblock.dataSectors / chunk * chunk }
            let distinct = Array(Set(sizes)).sorted().filter { $0 > 0 }
            if distinct.count > 1 && sb.version != "0.90" && !sb.raid0LayoutRecorded {
                throw ProbeProblem(place: "md \(name)", message: "a multi-zone RAID0 without a recorded layout: the kernel refuses it (raid0.default_layout unset), and so does probe")
            }
            let original = sb.version == "0.90" || sb.layout != 2
            var lines: [ProbeLine] = []
            var pieces: [(ProbeVolume, UInt64, UInt64)] = []
            var start: UInt64 = 0
            var previous: UInt64 = 0
            for size in distinct {
                let slots = (0..<n).filter { sizes[$0] > previous }
                let k = slots.count
                // The original layout picks the device from the chunk number in the whole array, the
                // alternate one from the chunk number within the zone: a rotation of the zone's devices.
                let rotation = original ? Int((start / chunk) % UInt64(k)) : 0
                let ordered = (0..<k).map { slots[($0 + rotation) % k] }
                let length = UInt64(k) * (size - previous)
                var args = [String(k), String(chunk)]
                var stripes: [(ProbeVolume, UInt64)] = []
                for slot in ordered {
                    let m = member(slot)
                    args += [m.volume.name, String(m.superblock.dataOffset + previous)]
                    stripes.append((m.volume, (m.superblock.dataOffset + previous) * 512))
                }
                lines.append(ProbeLine(start: start, length: length, target: "striped", arguments: args))
                let zone = ProbeVolume(name: name, size: length * 512, layout: .striped(stripes, chunk: chunk * 512), counter: counter)
                pieces.append((zone, 0, length * 512))
                start += length
                previous = size
            }
            return (lines, ProbeVolume(name: name, size: start * 512, layout: .concat(pieces), counter: counter))
        case 1:
            guard let slot = (0..<n).first(where: { present[$0] != nil }) else {
                throw ProbeProblem(place: "md \(name)", message: "no member in sync")
            }
            let m = member(slot)
            let line = ProbeLine(start: 0, length: sb.componentSectors, target: "linear", arguments: [m.volume.name, String(m.superblock.dataOffset)])
            return ([line], ProbeVolume(name: name, size: sb.componentSectors * 512, layout: .slice(m.volume, offset: m.superblock.dataOffset * 512), counter: counter))
        case 4, 5, 6:
            let line = try raidLine(sb, name: name, present: present)
            // Probe's own reader rebuilds a missing chunk through P only.
            if sb.level == 6 && present.count < n - 1 { return ([line], nil) }
            let geometry = RaidGeometry(level: .parity(try parityAlgorithm(sb, place: "md \(name)"), parityMembers: sb.level == 6 ? 2 : 1),
                                        members: n, chunk: chunk, memberSectors: sb.componentSectors / chunk * chunk, arraySectors: line.length)
            let members = (0..<n).map { slot in present[slot].map { ($0.volume, $0.superblock.dataOffset * 512) } }
            return ([line], ProbeVolume(name: name, size: line.length * 512, layout: .parity(geometry, members), counter: counter))
        case 10:
            let line = try raidLine(sb, name: name, present: present)
            let near = Int(sb.layout & 0xff), far = Int(sb.layout >> 8 & 0xff)
            guard far == 1, near >= 1, (0..<n).allSatisfy({ present[$0] != nil }) || near > 1 else { return ([line], nil) }
            // Near copies: chunk c's copies start at device (c × near) mod n, row (c × near) div n.
            // Read through a striped view of each copy set is not expressible; read the copies directly.
            let members = (0..<n).map { slot in present[slot].map { ($0.volume, $0.superblock.dataOffset * 512) } }
            return ([line], ProbeVolume(name: name, size: line.length * 512, layout: .near(near: near, chunk: chunk * 512, members), counter: counter))
        default:
            throw ProbeProblem(place: "md \(name)", message: "\(sb.levelName) arrays are not mapped")
        }
    }

    /// The dm-raid line: `raid <type> <#params> <chunk> [data_offset <s>] [raid10_copies <n>
    /// raid10_format <f>] <#devs> <meta> <data>…` with `-` for no metadata device and for a
    /// missing member.
    func raidLine(_ sb: MDSuperblock, name: String, present: [Int: MDMember]) throws -> ProbeLine {
        let n = sb.raidDisks
        let chunk = sb.chunkSectors
        let place = "md \(name)"
        let type: String
        let params: [String] = [String(chunk)]
        var length: UInt64
        let component = chunk > 0 ? sb.componentSectors / chunk * chunk : sb.componentSectors
        switch sb.level {
        case 4, 5, 6:
            // md's RAID4 keeps parity on the last device: dm-raid's raid5_n (its "raid4" is parity first).
            let algorithm = try parityAlgorithm(sb, place: place)
            let parity = sb.level == 6 ? 2 : 1
            length = component * UInt64(n - parity)
            guard let t = RaidTarget.types.first(where: { $0.parity == parity && $0.algorithm == algorithm })?.name else {
                // md's own RAID6 layouts (mdadm's default among them): dm-raid has no name for them.
                let layout = MDRaidTarget.raid6Layouts.first { $0.value == algorithm }!.key
                return try mdraidLine(sb, layout: layout, length: length, present: present)
            }
            type = t
        default:
            let near = UInt64(sb.layout & 0xff), far = UInt64(sb.layout >> 8 & 0xff), offset = sb.layout & 0x10000 != 0
            guard near >= 1, far >= 1, near == 1 || far == 1, near * far >= 2 else {
                throw ProbeProblem(place: place, message: "RAID10 layout 0x\(String(sb.layout, radix: 16)) (near \(near), far \(far)) is not one imgmap maps")
            }
            // raid10_size: chunks per device, divided by far copies, times devices, divided by near copies.
            var chunks = component / max(chunk, 1)
            chunks /= far
            length = chunks * UInt64(n) / near * max(chunk, 1)
            // dm-raid runs raid10 only with metadata devices, which an md array does not have.
            return try mdraidLine(sb, layout: near > 1 ? "n\(near)" : offset ? "o\(far)" : "f\(far)", length: length, present: present)
        }
        if length == 0 { throw ProbeProblem(place: place, message: "the array is empty") }
        // dm-raid without metadata devices reads each member from its sector 0 (its data_offset
        // parameter is not applied then: checked with the kernel oracle), so a member whose data starts
        // further in is given through a linear device of its own, named as lvm names its images.
        var args = [type, String(params.count)] + params + [String(n)]
        for slot in 0..<n {
            guard let member = present[slot] else { args += ["-", "-"]; continue }
            if member.superblock.dataOffset == 0 {
                args += ["-", member.volume.name]
                continue
            }
            let image = claim("\(name)_rimage_\(slot)")
            addDevice(image, [ProbeLine(start: 0, length: component, target: "linear",
                                        arguments: [member.volume.name, String(member.superblock.dataOffset)])])
            args += ["-", image]
        }
        return ProbeLine(start: 0, length: length, target: "raid", arguments: args)
    }

    /// md's layout of a RAID4/5/6 array, refused when md defines no such layout.
    func parityAlgorithm(_ sb: MDSuperblock, place: String) throws -> ParityAlgorithm {
        guard let algorithm = ParityAlgorithm(mdLevel: sb.level, layout: sb.layout) else {
            throw ProbeProblem(place: place, message: sb.level == 5 ? "RAID5 layout \(sb.layout) has no dm-raid equivalent"
                                                                    : "RAID6 layout \(sb.layout) is not one md defines")
        }
        return algorithm
    }

    /// imgmap's `mdraid` line, for an array dm-raid cannot present: md's level and layout names, the
    /// component size, and each member with its data offset (`- -` when missing).
    func mdraidLine(_ sb: MDSuperblock, layout: String, length: UInt64, present: [Int: MDMember]) throws -> ProbeLine {
        guard sb.chunkSectors >= 8, sb.chunkSectors & (sb.chunkSectors - 1) == 0 else {
            throw ProbeProblem(place: "md \(sb.arrayName ?? sb.uuid)", message: "chunk of \(sb.chunkSectors) sectors: md uses a power of two of at least 8")
        }
        let component = sb.componentSectors / sb.chunkSectors * sb.chunkSectors
        var args = ["raid\(sb.level)", layout, String(sb.chunkSectors), String(component), String(sb.raidDisks)]
        for slot in 0..<sb.raidDisks {
            guard let member = present[slot] else { args += ["-", "-"]; continue }
            args += [member.volume.name, String(member.superblock.dataOffset)]
        }
        return ProbeLine(start: 0, length: length, target: "mdraid", arguments: args)
    }

    /// Arrays that never got enough members, VGs that never got all PVs: reported at the end.
    func reportIncomplete() {
        var seen: Set<String> = []
        for member in mdMembers where !mdArraysDone.contains(member.superblock.uuid) && seen.insert(member.superblock.uuid).inserted {
            let sb = member.superblock
            let found = mdMembers.filter { $0.superblock.uuid == sb.uuid }.map(\.volume.name)
            problems.append("md \(sb.arrayName ?? sb.uuid) (\(sb.levelName), \(sb.raidDisks) devices): too few members in sync to assemble (found: \(found.joined(separator: ", ")))")
        }
        reportIncompleteVolumeGroups()
    }
}
