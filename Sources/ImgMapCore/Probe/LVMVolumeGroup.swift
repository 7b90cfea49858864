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
            // reportIncompleteVolumeGroups says so at the end, unless asked to activate partially once
            // nothing else can turn up.
            if !missing.isEmpty && !(options.partial && worklist.isEmpty) { continue }
            if !missing.isEmpty {
                problems.append("VG \(candidate.name): PV \(missing.joined(separator: ", ")) not found: activated partially, its areas read as errors")
            }
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
            var activation = LVActivation(prober: self, vgName: candidate.name, extentSize: extentSize, pvByKey: pvByKey,
                                          lvs: vg["logical_volumes"]?.sections ?? [])
            activation.missingKeys = Set(pvSections.map(\.0).filter { pvByKey[$0] == nil })
            report.append(("lvs", .array(activation.activateAll())))
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

/// The tables of one VG's LVs as lvm 2.03 activates them. Every LV that a visible LV needs becomes a
/// device of its own, lower ones first, named as lvm names them: `<vg>-<lv>` (dashes doubled), sub-LVs
/// by their own names (`r1_rimage_0`, `pool_tmeta`), layers with a suffix (`-real` under a snapshot
/// origin and under a thin LV's external origin, which thin LVs read, `-cow` under a snapshot, `-tpool`
/// under a thin pool's visible linear device).
/// Segment types: striped (`linear`/`striped`), raid* (`raid`, dm-raid syntax with rmeta/rimage
/// pairs), mirror (`mirror core|disk … handle_errors`), thin-pool, thin (with its external origin),
/// snapshot (`snapshot-origin`, `snapshot … P <chunk>`), cache (`cache` over the pool's `_cdata`/`_cmeta`, or a cachevol's `-cdata`/`-cmeta`,
/// and the `_corig` origin).
struct LVActivation {
    let prober: Prober
    let vgName: String
    let extentSize: UInt64
    let pvByKey: [String: (LVMPhysicalVolume, UInt64)]
    let lvs: [(String, LVMConfig)]
    var byName: [String: LVMConfig] = [:]
    /// Device names already built, by layer key (`base`, `base-real`), and what probe can read of them.
    var built: [String: String] = [:]
    var readable: [String: ProbeVolume] = [:]
    var building: [String] = []
    /// Snapshot relations from the `snapshotN` LVs: origin → its snapshots, cow LV → (origin, chunk).
    var snapshotsOf: [String: [String]] = [:]
    var cowOf: [String: (origin: String, chunk: Int64)] = [:]
    /// LVs that thin LVs name as their external origin: each is a linear layer over its `-real`.
    var externalOrigins: Set<String> = []
    /// PVs of a partially activated VG that are not there: their areas become `error` segments.
    var missingKeys: Set<String> = []

    init(prober: Prober, vgName: String, extentSize: UInt64, pvByKey: [String: (LVMPhysicalVolume, UInt64)], lvs: [(String, LVMConfig)]) {
        self.prober = prober
        self.vgName = vgName
        self.extentSize = extentSize
        self.pvByKey = pvByKey
        self.lvs = lvs
        for (name, lv) in lvs {
            if byName[name] == nil { byName[name] = lv }
            for (_, segment) in lv.sections where segment["type"]?.string == "thin" {
                if let origin = segment["external_origin"]?.string { externalOrigins.insert(origin) }
            }
            for (_, segment) in lv.sections where segment["type"]?.string == "snapshot" {
                if let origin = segment["origin"]?.string, let cow = segment["cow_store"]?.string {
                    snapshotsOf[origin, default: []].append(cow)
                    cowOf[cow] = (origin, segment["chunk_size"]?.integer ?? 8)
                }
            }
        }
    }

    struct Failure: Error { var message: String }

    func segments(_ lv: LVMConfig) -> [LVMConfig] {
        lv.sections.filter { $0.0.hasPrefix("segment") }.map(\.1)
    }

    /// A segment in `--json`: its place in the LV in sectors, the settings lvm recorded for it as
    /// written (stripe_size, chunk_size, thin_pool, device_id, cache_mode…), and its areas, so a
    /// script can find each piece without parsing the metadata text: a PV area with the device and
    /// the sector the table reads it from (`null` for a missing PV), an LV area by name.
    func segmentReport(_ segment: LVMConfig) -> JSONValue {
        func extents(_ key: String) -> UInt64 { UInt64(max(0, segment[key]?.integer ?? 0)) &* extentSize }
        var report: [(String, JSONValue)] = [("type", .string(segment["type"]?.string ?? "?")),
                                             ("start", .unsigned(extents("start_extent"))), ("length", .unsigned(extents("extent_count")))]
        var areas: [JSONValue] = []
        guard case .section(let items) = segment else { return .object(report) }
        for (key, value) in items where !["type", "start_extent", "extent_count"].contains(key) {
            switch (key, value) {
            case ("stripes", .array(let list)), ("mirrors", .array(let list)):
                for k in stride(from: 0, to: list.count - 1, by: 2) {
                    guard let name = list[k].string, let extent = list[k + 1].integer else { continue }
                    let at = UInt64(max(0, extent)) &* extentSize
                    if let (pv, peStart) = pvByKey[name] {
                        areas.append(.object([("pv", .string(name)), ("device", .string(pv.volume.name)),
                                              ("extent", .number(extent)), ("sector", .unsigned(peStart &+ at))]))
                    } else if missingKeys.contains(name) {
                        areas.append(.object([("pv", .string(name)), ("device", .null), ("extent", .number(extent))]))
                    } else {
                        areas.append(.object([("lv", .string(name)), ("extent", .number(extent))]))
                    }
                }
            case ("raids", .array(let list)):
                areas += list.compactMap(\.string).map { .object([("lv", .string($0))]) }
            default:
                report.append((key, Self.json(value)))
            }
        }
        if !areas.isEmpty { report.append(("areas", .array(areas))) }
        return .object(report)
    }

    static func json(_ value: LVMConfig) -> JSONValue {
        switch value {
        case .string(let s), .float(let s): .string(s)
        case .integer(let n): .number(n)
        case .array(let items): .array(items.map(json))
        case .section(let items): .object(items.map { ($0.0, json($0.1)) })
        }
    }

    /// `extents` × the extent size in sectors, refused past the kernel's device size limit.
    func sectors(_ extents: Int64?) throws -> UInt64 {
        let (product, overflow) = UInt64(max(0, extents ?? 0)).multipliedReportingOverflow(by: extentSize)
        guard !overflow, product <= maxDeviceSectors else { throw Failure(message: "an extent count of \(extents ?? 0) is past the largest device") }
        return product
    }

    func size(_ name: String) throws -> UInt64 {
        guard let lv = byName[name] else { throw Failure(message: "LV \(name) is named but not defined") }
        var total: UInt64 = 0
        for segment in segments(lv) { total += try sectors(segment["extent_count"]?.integer) }
        guard total <= maxDeviceSectors else { throw Failure(message: "LV \(name) is larger than the largest device") }
        return total
    }

    /// Activates every LV lvm would show: the visible ones, and each snapshot's cow LV (shown as the
    /// snapshot). Returns the per-LV report.
    mutating func activateAll() -> [JSONValue] {
        var reports: [JSONValue] = []
        for (name, lv) in lvs {
            let status = lv["status"]?.strings ?? []
            let isSnapshotRecord = segments(lv).contains { $0["type"]?.string == "snapshot" }
            let shown = (status.contains("VISIBLE") && !isSnapshotRecord) || cowOf[name] != nil
            var report: [(String, JSONValue)] = [("name", .string(name)), ("id", .string(lv["id"]?.string ?? "")), ("visible", .bool(shown))]
            report.append(("segments", .array(segments(lv).map(segmentReport))))
            if shown {
                do {
                    let device = try self.device(name)
                    report.append(("device", .string(device)))
                    report.append(("size", .unsigned(try size(cowOf[name]?.origin ?? name))))
                    if let volume = readable[name] {
                        prober.worklist.append(volume)
                    } else if isSnapshot(name, lv) {
                        report.append(("read_through", false))
                        report.append(("read_through_reason", .string(Self.snapshotNotReadThrough)))
                    } else if !segments(lv).contains(where: { $0["type"]?.string == "thin-pool" }) {
                        // A pool's own device reads its data device raw: what is inside is its thin LVs'.
                        let depth = pvByKey.values.map(\.0.volume.depth).max() ?? 0
                        if let reason = prober.readThrough(device, lv: "\(vgName)/\(name)", below: depth) {
                            report.append(("read_through", false))
                            report.append(("read_through_reason", .string(reason)))
                        }
                    }
                } catch let failure as Failure {
                    prober.notes.append("LV \(vgName)/\(name): \(failure.message): not mapped")
                    report.append(("mapped", false))
                    report.append(("reason", .string(failure.message)))
                } catch {
                    prober.problems.append("LV \(vgName)/\(name): \(error)")
                }
            }
            reports.append(.object(report))
        }
        return reports
    }

    static let snapshotNotReadThrough = "a snapshot: its contents repeat its origin's, so a PV inside would be found twice (compose it and probe the image to look inside)"

    /// A COW snapshot, or a thin snapshot of a thin LV or of an external origin: reading it through
    /// would find its origin's PVs a second time, with the same UUIDs, and stop both VGs.
    func isSnapshot(_ name: String, _ lv: LVMConfig) -> Bool {
        cowOf[name] != nil || segments(lv).contains { $0["type"]?.string == "thin" && ($0["origin"] != nil || $0["external_origin"] != nil) }
    }

    /// The device of LV `name` (a layer when `layer` is given), built with everything under it.
    mutating func device(_ name: String, layer: String? = nil) throws -> String {
        let key = layer.map { "\(name)-\($0)" } ?? name
        if let done = built[key] { return done }
        if building.count > Prober.maxDepth { throw Failure(message: "LVs stacked more than \(Prober.maxDepth) deep") }
        if building.contains(key) { throw Failure(message: "the metadata's LVs refer to each other in a loop (\((building + [key]).joined(separator: " → ")))") }
        guard let lv = byName[name] else { throw Failure(message: "LV \(name) is named but not defined") }
        building.append(key)
        defer { building.removeLast() }
        var lines: [ProbeLine] = []
        var volume: ProbeVolume?
        let dmName = lvmDeviceName(vg: vgName, lv: name) + (layer.map { "-\($0)" } ?? "")
        let types = segments(lv).map { $0["type"]?.string ?? "?" }
        if layer == nil, snapshotsOf[name] != nil {
            let real = try device(name, layer: "real")
            lines = [ProbeLine(start: 0, length: try size(name), target: "snapshot-origin", arguments: [real])]
            volume = readable[key + "-real"]
        } else if layer == nil, externalOrigins.contains(name) {
            // lvm's layer target over `-real`, the layer the thin LVs read as their external origin.
            let real = try device(name, layer: "real")
            lines = [ProbeLine(start: 0, length: try size(name), target: "linear", arguments: [real, "0"])]
            volume = readable[key + "-real"]
        } else if layer == nil, let (origin, chunk) = cowOf[name] {
            let real = try device(origin, layer: "real")
            let cow = try device(name, layer: "cow")
            lines = [ProbeLine(start: 0, length: try size(origin), target: "snapshot", arguments: [real, cow, "P", String(chunk)])]
        } else if layer == nil, types == ["thin-pool"] {
            let pool = try device(name, layer: "tpool")
            lines = [ProbeLine(start: 0, length: try size(name), target: "linear", arguments: [pool, "0"])]
        } else if layer == "tpool" {
            let segment = segments(lv)[0]
            guard let meta = segment["metadata"]?.string, let data = segment["pool"]?.string else { throw Failure(message: "a thin-pool segment without metadata or pool") }
            let metaDevice = try device(meta), dataDevice = try device(data)
            // In the order pool_status prints them. As lvm reads the text (_thin_pool_text_import), a
            // segment without zero_new_blocks skips zeroing and one without discards ignores them;
            // error_when_full is the pool LV's ERROR_WHEN_FULL flag. lvm 2.03.16 never loads read_only.
            var features: [String] = []
            if (segment["zero_new_blocks"]?.integer ?? 0) == 0 { features.append("skip_block_zeroing") }
            switch segment["discards"]?.string ?? "ignore" {
            case "ignore": features.append("ignore_discard")
            case "nopassdown": features.append("no_discard_passdown")
            default: break
            }
            if lv["flags"]?.strings.contains("ERROR_WHEN_FULL") == true { features.append("error_if_no_space") }
            lines = [ProbeLine(start: 0, length: try size(name), target: "thin-pool",
                               arguments: [metaDevice, dataDevice, String(segment["chunk_size"]?.integer ?? 128), "0", String(features.count)] + features)]
        } else {
            var pieces: [(ProbeVolume, UInt64, UInt64)]? = []
            for segment in segments(lv) {
                let (line, piece) = try segmentLine(segment)
                lines.append(line)
                if let piece { pieces?.append(piece) } else { pieces = nil }
            }
            if let pieces, !pieces.isEmpty {
                volume = ProbeVolume(name: dmName, size: lines.reduce(0) { $0 + $1.length } * 512, layout: .concat(pieces), counter: prober.counter)
            }
        }
        let final = prober.claim(dmName)
        prober.addDevice(final, lines)
        built[key] = final
        if let volume { readable[key] = volume }
        return final
    }

    /// One segment's table line and, when probe can read it, the piece of a volume it maps.
    mutating func segmentLine(_ segment: LVMConfig) throws -> (ProbeLine, (ProbeVolume, UInt64, UInt64)?) {
        let type = segment["type"]?.string ?? "?"
        let start = try sectors(segment["start_extent"]?.integer)
        let length = try sectors(segment["extent_count"]?.integer)
        switch type {
        case "striped":
            let areas = segment["stripes"]?.array ?? []
            let count = Int(segment["stripe_count"]?.integer ?? 0)
            guard count >= 1, count <= areas.count, areas.count == 2 * count else { throw Failure(message: "a striped segment with \(areas.count / 2) areas for \(count) stripes") }
            var targets: [(ProbeVolume, UInt64)] = []
            if (0..<count).contains(where: { areas[2 * $0].string.map { missingKeys.contains($0) } ?? false }) {
                // lvm --activationmode partial maps missing areas to the error target.
                return (ProbeLine(start: start, length: length, target: "error", arguments: []), nil)
            }
            for k in 0..<count {
                guard let key = areas[2 * k].string, let pe = areas[2 * k + 1].integer, let (pv, peStart) = pvByKey[key] else {
                    throw Failure(message: "a stripe on an unknown PV")
                }
                let offset = try sectors(pe)
                guard peStart <= maxDeviceSectors - offset else { throw Failure(message: "extents past the end of \(pv.volume.name)") }
                targets.append((pv.volume, peStart + offset))
            }
            if let over = targets.first(where: { ($0.1 + length / UInt64(count)) > $0.0.size / 512 }) {
                throw Failure(message: "extents past the end of \(over.0.name)")
            }
            if count == 1 {
                return (ProbeLine(start: start, length: length, target: "linear", arguments: [targets[0].0.name, String(targets[0].1)]),
                        (targets[0].0, targets[0].1 * 512, length * 512))
            }
            let stripe = UInt64(max(0, segment["stripe_size"]?.integer ?? 0))
            guard stripe > 0 else { throw Failure(message: "stripe_size 0") }
            let zone = ProbeVolume(name: "\(vgName) segment", size: length * 512, layout: .striped(targets.map { ($0.0, $0.1 * 512) }, chunk: stripe * 512), counter: prober.counter)
            return (ProbeLine(start: start, length: length, target: "striped",
                              arguments: [String(count), String(stripe)] + targets.flatMap { [$0.0.name, String($0.1)] }), (zone, 0, length * 512))
        case "mirror":
            let areas = segment["mirrors"]?.array ?? []
            let region = segment["region_size"]?.integer ?? 1024
            var args: [String]
            if let log = segment["mirror_log"]?.string { args = ["disk", "2", try device(log), String(region)] }
            else { args = ["core", "1", String(region)] }
            args.append(String(areas.count / 2))
            var first: (ProbeVolume, UInt64, UInt64)?
            for k in stride(from: 0, to: areas.count - 1, by: 2) {
                guard let image = areas[k].string else { throw Failure(message: "a mirror area that is not an LV") }
                let offset = try sectors(areas[k + 1].integer)
                args += [try device(image), String(offset)]
                if first == nil, let v = readable[image] { first = (v, offset * 512, length * 512) }
            }
            args += ["1", "handle_errors"]
            return (ProbeLine(start: start, length: length, target: "mirror", arguments: args), first)
        case "thin":
            guard let pool = segment["thin_pool"]?.string else { throw Failure(message: "a thin segment without thin_pool") }
            let tpool = try device(pool, layer: "tpool")
            var args = [tpool, String(segment["device_id"]?.integer ?? 0)]
            if let origin = segment["external_origin"]?.string {
                // thin.c loads the origin's lv_layer, `real` for every external origin.
                guard byName[origin] != nil else { throw Failure(message: "the thin segment's external origin \(origin) is not defined") }
                args.append(try device(origin, layer: "real"))
            }
            return (ProbeLine(start: start, length: length, target: "thin", arguments: args), nil)
        case "cache", "cache+CACHE_USES_CACHEVOL":
            return (try cacheLine(segment, start: start, length: length), nil)
        case let raid where raid.hasPrefix("raid"):
            let names = segment["raids"]?.strings ?? []
            guard names.count >= 2, names.count % 2 == 0 else { throw Failure(message: "a \(raid) segment without rmeta/rimage pairs") }
            let dmType = ["raid5": "raid5_ls", "raid6": "raid6_zr"][raid] ?? raid
            let region = segment["region_size"]?.integer ?? 1024
            var args = [dmType, "3", String(segment["stripe_size"]?.integer ?? 0), "region_size", String(region)]
            if raid == "raid10" {
                // lvm names the copies of raid10 (the kernel's default, 2, included): the real lvm's
                // line is `raid10 5 <chunk> region_size <n> raid10_copies 2 <#devs> …`.
                args[1] = "5"
                args += ["raid10_copies", String(segment["data_copies"]?.integer ?? 2)]
            }
            args.append(String(names.count / 2))
            var first: (ProbeVolume, UInt64, UInt64)?
            for k in stride(from: 0, to: names.count, by: 2) {
                args += [try device(names[k]), try device(names[k + 1])]
                if first == nil, raid == "raid1", let v = readable[names[k + 1]] { first = (v, 0, length * 512) }
            }
            return (ProbeLine(start: start, length: length, target: "raid", arguments: args), first)
        default:
            throw Failure(message: "probe has no table for segment type \(type)")
        }
    }

    /// A cache LV's line as lvm 2.03's libdevmapper writes it (`_cache_emit_segment_line`):
    /// `cache <_cmeta> <_cdata> <_corig> <chunk> 2 metadata2 <mode>` (`1 <mode>` for format 1), then
    /// the policy and its settings as key/value pairs. What the kernel prints back is these arguments
    /// verbatim. The cache pool's settings are the ones used: the cache LV's segment only names the
    /// pool and the origin. A segment with `metadata_start` caches over a cachevol instead, as lvm
    /// itself tells the two apart.
    mutating func cacheLine(_ segment: LVMConfig, start: UInt64, length: UInt64) throws -> ProbeLine {
        guard let poolName = segment["cache_pool"]?.string, let origin = segment["origin"]?.string else {
            throw Failure(message: "a cache segment without cache_pool or origin")
        }
        guard let poolLV = byName[poolName] else { throw Failure(message: "LV \(poolName) is named but not defined") }
        if segment["metadata_start"] != nil {
            return try cacheVolumeLine(segment, cachevol: poolName, origin: origin, start: start, length: length)
        }
        // The type carries lvm's flags after a `+` (`cache-pool+METADATA_FORMAT`).
        guard let pool = segments(poolLV).first, pool["type"]?.string?.split(separator: "+").first == "cache-pool" else {
            throw Failure(message: "a cache over \(poolName), which is neither a cache pool nor a cachevol (the segment has no metadata_start)")
        }
        guard let data = pool["data"]?.string, let meta = pool["metadata"]?.string else {
            throw Failure(message: "a cache-pool segment without data or metadata")
        }
        let metaDevice = try device(meta), dataDevice = try device(data), originDevice = try device(origin)
        let mode = pool["cache_mode"]?.string ?? "writethrough"
        guard ["writethrough", "writeback", "passthrough"].contains(mode) else { throw Failure(message: "cache_mode \(mode)") }
        let chunk = try cacheChunk(pool["chunk_size"]?.integer)
        var args = [metaDevice, dataDevice, originDevice, String(chunk)]
        args += pool["metadata_format"]?.integer == 2 ? ["2", "metadata2", mode] : ["1", mode]
        // lvm writes the policy into the metadata when it converts; for older text without one it
        // loads mq (`_fix_missing_defaults`, CACHE_POLICY_WHEN_MISSING), which the kernel runs as smq.
        let policy = pool["policy"]?.string ?? "mq"
        args += cachePolicyArguments(policy, pool["policy_settings"], chunk: chunk, acceptedBy: policy)
        return ProbeLine(start: start, length: length, target: "cache", arguments: args)
    }

    /// A cache over a cachevol (`lvconvert --cachevol`) as lvm 2.03.16 activates it: the cachevol LV
    /// `<pool>_cvol` as it is, `<pool>_cvol-cmeta` linear over its first `metadata_len` sectors and
    /// `<pool>_cvol-cdata` over the `data_len` after them (`_add_new_lv_to_dtree`). Mode, chunk, format
    /// and settings are the cache LV segment's own.
    mutating func cacheVolumeLine(_ segment: LVMConfig, cachevol: String, origin: String, start: UInt64, length: UInt64) throws -> ProbeLine {
        func number(_ key: String) throws -> UInt64 {
            guard let n = segment[key]?.integer, n >= 0, UInt64(n) <= maxDeviceSectors else {
                throw Failure(message: "a cachevol cache whose \(key) is missing or out of range")
            }
            return UInt64(n)
        }
        let metaStart = try number("metadata_start"), metaLength = try number("metadata_len")
        let dataStart = try number("data_start"), dataLength = try number("data_len")
        let cvolSize = try size(cachevol)
        for (what, areaStart, areaLength) in [("metadata", metaStart, metaLength), ("data", dataStart, dataLength)] where areaStart + areaLength > cvolSize {
            throw Failure(message: "the cachevol's \(what) area (\(areaStart)+\(areaLength)) runs past the end of \(cachevol) (\(cvolSize) sectors)")
        }
        // lvm refuses these itself ("has invalid ranges").
        guard metaLength > 0, dataLength > 0, metaStart != dataStart else {
            throw Failure(message: "a cachevol cache with empty or overlapping metadata and data areas")
        }
        // 2.03.16 maps cmeta at 0 and cdata right after it whatever the starts say (later lvm reads the
        // starts): the two agree for what lvm writes, and where they do not the bytes are not guessed.
        guard metaStart == 0, dataStart == metaLength else {
            throw Failure(message: "a cachevol cache with metadata_start \(metaStart) and data_start \(dataStart), where lvm 2.03.16 maps its areas at 0 and metadata_len")
        }
        guard segment["metadata_format"]?.integer == 2 else { throw Failure(message: "a cachevol cache whose metadata_format is not 2") }
        let mode = segment["cache_mode"]?.string ?? "writethrough"
        guard ["writethrough", "writeback", "passthrough"].contains(mode) else { throw Failure(message: "cache_mode \(mode)") }
        let base = try device(cachevol)
        let metaDevice = cacheVolumeArea(base, "cmeta", at: 0, length: metaLength)
        let dataDevice = cacheVolumeArea(base, "cdata", at: metaLength, length: dataLength)
        let originDevice = try device(origin)
        let chunk = try cacheChunk(segment["chunk_size"]?.integer)
        // 2.03.16 takes the policy name from the cachevol's own (striped) segment, which has none, so
        // it loads `mq` (the kernel's alias of smq) and passes every setting through unfiltered.
        let args = [metaDevice, dataDevice, originDevice, String(chunk), "2", "metadata2", mode]
            + cachePolicyArguments("mq", segment["policy_settings"], chunk: chunk, acceptedBy: nil)
        return ProbeLine(start: start, length: length, target: "cache", arguments: args)
    }

    /// The linear device `<base>-<layer>` over `length` sectors of the cachevol device `base` from `offset`.
    mutating func cacheVolumeArea(_ base: String, _ layer: String, at offset: UInt64, length: UInt64) -> String {
        let key = "\(base)-\(layer)"
        if let done = built[key] { return done }
        let name = prober.claim(key)
        prober.addDevice(name, [ProbeLine(start: 0, length: length, target: "linear", arguments: [base, String(offset)])])
        built[key] = name
        return name
    }

    /// The cache's block size in sectors (128 when unset), in the range libdevmapper loads.
    func cacheChunk(_ value: Int64?) throws -> Int64 {
        let chunk = value ?? 128
        guard (64...2_097_152).contains(chunk) else { throw Failure(message: "a cache chunk_size of \(chunk) sectors, outside 64 to 2097152") }
        return chunk
    }

    /// The policy and its settings as libdevmapper passes them: `migration_threshold` first, raised to
    /// 8 chunks and left out at 2048 (the kernel's default), then the other integer settings. lvm drops,
    /// with a warning, what the named policy (`acceptedBy`) does not take.
    func cachePolicyArguments(_ policy: String, _ settings: LVMConfig?, chunk: Int64, acceptedBy known: String?) -> [String] {
        let accepted = ["mq": ["migration_threshold", "sequential_threshold", "random_threshold", "read_promote_adjustment",
                               "write_promote_adjustment", "discard_promote_adjustment"],
                        "smq": ["migration_threshold"]][known?.lowercased() ?? ""]
        var threshold: Int64 = 2048
        var pairs: [String] = []
        if case .section(let items) = settings {
            for (key, value) in items where accepted?.contains(key) ?? true {
                guard let n = value.integer else { continue }
                if key == "migration_threshold" { threshold = n } else { pairs += [key, String(n)] }
            }
        }
        threshold = max(threshold, 8 * chunk)
        if threshold != 2048 { pairs = ["migration_threshold", String(threshold)] + pairs }
        return [policy, String(pairs.count)] + pairs
    }
}
