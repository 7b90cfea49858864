/// The GUID partition table: a header at LBA 1 ("EFI PART", its own CRC32 over `header_size` bytes
/// with the CRC field zeroed) pointing at an array of 128-byte entries (with the array's CRC32), and
/// a backup header at the last LBA with its own copy of the array. As the kernel's efi.c does, a
/// header is valid when its signature, size, CRC, own LBA, usable range and entry array all check; a
/// bad primary falls back to the backup, and the fallback is reported.
enum GPT {
    static let signature = "EFI PART"
    static let entrySize = 128
    /// The kernel reads no more than this many bytes of entries (sane bound on a corrupt count).
    static let maxEntryBytes = 1 << 20

    struct Header {
        var lba: UInt64
        var backupLBA: UInt64
        var firstUsable: UInt64
        var lastUsable: UInt64
        var diskGUID: String
        var entriesLBA: UInt64
        var entryCount: Int
        var entries: [UInt8]
    }

    /// Whether `volume` has a GPT header signature at LBA 1 for `sectorSize` (either valid or not).
    static func hasSignature(_ volume: ProbeVolume, sectorSize: Int) throws -> Bool {
        try volume.read(at: UInt64(sectorSize), count: 8).matches(signature, at: 0)
    }

    /// Reads and checks the header at `lba`; throws a problem saying which check failed.
    static func header(_ volume: ProbeVolume, lba: UInt64, sectorSize: Int) throws -> Header {
        let ss = UInt64(sectorSize)
        let lastLBA = volume.size / ss - 1
        let place = "\(volume.name): GPT header at LBA \(lba)"
        func bad(_ message: String) -> ProbeProblem { ProbeProblem(place: place, message: message) }
        guard lba <= lastLBA else { throw bad("lies past the end of the disk (last LBA \(lastLBA))") }
        let h = try volume.readExactly(at: lba * ss, count: sectorSize, what: "the GPT header")
        guard h.matches(signature, at: 0) else { throw bad("no \"EFI PART\" signature") }
        let size = Int(h.le32(12))
        guard size >= 92, size <= sectorSize else { throw bad("header size \(size) is outside 92...\(sectorSize)") }
        var zeroed = Array(h[0..<size])
        zeroed.replaceSubrange(16..<20, with: [0, 0, 0, 0])
        let stored = h.le32(16), computed = zlibCRC32(zeroed, 0..<size)
        guard stored == computed else { throw bad("header CRC32 mismatch (stored 0x\(hex32(stored)), computed 0x\(hex32(computed)))") }
        let myLBA = h.le64(24)
        guard myLBA == lba else { throw bad("says it is at LBA \(myLBA)") }
        let first = h.le64(40), last = h.le64(48)
        guard first <= last, last <= lastLBA else { throw bad("usable LBAs \(first)...\(last) do not fit the disk (last LBA \(lastLBA))") }
        let entriesLBA = h.le64(72)
        let count = Int(h.le32(80)), eSize = Int(h.le32(84))
        guard eSize == entrySize else { throw bad("entry size \(eSize), not \(entrySize)") }
        guard count * eSize <= maxEntryBytes else { throw bad("\(count) entries is more than imgmap reads (\(maxEntryBytes) bytes)") }
        guard entriesLBA <= lastLBA, entriesLBA * ss + UInt64(count * eSize) <= volume.size else {
            throw bad("the entry array at LBA \(entriesLBA) (\(count) entries) lies past the end of the disk")
        }
        let entries = try volume.readExactly(at: entriesLBA * ss, count: count * eSize, what: "the GPT entry array")
        let storedArray = h.le32(88), computedArray = zlibCRC32(entries, 0..<entries.count)
        guard storedArray == computedArray else {
            throw bad("entry array CRC32 mismatch at LBA \(entriesLBA) (stored 0x\(hex32(storedArray)), computed 0x\(hex32(computedArray)))")
        }
        return Header(lba: lba, backupLBA: h.le64(32), firstUsable: first, lastUsable: last, diskGUID: guidString(h, 56),
                      entriesLBA: entriesLBA, entryCount: count, entries: entries)
    }

    /// The table of `volume`: the primary header, or the backup when the primary fails a check. Both
    /// failing is a problem naming both reasons.
    static func read(_ volume: ProbeVolume, sectorSize: Int) throws -> PartitionTable {
        let ss = UInt64(sectorSize)
        let lastLBA = volume.size / ss - 1
        var notes: [String] = []
        var chosen: Header
        var which = "primary"
        do {
            chosen = try header(volume, lba: 1, sectorSize: sectorSize)
            do {
                let backup = try header(volume, lba: chosen.backupLBA, sectorSize: sectorSize)
                if backup.entries != chosen.entries || backup.diskGUID != chosen.diskGUID {
                    notes.append("the backup GPT at LBA \(chosen.backupLBA) differs from the primary; the primary is used")
                }
            } catch let problem as ProbeProblem {
                notes.append("the backup GPT is invalid (\(problem.message)); the primary is used")
            }
        } catch let primary as ProbeProblem {
            do {
                chosen = try header(volume, lba: lastLBA, sectorSize: sectorSize)
                which = "backup"
                notes.append("the primary GPT is invalid (\(primary.message)); the backup at LBA \(lastLBA) is used")
            } catch let backup as ProbeProblem {
                throw ProbeProblem(place: "\(volume.name): GPT",
                                   message: "both headers are invalid: primary: \(primary.message); backup at LBA \(lastLBA): \(backup.message)")
            }
        }
        var table = PartitionTable(scheme: "gpt", sectorSize: sectorSize, identifier: chosen.diskGUID, partitions: [],
                                   notes: notes, header: which)
        let mul = ss / 512
        let e = chosen.entries
        for i in 0..<chosen.entryCount {
            let at = i * entrySize
            if e[at..<at + 16].allSatisfy({ $0 == 0 }) { continue }
            let first = e.le64(at + 32), last = e.le64(at + 40)
            guard first <= last, last <= lastLBA else {
                table.notes.append("entry \(i + 1) (LBAs \(first)...\(last)) does not fit the disk: left out")
                continue
            }
            var units: [UInt16] = []
            for k in 0..<36 {
                let u = e.le16(at + 56 + 2 * k)
                if u == 0 { break }
                units.append(u)
            }
            table.partitions.append(.init(number: i + 1, start: first * mul, length: (last - first + 1) * mul,
                                          type: guidString(e, at), uuid: guidString(e, at + 16),
                                          name: String(decoding: units, as: UTF16.self), attributes: e.le64(at + 48)))
        }
        return table
    }
}
