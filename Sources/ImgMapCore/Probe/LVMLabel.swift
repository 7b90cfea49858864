/// LVM2 physical volumes on disk: the label ("LABELONE" in one of sectors 0–3, CRC over the rest of
/// its sector), the PV header after it (PV UUID, size, data and metadata area lists), and each
/// metadata area: a 512-byte header (" LVM2 x[5A%r0N*>", its own CRC) whose first location points
/// into a circular buffer holding the committed text metadata, checked against its CRC.
struct LVMPhysicalVolume {
    let volume: ProbeVolume
    /// 32 characters, no dashes, as in the label.
    let uuid: String
    let labelSector: Int
    let deviceSize: UInt64
    let dataAreas: [(offset: UInt64, size: UInt64)]
    let metadataAreas: [(offset: UInt64, size: UInt64)]
    /// The committed metadata text of each area that holds one, with its checksum checked.
    var metadata: [LVMMetadataCopy]

    var json: JSONValue {
        var o: [(String, JSONValue)] = [("uuid", .string(lvmDashed(uuid))), ("label_sector", .number(Int64(labelSector))),
                                        ("device_size", .unsigned(deviceSize))]
        o.append(("data_areas", .array(dataAreas.map { .object([("offset", .unsigned($0.offset)), ("size", .unsigned($0.size))]) })))
        o.append(("metadata_areas", .array(metadataAreas.map { .object([("offset", .unsigned($0.offset)), ("size", .unsigned($0.size))]) })))
        o.append(("metadata", .array(metadata.map { .object([("vg", .string($0.vgName)), ("seqno", .unsigned($0.seqno)),
                                                              ("offset", .unsigned($0.offset)), ("size", .unsigned(UInt64($0.size)))]) })))
        return .object(o)
    }
}

/// One metadata area's committed copy of the VG text.
struct LVMMetadataCopy {
    let vgName: String
    let seqno: UInt64
    let vgID: String
    let root: LVMConfig
    /// Byte offset of the text in the PV and its size.
    let offset: UInt64
    let size: Int
}

/// LVM's CRC: CRC-32 (the zlib polynomial, reflected) started from 0xf597a6cf, without zlib's
/// pre- and post-inversion.
func lvmCRC(_ bytes: [UInt8], _ range: Range<Int>, seed: UInt32 = 0xf597a6cf) -> UInt32 {
    ~zlibCRC32(bytes, range, seed: ~seed)
}

/// `abcdef…` as LVM prints UUIDs: 6-4-4-4-4-4-6.
func lvmDashed(_ uuid: String) -> String {
    guard uuid.count == 32 else { return uuid }
    let c = Array(uuid)
    var parts: [String] = []
    var i = 0
    for n in [6, 4, 4, 4, 4, 4, 6] { parts.append(String(c[i..<i + n])); i += n }
    return parts.joined(separator: "-")
}

enum LVMLabel {
    static let labelID = "LABELONE"
    static let labelType = "LVM2 001"
    static let mdaMagic: [UInt8] = Array(" LVM2 x[5A%r0N*>".utf8)
    static let mdaHeaderSize: UInt64 = 512
    /// Bounds on what a corrupt header may ask probe to read.
    static let maxMetadataText = 64 << 20

    static func find(_ volume: ProbeVolume) -> Finding<LVMPhysicalVolume> {
        do {
            let head = try volume.read(at: 0, count: 2048)
            for sector in 0..<4 where head.count >= (sector + 1) * 512 {
                let s = Array(head[sector * 512..<(sector + 1) * 512])
                guard s.matches(labelID, at: 0) else { continue }
                return .found(try parse(s, sector: sector, volume: volume))
            }
            return .none
        } catch let problem as ProbeProblem {
            return .corrupt(problem)
        } catch {
            return .corrupt(ProbeProblem(place: volume.name, message: "\(error)"))
        }
    }

    static func parse(_ s: [UInt8], sector: Int, volume: ProbeVolume) throws -> LVMPhysicalVolume {
        let place = "\(volume.name): LVM label in sector \(sector)"
        func bad(_ m: String) -> ProbeProblem { ProbeProblem(place: place, message: m) }
        guard s.le64(8) == UInt64(sector) else { throw bad("says it is in sector \(s.le64(8))") }
        let stored = s.le32(16), computed = lvmCRC(s, 20..<512)
        guard stored == computed else { throw bad("CRC mismatch (stored 0x\(hex32(stored)), computed 0x\(hex32(computed)))") }
        guard s.matches(labelType, at: 24) else { throw bad("type \"\(s.cString(24, 8))\", not \"\(labelType)\"") }
        let offset = Int(s.le32(20))
        guard offset >= 32, offset + 32 + 8 + 16 <= 512 else { throw bad("PV header offset \(offset) is outside the sector") }
        let uuid = s.cString(offset, 32)
        guard uuid.utf8.count == 32 else { throw bad("PV UUID is not 32 characters") }
        let deviceSize = s.le64(offset + 32)
        var at = offset + 40
        func areas(_ what: String) throws -> [(offset: UInt64, size: UInt64)] {
            var list: [(offset: UInt64, size: UInt64)] = []
            while true {
                guard at + 16 <= 512 else { throw bad("the \(what) area list runs past the label sector") }
                let o = s.le64(at), n = s.le64(at + 8)
                at += 16
                if o == 0 && n == 0 { return list }
                list.append((o, n))
            }
        }
        let data = try areas("data")
        let metadataAreas = try areas("metadata")
        var copies: [LVMMetadataCopy] = []
        for area in metadataAreas {
            if let copy = try readArea(volume, offset: area.offset, size: area.size, place: volume.name) { copies.append(copy) }
        }
        return LVMPhysicalVolume(volume: volume, uuid: uuid, labelSector: sector, deviceSize: deviceSize, dataAreas: data,
                                 metadataAreas: metadataAreas, metadata: copies)
    }

    /// The committed metadata of the area at `offset` (bytes), or nil when it holds none (an area
    /// marked ignored, or an empty one).
    static func readArea(_ volume: ProbeVolume, offset: UInt64, size: UInt64, place: String) throws -> LVMMetadataCopy? {
        let where_ = "\(place): LVM metadata area at byte \(offset)"
        func bad(_ m: String) -> ProbeProblem { ProbeProblem(place: where_, message: m) }
        guard size > mdaHeaderSize else { throw bad("size \(size) is too small") }
        let h = try volume.readExactly(at: offset, count: 512, what: "the metadata area header")
        guard Array(h[4..<20]) == mdaMagic else { throw bad("no metadata area magic") }
        let stored = h.le32(0), computed = lvmCRC(h, 4..<512)
        guard stored == computed else { throw bad("header CRC mismatch (stored 0x\(hex32(stored)), computed 0x\(hex32(computed)))") }
        guard h.le64(24) == offset else { throw bad("header says it starts at byte \(h.le64(24))") }
        let areaSize = h.le64(32)
        let textOffset = h.le64(40), textSize = h.le64(48), textCRC = h.le32(56), flags = h.le32(60)
        if textOffset == 0 && textSize == 0 { return nil }
        if flags & 1 != 0 { return nil }  // RAW_LOCN_IGNORED: this copy is not maintained
        guard textOffset >= mdaHeaderSize, textOffset < areaSize, textSize <= UInt64(maxMetadataText),
              textSize < areaSize - mdaHeaderSize else {
            throw bad("metadata location \(textOffset)+\(textSize) does not fit the \(areaSize)-byte area")
        }
        // The buffer is circular: text that passes the end continues just after the header.
        let firstPart = min(textSize, areaSize - textOffset)
        var text = try volume.readExactly(at: offset + textOffset, count: Int(firstPart), what: "the metadata text")
        if firstPart < textSize {
            text += try volume.readExactly(at: offset + mdaHeaderSize, count: Int(textSize - firstPart), what: "the wrapped metadata text")
        }
        let crc = lvmCRC(text, 0..<text.count)
        guard crc == textCRC else {
            throw bad("metadata text at \(textOffset)+\(textSize) fails its checksum (stored 0x\(hex32(textCRC)), computed 0x\(hex32(crc)))")
        }
        let end = text.firstIndex(of: 0) ?? text.endIndex
        let root: LVMConfig
        do {
            root = try LVMConfig.parse(Array(text[..<end]))
        } catch let error as LVMConfig.ParseError {
            throw bad("metadata text: line \(error.line): \(error.message)")
        }
        guard let (vgName, vg) = root.sections.first, let seqno = vg["seqno"]?.integer, let id = vg["id"]?.string else {
            throw bad("metadata text holds no volume group (a section with id and seqno)")
        }
        return LVMMetadataCopy(vgName: vgName, seqno: UInt64(max(0, seqno)), vgID: id, root: vg, offset: offset + textOffset, size: text.count)
    }
}
