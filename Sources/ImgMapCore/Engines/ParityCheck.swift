/// `verify --parity`: reads every row of each raid4/5/6 segment of a table and reports the rows whose
/// P (or Q) does not match their data, with the member and sector where it first differs.
///
/// This is how a guessed layout, chunk size or member order is checked before a reconstruction is
/// trusted. For raid6 the right guess matches every row and a wrong one fails almost every row, because
/// Q weighs each member by its place; a raid4/5 row's members XOR to zero in any order and at any chunk
/// size, so there only a stale or foreign member, or members at different data offsets, show.
public struct ParityCheck {
    /// A row whose parity does not match its data.
    public struct Mismatch: Sendable, CustomStringConvertible {
        /// The table file of the raid segment.
        public var table: String
        /// The segment's line in `table`.
        public var line: Int
        /// The row (stripe) number: chunk `row` of every member.
        public var row: UInt64
        /// "P" or "Q".
        public var kind: String
        /// The member holding the parity that differs (0-based, in table order).
        public var member: Int
        /// That member's data device as the table names it.
        public var token: String
        /// The member sector (of its data area) where it first differs.
        public var memberSector: UInt64
        /// The segment's sector range of the row's data.
        public var arrayStart: UInt64
        /// Sectors of the row's data in the segment.
        public var arrayCount: UInt64

        public var description: String {
            "\(table):\(line): row \(row) (array sectors \(arrayStart)+\(arrayCount)): \(kind) on member \(member) (\(token)) differs from sector \(memberSector)"
        }
    }

    /// What the check found, complete once `run` returns.
    public struct Report: Sendable {
        /// Rows read and checked, over every raid segment.
        public var rows: UInt64 = 0
        /// Parity chunks that differ: a raid6 row whose P and Q both differ counts twice.
        public var mismatches: UInt64 = 0
        /// Segments that could not be checked, and why (no parity, members missing).
        public var skipped: [String] = []

        /// `parity consistent: N rows checked, 0 mismatches`, or what differs or was not checked.
        public var summary: String {
            // Nothing checked is not "consistent": a degraded raid5 has no redundancy left to check.
            (mismatches > 0 ? "parity differs" : rows == 0 ? "parity not checked" : "parity consistent") + ": \(rows) rows checked, \(mismatches) mismatch\(mismatches == 1 ? "" : "es")"
                + skipped.map { "; \($0)" }.joined()
        }
    }

    let top: MappedDevice

    /// A check of the raid segments of `top`'s table (not of lower tables).
    public init(top: MappedDevice) { self.top = top }

    /// Reads every row and calls `report` for each mismatch, in table and row order. Throws what a read
    /// of a member throws (``IOFailure``).
    public func run(_ report: (Mismatch) throws -> Void) throws -> Report {
        var result = Report()
        let io = DeviceIO()
        for segment in top.segments {
            guard let raid = segment.target as? any RaidSet else { continue }
            guard case .parity = raid.geometry.level, let source = raid.raidSource else {
                result.skipped.append("\(top.tablePath):\(segment.line): \(raid.typeName) has no parity")
                continue
            }
            guard raid.missing.isEmpty else {
                result.skipped.append("\(top.tablePath):\(segment.line): member\(raid.missing.count == 1 ? "" : "s") \(RaidTarget.list(raid.missing)) missing, so parity cannot be checked")
                continue
            }
            let g = raid.geometry
            let rows = g.memberSectors / g.chunk
            let bytes = Int(g.chunk * sectorSize)
            var chunks = [[UInt8]](repeating: [UInt8](repeating: 0, count: bytes), count: g.members)
            for r in 0..<rows {
                for k in 0..<g.members {
                    try chunks[k].withUnsafeMutableBytes { try source.readMember(k, r * g.chunk, into: $0, io: io) }
                }
                let layout = g.row(r)
                var p = [UInt8](repeating: 0, count: bytes)
                p.withUnsafeMutableBytes { t in for d in layout.dataDisks { chunks[d].withUnsafeBytes { Parity.xor(t, $0) } } }
                var checks = [("P", layout.p, p)]
                if let q = layout.q {
                    var qBytes = [UInt8](repeating: 0, count: bytes)
                    qBytes.withUnsafeMutableBytes { t in
                        for (j, d) in layout.dataDisks.enumerated() {
                            chunks[d].withUnsafeBytes { Parity.multiplyAccumulate(t, $0, by: GF256.power(layout.qCoefficient[j])) }
                        }
                    }
                    checks.append(("Q", q, qBytes))
                }
                result.rows += 1
                for (kind, member, expected) in checks {
                    guard let first = (0..<bytes).first(where: { expected[$0] != chunks[member][$0] }) else { continue }
                    result.mismatches += 1
                    let rowSectors = g.chunk * UInt64(layout.dataDisks.count)
                    try report(Mismatch(table: top.tablePath, line: segment.line, row: r, kind: kind, member: member,
                                        token: raid.members[member].dataToken,
                                        memberSector: raid.members[member].dataOffset + r * g.chunk + UInt64(first) / sectorSize,
                                        arrayStart: segment.start.value + r * rowSectors, arrayCount: rowSectors))
                }
            }
        }
        return result
    }
}
