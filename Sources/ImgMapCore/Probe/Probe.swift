#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `probe` engine: reads the layouts written on images (partition tables, md superblocks, LVM
/// labels and metadata, LUKS headers), recursively, and gives the device-mapper tables that kpartx,
/// `mdadm --assemble` and `vgchange -ay` would load, as a `dmsetup table` dump whose disks are the
/// image paths as given and whose other devices are the dump's own names. Opens every image
/// read-only and reads metadata sectors only.
public final class Prober {
    /// How probe reads the disks.
    public struct Options: Sendable {
        /// Logical sector size of the disks; nil: 512, or 4096 when a GPT is found there.
        public var sectorSize: Int?
        /// Activate VGs with missing PVs too, their areas on those PVs as `error` segments
        /// (`lvm --activationmode partial`).
        public var partial: Bool
        /// What opens the LUKS volumes found (as `imgmap luks` reads it); nil: they are reported only.
        public var passphrase: SecretBytes?
        /// Crypt lines carry the volume key instead of zeros (`dmsetup table --showkeys`).
        public var showKeys: Bool
        /// Options as `probe` has them without flags: the sector size found, complete VGs only, LUKS
        /// volumes not opened.
        public init(sectorSize: Int? = nil, partial: Bool = false, passphrase: SecretBytes? = nil, showKeys: Bool = false) {
            self.sectorSize = sectorSize
            self.partial = partial
            self.passphrase = passphrase
            self.showKeys = showKeys
        }
    }

    let images: [String]
    let options: Options
    /// Layers probe looks through at most.
    static let maxDepth = 16
    let counter = ReadCounter()
    /// The images opened, read-only.
    var openedImages: [ImageFile] = []
    var devices: [ProbeDevice] = []
    var takenNames: Set<String> = []
    var report: [JSONValue] = []
    var problems: [String] = []
    var notes: [String] = []
    var worklist: [ProbeVolume] = []
    var volumes: [String: ProbeVolume] = [:]
    /// Volumes on which something was recognised.
    var recognised = 0
    var mdMembers: [MDMember] = []
    var mdArraysDone: Set<String> = []
    var physicalVolumes: [LVMPhysicalVolume] = []
    var volumeGroupsDone: Set<String> = []
    var mdReports: [JSONValue] = []
    var vgReports: [JSONValue] = []
    /// Crypt lines with the volume key, by device, where the dump's own show zeros: what the engine
    /// loads to read through an LV above an opened LUKS volume. Never printed.
    var keyedLines: [String: [ProbeLine]] = [:]

    /// A probe of `images` (paths); nothing is opened until ``run()``.
    public init(images: [String], options: Options = Options()) {
        self.images = images
        self.options = options
    }

    /// Probes every image. Throws only when an image cannot be opened (exit 66); metadata problems
    /// are collected in the result, and whatever is sound is still mapped.
    public func run() throws -> ProbeResult {
        var seenPaths: Set<String> = []
        for path in images {
            // A table's arguments are split at whitespace: such a path cannot be named in the dump.
            if path.contains(where: { $0.isWhitespace }) || path.isEmpty {
                throw PlainFailure("\(path): a table cannot name an image whose path is empty or contains whitespace; rename or link it", .usage)
            }
            guard seenPaths.insert(path).inserted else {
                throw PlainFailure("\(path): named twice", .usage)
            }
            takenNames.insert(path)
        }
        for path in images {
            let file = try ImageFile(openForReading: path, nonBlocking: true)
            let st = try file.status()
            let kind = st.st_mode & S_IFMT
            guard kind == S_IFREG || kind == S_IFBLK else {
                throw IOFailure(path: path, operation: "open", errno: EINVAL, exitStatus: .noInput, hint: "not a regular file or block device")
            }
            let size = try file.byteSize()
            openedImages.append(file)
            worklist.append(ProbeVolume(name: path, size: size, layout: .image(file), counter: counter))
        }
        var progress = true
        while progress {
            while !worklist.isEmpty {
                let volume = worklist.removeFirst()
                volumes[volume.name] = volume
                report.append(examine(volume))
            }
            progress = assembleArrays() || activateVolumeGroups()
        }
        reportIncomplete()
        var top: [(String, JSONValue)] = [("devices", .array(report))]
        if !mdReports.isEmpty { top.append(("md", .array(mdReports))) }
        if !vgReports.isEmpty { top.append(("lvm", .array(vgReports))) }
        top.append(("tables", .array(devices.map { device in
            .object([("name", .string(device.name)), ("lines", .array(device.lines.map { .string($0.text) }))])
        })))
        top.append(("notes", .array(notes.map { .string($0) })))
        top.append(("problems", .array(problems.map { .string($0) })))
        top.append(("bytes_read", .unsigned(counter.bytes)))
        return ProbeResult(devices: devices, report: .object(top), problems: problems, notes: notes, bytesRead: counter.bytes,
                           images: openedImages, recognised: recognised, volumes: volumes)
    }

    /// What is on `volume`: the first of LUKS, md, LVM, GPT, MBR that is found, in that order (md 0.90
    /// and 1.0 members begin with the array's own data, so a partition table there is the array's).
    func examine(_ volume: ProbeVolume) -> JSONValue {
        var entry: [(String, JSONValue)] = [("name", .string(volume.name)), ("size", .unsigned(volume.size))]
        if volume.depth > Self.maxDepth {
            problems.append("\(volume.name): more than \(Self.maxDepth) layers of partitions, arrays and volume groups: not looked into (metadata nested in itself?)")
            return .object(entry)
        }
        do {
            if let luks = try LUKSHeader.read(volume) {
                recognised += 1
                for note in luks.notes { notes.append("\(volume.name): LUKS\(luks.version): \(note)") }
                guard let passphrase = options.passphrase else {
                    entry.append(("luks", luks.json(opened: [])))
                    notes.append("\(volume.name): LUKS\(luks.version) \(luks.uuid) (\(luks.cipher), payload at sector \(luks.payloadOffset)): not opened; probe reads no keys")
                    return .object(entry)
                }
                entry.append(("luks", luks.json(opened: open(volume, luks, passphrase))))
                return .object(entry)
            }
            switch MDSuperblock.find(volume) {
            case .found(let superblock):
                recognised += 1
                mdMembers.append(MDMember(volume: volume, superblock: superblock))
                entry.append(("md_member", superblock.json))
                return .object(entry)
            case .corrupt(let problem):
                problems.append(problem.description)
                entry.append(("md_member_invalid", .string(problem.message)))
            case .none:
                break
            }
            switch LVMLabel.find(volume) {
            case .found(let pv):
                recognised += 1
                physicalVolumes.append(pv)
                entry.append(("lvm_pv", pv.json))
                return .object(entry)
            case .corrupt(let problem):
                problems.append(problem.description)
                entry.append(("lvm_pv_invalid", .string(problem.message)))
                return .object(entry)
            case .none:
                break
            }
            if !volume.isPartition, let table = try partitionTable(volume) {
                recognised += 1
                entry.append(("partition_table", mapPartitions(table, of: volume)))
                return .object(entry)
            }
        } catch let failure as MappedReadError {
            // An LV read through the engine whose metadata sectors lie on an error extent (an area on
            // a PV missing from a partial activation): the kernel's read fails there too.
            notes.append("\(volume.name): sectors \(failure.range.start)+\(failure.range.length) (\(failure.origin.description)) read as errors, as the kernel's read does: not looked into")
            entry.append(("unreadable", .string("sectors \(failure.range.start)+\(failure.range.length): Input/output error")))
        } catch let problem as ProbeProblem {
            problems.append(problem.description)
            entry.append(("problem", .string(problem.message)))
        } catch {
            problems.append("\(volume.name): \(error)")
            entry.append(("problem", .string("\(error)")))
        }
        return .object(entry)
    }

    /// Unlocks the LUKS volume on `volume` as `imgmap luks` does and maps it as systemd-cryptsetup and
    /// udisks name it, `luks-<UUID>`: the crypt line `imgmap luks` prints, over the volume's dump name.
    /// Its plaintext goes on the worklist (a PV or a partition table inside is found). A passphrase
    /// that opens no keyslot is a problem naming the volume; the header stays reported.
    func open(_ volume: ProbeVolume, _ header: LUKSHeader, _ passphrase: SecretBytes) -> [(String, JSONValue)] {
        do {
            let luks = try LUKSVolume.load(image: volume)
            for warning in luks.warnings { notes.append(warning) }
            let (key, _) = try luks.unlock(image: volume, passphrase: passphrase)
            let text = try luks.tableLine(device: volume.name, deviceSectors: volume.size / 512, key: key, showKey: options.showKeys)
            let words = text.split(separator: " ").map(String.init)
            guard words.count >= 3, let start = UInt64(words[0]), let length = UInt64(words[1]) else {
                preconditionFailure("LUKSVolume.tableLine wrote `start length target …`")
            }
            let transform = try CryptTransform(spec: luks.cipher, key: key, ivOffset: luks.ivTweak, unitSectors: luks.sectorSize / 512)
            let name = claim("luks-\(header.uuid)")
            addDevice(name, [ProbeLine(start: start, length: length, target: words[2], arguments: Array(words[3...]))])
            if !options.showKeys {
                let keyed = try luks.tableLine(device: volume.name, deviceSectors: volume.size / 512, key: key, showKey: true)
                let keyedWords = keyed.split(separator: " ").map(String.init)
                keyedLines[name] = [ProbeLine(start: start, length: length, target: keyedWords[2], arguments: Array(keyedWords[3...]))]
            }
            worklist.append(ProbeVolume(name: name, size: length * 512, layout: .decrypted(volume, offset: luks.offset, transform), counter: counter))
            return [("opened", true), ("device", .string(name))]
        } catch let failure as TargetError {
            problems.append("\(volume.name): LUKS\(header.version) \(header.uuid): cipher `\(header.cipher)`: \(failure.message)\(failure.detail.map { " (\($0))" } ?? "")")
        } catch {
            problems.append("\(error)")
        }
        return [("opened", false)]
    }

    /// A GPT (behind a protective MBR) or an MBR table, with the logical sector size given or found.
    func partitionTable(_ volume: ProbeVolume) throws -> PartitionTable? {
        guard volume.size >= 1024 else { return nil }
        let sector0 = try volume.readExactly(at: 0, count: 512, what: "sector 0")
        let sizes = options.sectorSize.map { [$0] } ?? [512, 4096]
        if MBR.isProtective(sector0) {
            for ss in sizes where volume.size >= UInt64(ss) * 2 {
                if try GPT.hasSignature(volume, sectorSize: ss) || ss == sizes.last! {
                    return try GPT.read(volume, sectorSize: ss)
                }
            }
            return nil
        }
        guard MBR.looksLikeTable(sector0) else { return nil }
        var table = try MBR.read(volume, sector0: sector0, sectorSize: options.sectorSize ?? 512)
        if try GPT.hasSignature(volume, sectorSize: 512) {
            table.notes.append("a GPT header is present but the MBR has no protective (0xEE) entry: the MBR is used, as the kernel does")
        }
        return table
    }

    /// Dump devices `<disk>p<N>` for a table's partitions (kpartx's names), each a linear map of the
    /// disk; their volumes go on the worklist.
    func mapPartitions(_ table: PartitionTable, of volume: ProbeVolume) -> JSONValue {
        for note in table.notes { notes.append("\(volume.name): \(table.scheme): \(note)") }
        let disk = diskName(volume)
        var parts: [JSONValue] = []
        for partition in table.partitions {
            let name = claim("\(disk)p\(partition.number)")
            addDevice(name, [ProbeLine(start: 0, length: partition.length, target: "linear",
                                       arguments: [volume.name, String(partition.start)])])
            if !partition.isExtended {
                let part = ProbeVolume(name: name, size: partition.length * 512, layout: .slice(volume, offset: partition.start * 512), counter: counter)
                part.isPartition = true
                worklist.append(part)
            }
            var p: [(String, JSONValue)] = [("number", .number(Int64(partition.number))), ("device", .string(name)),
                                            ("start", .unsigned(partition.start)), ("length", .unsigned(partition.length)),
                                            ("type", .string(partition.type))]
            if partition.isExtended { p.append(("extended", true)) }
            if partition.bootable { p.append(("bootable", true)) }
            if let uuid = partition.uuid { p.append(("uuid", .string(uuid))) }
            if let n = partition.name { p.append(("name", .string(n))) }
            if let a = partition.attributes, a != 0 { p.append(("attributes", .unsigned(a))) }
            parts.append(.object(p))
        }
        var t: [(String, JSONValue)] = [("scheme", .string(table.scheme)), ("sector_size", .number(Int64(table.sectorSize))),
                                        ("id", .string(table.identifier))]
        if let header = table.header { t.append(("header", .string(header))) }
        t.append(("partitions", .array(parts)))
        if !table.notes.isEmpty { t.append(("notes", .array(table.notes.map { .string($0) }))) }
        return .object(t)
    }

    /// The name kpartx would give partitions' parent: an image's file name without its extension,
    /// a dump device's own name.
    func diskName(_ volume: ProbeVolume) -> String {
        guard case .image = volume.layout else { return volume.name }
        var base = Substring(volume.name)
        if let slash = base.lastIndex(of: "/") { base = base[base.index(after: slash)...] }
        if let dot = base.lastIndex(of: "."), dot != base.startIndex { base = base[..<dot] }
        let cleaned = String(base.map { $0.isWhitespace || $0 == ":" ? "_" : $0 })
        return cleaned.isEmpty ? "disk" : cleaned
    }

    /// `name`, or `name_2`, `name_3`… when the dump already has it or an image path is spelled so.
    func claim(_ wanted: String) -> String {
        // A dump name is one token before `:`; dm names hold no `/` either.
        var name = String(wanted.map { $0.isWhitespace || $0 == ":" || $0 == "/" || $0 == "#" ? "_" : $0 })
        if name.isEmpty { name = "device" }
        var candidate = name
        var n = 2
        while takenNames.contains(candidate) {
            candidate = "\(name)_\(n)"
            n += 1
        }
        takenNames.insert(candidate)
        return candidate
    }

    func addDevice(_ name: String, _ lines: [ProbeLine]) {
        devices.append(ProbeDevice(name: name, lines: lines))
    }
}

/// One device of the dump and its table lines.
public struct ProbeDevice: Sendable, Equatable {
    /// The device's name in the dump (`disk1p2`, `md0`, `vg-lv`), as `dmsetup create` would name it.
    public var name: String
    /// Its table, in order of `start`.
    public var lines: [ProbeLine]
}

/// `<start> <length> <target> <args…>` in 512-byte sectors.
public struct ProbeLine: Sendable, Equatable {
    /// First sector of the segment in its device's table.
    public var start: UInt64
    /// Sectors in the segment.
    public var length: UInt64
    /// The target type (`linear`, `raid`, `striped`, `error` …).
    public var target: String
    /// The target's arguments; devices are image paths or dump device names.
    public var arguments: [String]
    /// The line as a table holds it.
    public var text: String { ([String(start), String(length), target] + arguments).joined(separator: " ") }
}

/// What ``Prober/run()`` found: the dump's devices, the report, and what could not be used.
public struct ProbeResult: Sendable {
    /// The dump's devices, lower devices first (an LV after the array it lies on).
    public var devices: [ProbeDevice]
    /// The `probe --json` report: each image and what was found on it, layer by layer.
    public var report: JSONValue
    /// Metadata that could not be used (corrupt, looping, conflicting): each names its place.
    public var problems: [String]
    /// What was odd but handled (a GPT read from its backup, a stale md member left out).
    public var notes: [String]
    /// Bytes read from the images.
    public var bytesRead: UInt64
    /// The images, open read-only (an output must not be one of them).
    public var images: [ImageFile]
    /// How many volumes held something probe knows (a table, a superblock, a label, a LUKS header).
    public var recognised: Int
    /// Every device probe looked into, by name, readable as probe reads it (through partitions, md
    /// arrays, RAID5 parity and LVs): for checking what a table will compose to.
    public var volumes: [String: ProbeVolume]

    /// The `dmsetup table`-style dump, lower devices first: `NAME: start length target args`.
    public var dump: String {
        var out = ""
        for device in devices {
            for line in device.lines { out += "\(device.name): \(line.text)\n" }
        }
        return out
    }
}
