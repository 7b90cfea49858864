/// The MBR (DOS) partition table: four entries at byte 446 of sector 0, signature 0x55 0xAA at 510;
/// an extended partition (type 0x05, 0x0F or 0x85) starts a chain of EBRs, each holding one logical
/// partition (relative to that EBR) and a link to the next EBR (relative to the extended partition).
/// Starts and sizes count logical sectors; they are returned in 512-byte sectors.
enum MBR {
    static let extendedTypes: Set<UInt8> = [0x05, 0x0f, 0x85]
    static let protectiveType: UInt8 = 0xee
    /// kpartx and the kernel stop following EBR links after this many.
    static let maxLogical = 100

    struct Entry {
        var boot: UInt8
        var type: UInt8
        var start: UInt32
        var size: UInt32
    }

    static func entries(_ sector: [UInt8]) -> [Entry] {
        (0..<4).map { i in
            let at = 446 + 16 * i
            return Entry(boot: sector[at], type: sector[at + 4], start: sector.le32(at + 8), size: sector.le32(at + 12))
        }
    }

    static func hasSignature(_ sector: [UInt8]) -> Bool {
        sector.count >= 512 && sector[510] == 0x55 && sector[511] == 0xaa
    }

    /// Whether sector 0 is a protective (or hybrid) MBR: one entry of type 0xEE, so the disk is GPT.
    static func isProtective(_ sector: [UInt8]) -> Bool {
        hasSignature(sector) && entries(sector).contains { $0.type == protectiveType }
    }

    /// Whether sector 0 reads as a partition table rather than, say, a FAT boot sector: the signature,
    /// boot flags 0x00 or 0x80 only (the kernel's test), and at least one used entry.
    static func looksLikeTable(_ sector: [UInt8]) -> Bool {
        guard hasSignature(sector) else { return false }
        let all = entries(sector)
        guard all.allSatisfy({ $0.boot == 0 || $0.boot == 0x80 }) else { return false }
        return all.contains { $0.type != 0 && $0.size != 0 }
    }

    /// Reads the table of `volume` (sector 0 already read) with logical sectors of `sectorSize`.
    static func read(_ volume: ProbeVolume, sector0: [UInt8], sectorSize: Int) throws -> PartitionTable {
        let mul = UInt64(sectorSize / 512)
        var table = PartitionTable(scheme: "dos", sectorSize: sectorSize,
                                   identifier: "0x" + hex32(sector0.le32(440)), partitions: [])
        let diskSectors = volume.size / 512
        for (slot, entry) in entries(sector0).enumerated() where entry.type != 0 && entry.size != 0 {
            let start = UInt64(entry.start) * mul
            let size = UInt64(entry.size) * mul
            var partition = PartitionTable.Partition(number: slot + 1, start: start, length: size,
                                                     type: "0x" + hex8(entry.type), bootable: entry.boot == 0x80)
            if start + size > diskSectors {
                table.notes.append("partition \(slot + 1) (sectors \(start)+\(size)) ends past the end of the disk (\(diskSectors) sectors): left out")
                continue
            }
            if extendedTypes.contains(entry.type) {
                // kpartx maps two logical sectors of an extended partition (room for a boot loader).
                partition.isExtended = true
                partition.length = min(size, 2 * mul)
                table.partitions.append(partition)
                try readChain(volume, extendedStart: start, extendedSize: size, mul: mul, into: &table)
            } else {
                table.partitions.append(partition)
            }
        }
        table.partitions.sort { $0.number < $1.number }
        return table
    }

    /// Follows the EBR chain of the extended partition at `extendedStart` (512-byte sectors), numbering
    /// logical partitions from 5. A link back to an EBR already read is a loop: reported, not followed.
    static func readChain(_ volume: ProbeVolume, extendedStart: UInt64, extendedSize: UInt64, mul: UInt64,
                          into table: inout PartitionTable) throws {
        var number = 5 + table.partitions.filter { $0.number >= 5 }.count
        var here = extendedStart
        var seen: Set<UInt64> = []
        let diskSectors = volume.size / 512
        for _ in 0..<maxLogical {
            if !seen.insert(here).inserted {
                table.notes.append("the extended partition chain loops: the EBR at sector \(here) is linked again; the chain is cut there")
                return
            }
            guard here + mul <= diskSectors else {
                table.notes.append("an EBR link points at sector \(here), past the end of the disk: the chain ends there")
                return
            }
            let ebr = try volume.readExactly(at: here * 512, count: 512, what: "the EBR")
            guard hasSignature(ebr) else {
                table.notes.append("the EBR at sector \(here) has no 0x55AA signature: the chain ends there")
                return
            }
            var next: UInt64?
            for entry in entries(ebr)[0..<2] where entry.type != 0 && entry.size != 0 {
                if extendedTypes.contains(entry.type) {
                    if next == nil { next = extendedStart + UInt64(entry.start) * mul }
                    continue
                }
                let start = here + UInt64(entry.start) * mul
                let size = UInt64(entry.size) * mul
                if start + size > diskSectors {
                    table.notes.append("logical partition \(number) (sectors \(start)+\(size)) ends past the end of the disk: left out")
                } else {
                    table.partitions.append(.init(number: number, start: start, length: size, type: "0x" + hex8(entry.type),
                                                  bootable: entry.boot == 0x80))
                }
                number += 1
            }
            guard let link = next else { return }
            if link < extendedStart || link >= extendedStart + extendedSize {
                table.notes.append("the EBR at sector \(here) links to sector \(link), outside the extended partition (sectors \(extendedStart)+\(extendedSize)): the chain ends there")
                return
            }
            here = link
        }
        table.notes.append("more than \(maxLogical) logical partitions: the rest are not read (as kpartx and the kernel)")
    }
}

func hex8(_ v: UInt8) -> String {
    let s = String(v, radix: 16)
    return s.count < 2 ? "0" + s : s
}

func hex32(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 8 - s.count) + s
}
