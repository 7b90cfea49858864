/// Activating LVM2 volume groups as `vgchange -ay` does: PVs grouped by the VG their metadata names,
/// the copy with the highest seqno taken, PVs matched to the VG's `physical_volumes` by UUID, and
/// each visible LV's segments as the tables lvm loads (`<vg>-<lv>`, dashes doubled): `linear` for
/// one stripe, `striped <#stripes> <stripe_size> (<pv> <pe_start + pe × extent_size>)…`.
extension Prober {
    struct VolumeGroupCandidate {
        var name: String
        var id: String
        var newest: LVMMetadataCopy
        var pvs: [LVMPhysicalVolume]
    }

    func volumeGroups() -> [VolumeGroupCandidate] {
        var byID: [String: VolumeGroupCandidate] = [:]
        var order: [String] = []
        for pv in physicalVolumes {
            for copy in pv.metadata {
                if byID[copy.vgID] == nil {
                    order.append(copy.vgID)
                    byID[copy.vgID] = VolumeGroupCandidate(name: copy.vgName, id: copy.vgID, newest: copy, pvs: [])
                }
                if copy.seqno > byID[copy.vgID]!.newest.seqno { byID[copy.vgID]!.newest = copy }
            }
        }
        // A PV without metadata areas belongs to the VG whose metadata lists its UUID.
        for id in order {
            let listed = Set(byID[id]!.newest.root["physical_volumes"]?.sections.compactMap { $0.1["id"]?.string?.filter { $0 != "-" } } ?? [])
            byID[id]!.pvs = physicalVolumes.filter { listed.contains($0.uuid) }
        }
        return order.map { byID[$0]! }
    }

    /// Activates every VG whose PVs are all present (or, once nothing else can turn up, reports the
    /// missing ones). Returns whether any VG was activated.
    func activateVolumeGroups() -> Bool {
        var any = false
        for candidate in volumeGroups() where !volumeGroupsDone.contains(candidate.id) {
            let vg = candidate.newest.root
            let pvSections = vg["physical_volumes"]?.sections ?? []
            var missing: [String] = []
            var pvByKey: [String: (LVMPhysicalVolume, UInt64)] = [:]
            var duplicate: [String] = []
            for (key, section) in pvSections {
                let uuid = (section["id"]?.string ?? "").filter { $0 != "-" }
                let matches = candidate.pvs.filter { $0.uuid == uuid }
                if matches.count > 1 { duplicate.append("\(lvmDashed(uuid)) on \(matches.map(\.volume.name).joined(separator: ", "))") }
                guard let pv = matches.first else { missing.append("\(key) (\(lvmDashed(uuid)))"); continue }
                pvByKey[key] = (pv, UInt64(max(0, section["pe_start"]?.integer ?? 0)))
            }
            if !missing.isEmpty { continue }  // reportIncompleteVolumeGroups says so at the end
            volumeGroupsDone.insert(candidate.id)
            var report: [(String, JSONValue)] = [("name", .string(candidate.name)), ("id", .string(candidate.id)),
                                                 ("seqno", .unsigned(candidate.newest.seqno))]
            let extentSize = UInt64(max(0, vg["extent_size"]?.integer ?? 0))
            report.append(("extent_size", .unsigned(extentSize)))
            report.append(("pvs", .array(pvSections.map { key, section in
                .object([("key", .string(key)), ("id", .string(section["id"]?.string ?? "")),
                         ("device", pvByKey[key].map { .string($0.0.volume.name) } ?? .null),
                         ("pe_start", .unsigned(pvByKey[key]?.1 ?? 0)), ("pe_count", .number(section["pe_count"]?.integer ?? 0))])
            })))
            let stale = candidate.pvs.flatMap { pv in pv.metadata.filter { $0.vgID == candidate.id && $0.seqno < candidate.newest.seqno }.map { (pv, $0) } }
            for (pv, copy) in stale {
                notes.append("VG \(candidate.name): \(pv.volume.name) holds older metadata (seqno \(copy.seqno) < \(candidate.newest.seqno)); the newest is used")
            }
            if !duplicate.isEmpty {
                let text = "VG \(candidate.name): duplicate PV UUID \(duplicate.joined(separator: "; ")): which copy is the PV cannot be told, so no LV is activated"
                problems.append(text)
                report.append(("problem", .string(text)))
                vgReports.append(.object(report))
                any = true
                continue
            }
            guard extentSize > 0 else {
                problems.append("VG \(candidate.name): extent_size is missing or 0")
                vgReports.append(.object(report))
                continue
            }
            var lvReports: [JSONValue] = []
            for (lvName, lv) in vg["logical_volumes"]?.sections ?? [] {
                var lvReport: [(String, JSONValue)] = [("name", .string(lvName)), ("id", .string(lv["id"]?.string ?? ""))]
                let status = lv["status"]?.strings ?? []
                let visible = status.contains("VISIBLE")
                lvReport.append(("visible", .bool(visible)))
                var segments: [JSONValue] = []
                var lines: [ProbeLine] = []
                var pieces: [(ProbeVolume, UInt64, UInt64)] = []
                var unsupported: String?
                for (_, segment) in lv.sections.filter({ $0.0.hasPrefix("segment") }) {
                    let type = segment["type"]?.string ?? "?"
                    let start = UInt64(max(0, segment["start_extent"]?.integer ?? 0)) * extentSize
                    let length = UInt64(max(0, segment["extent_count"]?.integer ?? 0)) * extentSize
                    segments.append(.object([("type", .string(type)), ("start", .unsigned(start)), ("length", .unsigned(length))]))
                    guard type == "striped" else { unsupported = unsupported ?? "segment type \(type)"; continue }
                    let areas = segment["stripes"]?.array ?? []
                    let count = Int(segment["stripe_count"]?.integer ?? 0)
                    guard count >= 1, areas.count == 2 * count else { unsupported = "a striped segment with \(areas.count / 2) areas for \(count) stripes"; continue }
                    var targets: [(ProbeVolume, UInt64)] = []
                    for k in 0..<count {
                        guard let key = areas[2 * k].string, let pe = areas[2 * k + 1].integer, let (pv, peStart) = pvByKey[key] else {
                            unsupported = "a stripe on an unknown PV"; break
                        }
                        targets.append((pv.volume, peStart + UInt64(max(0, pe)) * extentSize))
                    }
                    guard targets.count == count else { continue }
                    if let over = targets.first(where: { $0.1 * 512 + length / UInt64(count) * 512 > $0.0.size }) {
                        unsupported = "extents past the end of \(over.0.name)"; continue
                    }
                    if count == 1 {
                        lines.append(ProbeLine(start: start, length: length, target: "linear", arguments: [targets[0].0.name, String(targets[0].1)]))
                        pieces.append((targets[0].0, targets[0].1 * 512, length * 512))
                    } else {
                        let stripe = UInt64(max(0, segment["stripe_size"]?.integer ?? 0))
                        guard stripe > 0 else { unsupported = "stripe_size 0"; continue }
                        lines.append(ProbeLine(start: start, length: length, target: "striped",
                                               arguments: [String(count), String(stripe)] + targets.flatMap { [$0.0.name, String($0.1)] }))
                        let zone = ProbeVolume(name: lvName, size: length * 512, layout: .striped(targets.map { ($0.0, $0.1 * 512) }, chunk: stripe * 512), counter: counter)
                        pieces.append((zone, 0, length * 512))
                    }
                }
                lvReport.append(("segments", .array(segments)))
                if !visible {
                    lvReport.append(("mapped", false))
                } else if let unsupported {
                    let text = "LV \(candidate.name)/\(lvName): \(unsupported) is not mapped by probe"
                    notes.append(text)
                    lvReport.append(("mapped", false))
                    lvReport.append(("reason", .string(unsupported)))
                } else if !lines.isEmpty {
                    let name = claim(lvmDeviceName(vg: candidate.name, lv: lvName))
                    addDevice(name, lines)
                    lvReport.append(("device", .string(name)))
                    lvReport.append(("size", .unsigned(lines.reduce(0) { $0 + $1.length })))
                    worklist.append(ProbeVolume(name: name, size: lines.reduce(0) { $0 + $1.length } * 512, layout: .concat(pieces), counter: counter))
                }
                lvReports.append(.object(lvReport))
            }
            report.append(("lvs", .array(lvReports)))
            vgReports.append(.object(report))
            any = true
        }
        return any
    }

    func reportIncompleteVolumeGroups() {
        for candidate in volumeGroups() where !volumeGroupsDone.contains(candidate.id) {
            let listed = candidate.newest.root["physical_volumes"]?.sections ?? []
            let found = Set(candidate.pvs.map(\.uuid))
            let missing = listed.filter { !found.contains(($0.1["id"]?.string ?? "").filter { $0 != "-" }) }
                .map { "\($0.0) (\($0.1["id"]?.string ?? "?"), last seen as \($0.1["device"]?.string ?? "?"))" }
            problems.append("VG \(candidate.name): PV \(missing.joined(separator: ", ")) not found: its LVs are not activated")
            vgReports.append(.object([("name", .string(candidate.name)), ("id", .string(candidate.id)),
                                      ("seqno", .unsigned(candidate.newest.seqno)),
                                      ("missing_pvs", .array(missing.map { .string($0) }))]))
        }
    }
}

/// The device-mapper name lvm gives an LV: `<vg>-<lv>` with each `-` inside the names doubled.
public func lvmDeviceName(vg: String, lv: String) -> String {
    func escaped(_ s: String) -> String { String(s.flatMap { $0 == "-" ? ["-", "-"] : [$0] }) }
    return escaped(vg) + "-" + escaped(lv)
}
