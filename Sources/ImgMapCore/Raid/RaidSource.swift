// The computed pieces of a raid set. Its sector space is the array's (sector 0 = the segment's first
// sector). Reads: a present member's data chunk is one read of that member; a missing member's
// chunk is rebuilt from the rest of its row (raid4/5: XOR; raid6: P, Q or both); raid1/10 read the
// first readable copy. Writes: every copy (raid1/10); for raid4/5/6 the data and the row's P and Q,
// computed from the row's data after the write (md's reconstruct-write; on a consistent set it equals
// its read-modify-write), into a degraded set too (a missing member's data lives on in the parity).

final class RaidSource: ComputedSource {
    let typeName: String
    let geometry: RaidGeometry
    let members: [RaidTarget.Member]
    let missing: Set<Int>

    init(typeName: String, geometry: RaidGeometry, members: [RaidTarget.Member], missing: Set<Int>) {
        self.typeName = typeName
        self.geometry = geometry
        self.members = members
        self.missing = missing
    }

    func present(_ k: Int) -> Bool { !missing.contains(k) && members[k].device != nil }

    func name(_ k: Int) -> String { "\(k) (\(members[k].dataToken))" }

    var firstLeg: Int { (0..<geometry.members).first(where: present)! }

    /// The member a piece starting at x reads from directly (nil when rebuilt).
    func readToken(_ x: UInt64) -> String? {
        switch geometry.level {
        case .raid0: return nil
        case .raid1: return members[firstLeg].dataToken
        case .raid10: return geometry.raid10Copies(x).first(where: { present($0.member) }).map { members[$0.member].dataToken }
        case .parity:
            let (_, j, _, layout) = geometry.locate(x)
            let disk = layout.dataDisks[j]
            return present(disk) ? members[disk].dataToken : nil
        }
    }

    /// Calls `body` with each piece of [sector, sector + count) that stays within one chunk.
    func forEachChunkPiece(_ sector: UInt64, _ count: UInt64, _ body: (UInt64, UInt64, Int) throws -> Void) rethrows {
        var x = sector
        var done = 0
        let end = sector + count
        while x < end {
            let piece = geometry.chunk == 0 ? end - x : min(end - x, geometry.chunk - x % geometry.chunk)
            try body(x, piece, done)
            done += Int(piece * sectorSize)
            x += piece
        }
    }

    func readMember(_ k: Int, _ sector: UInt64, into buffer: UnsafeMutableRawBufferPointer, io: DeviceIO) throws {
        try io.read(members[k].device!, into: buffer, at: members[k].dataOffset + sector)
    }

    func writeMember(_ k: Int, _ sector: UInt64, _ bytes: UnsafeRawBufferPointer, io: DeviceIO) throws {
        try io.write(members[k].device!, bytes, at: members[k].dataOffset + sector)
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at sector: UInt64, io: DeviceIO) throws {
        let count = UInt64(buffer.count) / sectorSize
        switch geometry.level {
        case .raid0:
            preconditionFailure("raid0 maps to its members directly")
        case .raid1:
            try readMember(firstLeg, sector, into: buffer, io: io)
        case .raid10:
            try forEachChunkPiece(sector, count) { x, piece, at in
                let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[at..<at + Int(piece * sectorSize)])
                let copy = geometry.raid10Copies(x).first(where: { present($0.member) })!
                try readMember(copy.member, copy.sector, into: slice, io: io)
            }
        case .parity:
            try forEachChunkPiece(sector, count) { x, piece, at in
                let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[at..<at + Int(piece * sectorSize)])
                let (r, j, inner, layout) = geometry.locate(x)
                let disk = layout.dataDisks[j]
                let memberSector = r * geometry.chunk + inner
                if present(disk) {
                    try readMember(disk, memberSector, into: slice, io: io)
                } else {
                    let data = try rowData(layout, memberSector, piece, io: io)
                    data[j].withUnsafeBytes { slice.copyMemory(from: $0) }
                }
            }
        }
    }

    /// Every data chunk of a row over member sectors [sector, sector + count), missing ones rebuilt.
    func rowData(_ layout: RowLayout, _ sector: UInt64, _ count: UInt64, io: DeviceIO) throws -> [[UInt8]] {
        let bytes = Int(count * sectorSize)
        var data = [[UInt8]](repeating: [], count: layout.dataDisks.count)
        var lost: [Int] = []
        for (j, disk) in layout.dataDisks.enumerated() {
            if present(disk) {
                var chunk = [UInt8](repeating: 0, count: bytes)
                try chunk.withUnsafeMutableBytes { try readMember(disk, sector, into: $0, io: io) }
                data[j] = chunk
            } else {
                lost.append(j)
            }
        }
        guard !lost.isEmpty else { return data }
        func parity(_ k: Int) throws -> [UInt8] {
            var chunk = [UInt8](repeating: 0, count: bytes)
            try chunk.withUnsafeMutableBytes { try readMember(k, sector, into: $0, io: io) }
            return chunk
        }
        let others = layout.dataDisks.indices.filter { !lost.contains($0) }
        let g = { (j: Int) in GF256.power(layout.qCoefficient[j]) }
        if lost.count == 1 && present(layout.p) {
            var d = try parity(layout.p)
            d.withUnsafeMutableBytes { t in for o in others { data[o].withUnsafeBytes { Parity.xor(t, $0) } } }
            data[lost[0]] = d
        } else if lost.count == 1, let q = layout.q, present(q) {
            var d = try parity(q)
            d.withUnsafeMutableBytes { t in
                for o in others { data[o].withUnsafeBytes { Parity.multiplyAccumulate(t, $0, by: g(o)) } }
                Parity.scale(t, by: GF256.inverse(g(lost[0])))
            }
            data[lost[0]] = d
        } else if lost.count == 2, let q = layout.q, present(q), present(layout.p) {
            var pxy = try parity(layout.p)
            var qxy = try parity(q)
            pxy.withUnsafeMutableBytes { t in for o in others { data[o].withUnsafeBytes { Parity.xor(t, $0) } } }
            qxy.withUnsafeMutableBytes { t in for o in others { data[o].withUnsafeBytes { Parity.multiplyAccumulate(t, $0, by: g(o)) } } }
            let (x, y) = (lost[0], lost[1])
            // Dx·gx ⊕ Dy·gy = Qxy and Dx ⊕ Dy = Pxy, so Dx = (Qxy ⊕ gy·Pxy) / (gx ⊕ gy).
            var dx = qxy
            dx.withUnsafeMutableBytes { t in
                pxy.withUnsafeBytes { Parity.multiplyAccumulate(t, $0, by: g(y)) }
                Parity.scale(t, by: GF256.inverse(g(x) ^ g(y)))
            }
            var dy = pxy
            dy.withUnsafeMutableBytes { t in dx.withUnsafeBytes { Parity.xor(t, $0) } }
            data[x] = dx
            data[y] = dy
        } else {
            preconditionFailure("the constructor refuses sets missing more members than they tolerate")
        }
        return data
    }

    func write(_ bytes: UnsafeRawBufferPointer, at sector: UInt64, io: DeviceIO) throws {
        let count = UInt64(bytes.count) / sectorSize
        switch geometry.level {
        case .raid0:
            preconditionFailure("raid0 maps to its members directly")
        case .raid1:
            for k in 0..<geometry.members where present(k) { try writeMember(k, sector, bytes, io: io) }
        case .raid10:
            try forEachChunkPiece(sector, count) { x, piece, at in
                let slice = UnsafeRawBufferPointer(rebasing: bytes[at..<at + Int(piece * sectorSize)])
                for copy in geometry.raid10Copies(x) where present(copy.member) {
                    try writeMember(copy.member, copy.sector, slice, io: io)
                }
            }
        case .parity:
            let rowSectors = geometry.chunk * UInt64(geometry.dataMembers)
            var x = sector
            let end = sector + count
            while x < end {
                let rowEnd = min(end, (x / rowSectors + 1) * rowSectors)
                try writeRow(bytes, from: x, to: rowEnd, base: sector, io: io)
                x = rowEnd
            }
        }
    }

    /// Writes array sectors [from, to) of one row, and the row's parity over the touched inner range.
    func writeRow(_ bytes: UnsafeRawBufferPointer, from: UInt64, to: UInt64, base: UInt64, io: DeviceIO) throws {
        let (r, _, _, layout) = geometry.locate(from)
        var touched: [(j: Int, inner: UInt64, count: UInt64, at: Int)] = []
        forEachChunkPiece(from, to - from) { x, piece, _ in
            let (_, j, inner, _) = geometry.locate(x)
            touched.append((j, inner, piece, Int((x - base) * sectorSize)))
        }
        let lo = touched.map(\.inner).min()!
        let hi = touched.map { $0.inner + $0.count }.max()!
        let rowStart = r * geometry.chunk
        var data = try rowData(layout, rowStart + lo, hi - lo, io: io)
        for t in touched {
            let offset = Int((t.inner - lo) * sectorSize)
            let length = Int(t.count * sectorSize)
            data[t.j].withUnsafeMutableBytes { d in
                UnsafeMutableRawBufferPointer(rebasing: d[offset..<offset + length])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[t.at..<t.at + length]))
            }
        }
        let size = Int((hi - lo) * sectorSize)
        var p = [UInt8](repeating: 0, count: size)
        p.withUnsafeMutableBytes { t in for d in data { d.withUnsafeBytes { Parity.xor(t, $0) } } }
        for t in touched where present(layout.dataDisks[t.j]) {
            let offset = Int((t.inner - lo) * sectorSize)
            try data[t.j].withUnsafeBytes { d in
                try writeMember(layout.dataDisks[t.j], rowStart + t.inner,
                                UnsafeRawBufferPointer(rebasing: d[offset..<offset + Int(t.count * sectorSize)]), io: io)
            }
        }
        if present(layout.p) { try p.withUnsafeBytes { try writeMember(layout.p, rowStart + lo, $0, io: io) } }
        if let q = layout.q, present(q) {
            var qBytes = [UInt8](repeating: 0, count: size)
            qBytes.withUnsafeMutableBytes { t in
                for (j, d) in data.enumerated() { d.withUnsafeBytes { Parity.multiplyAccumulate(t, $0, by: GF256.power(layout.qCoefficient[j])) } }
            }
            try qBytes.withUnsafeBytes { try writeMember(q, rowStart + lo, $0, io: io) }
        }
    }

    func writeRefusal(sector: UInt64, count: UInt64) -> String? { nil }

    func forEachLowerArea(sector: UInt64, count: UInt64, _ body: (Device, String, UInt64, UInt64) throws -> Void) rethrows {
        switch geometry.level {
        case .raid0:
            return
        case .raid1:
            for k in 0..<geometry.members where present(k) {
                try body(members[k].device!, members[k].dataToken, members[k].dataOffset + sector, count)
            }
        case .raid10:
            try forEachChunkPiece(sector, count) { x, piece, _ in
                for copy in geometry.raid10Copies(x) where present(copy.member) {
                    try body(members[copy.member].device!, members[copy.member].dataToken, members[copy.member].dataOffset + copy.sector, piece)
                }
            }
        case .parity:
            try forEachChunkPiece(sector, count) { x, piece, _ in
                let (r, _, inner, _) = geometry.locate(x)
                // A write reads and rewrites the whole row over this inner range.
                for k in 0..<geometry.members where present(k) {
                    try body(members[k].device!, members[k].dataToken, members[k].dataOffset + r * geometry.chunk + inner, piece)
                }
            }
        }
    }

    func describe(sector: UInt64, count: UInt64) -> String {
        switch geometry.level {
        case .raid0:
            return typeName
        case .raid1:
            let k = firstLeg
            return "\(typeName) leg \(name(k)) sector \(members[k].dataOffset + sector)"
        case .raid10:
            let copy = geometry.raid10Copies(sector).first(where: { present($0.member) })!
            return "\(typeName) member \(name(copy.member)) sector \(members[copy.member].dataOffset + copy.sector)"
        case .parity:
            let (r, j, inner, layout) = geometry.locate(sector)
            let disk = layout.dataDisks[j]
            let memberSector = r * geometry.chunk + inner
            if present(disk) {
                return "\(typeName) member \(name(disk)) sector \(members[disk].dataOffset + memberSector)"
            }
            let lostData = layout.dataDisks.filter { !present($0) }
            var from = (0..<geometry.members).filter { present($0) && $0 != layout.q }
            var how = "XOR"
            if !present(layout.p) || lostData.count == 2 {
                from = (0..<geometry.members).filter(present)
                how = lostData.count == 2 ? "P and Q" : "Q"
            }
            return "\(typeName) member \(name(disk)) rebuilt (\(how)) from members " + from.map(name).joined(separator: ", ")
                + " at member sector \(memberSector) (row \(r))"
        }
    }
}

/// A target made of an md array (`raid`, `mdraid`): what `verify --parity` reads it by.
protocol RaidSet {
    var typeName: String { get }
    var geometry: RaidGeometry { get }
    /// nil for raid0, which has nothing to compute.
    var raidSource: RaidSource? { get }
    var members: [RaidTarget.Member] { get }
    var missing: Set<Int> { get }
}

extension RaidTarget: RaidSet {
    var raidSource: RaidSource? { source }
}

extension MDRaidTarget: RaidSet {
    var typeName: String { "mdraid \(level) \(layout)" }
    var raidSource: RaidSource? { source }
    var missing: Set<Int> { source.missing }
}
