// Where md puts data and parity (drivers/md/raid5.c raid5_compute_sector, raid10.c), for the dm-raid
// types. A "row" is one stripe: chunk `r` of every member. Array chunk x lies in row x / k (k data
// members per row) as data index x % k; the layout says which member holds each data index, P and Q.

package enum ParityAlgorithm: Sendable {
    case leftAsymmetric, rightAsymmetric, leftSymmetric, rightSymmetric, parity0, parityN
    case zeroRestart, nRestart, nContinue, parityN6
    case leftAsymmetric6, rightAsymmetric6, leftSymmetric6, rightSymmetric6
    /// md's RAID6 forms of the RAID5 layouts, Q on the member after P (mdadm's left-symmetric is its
    /// RAID6 default), and parity-first with Q last: md has them, dm-raid has no name for them (only
    /// imgmap's `mdraid` target maps them).
    case leftAsymmetricPQ, rightAsymmetricPQ, leftSymmetricPQ, rightSymmetricPQ, parity0PQ, parity0Q6
}

extension ParityAlgorithm {
    /// The layout of an md RAID4/5/6 superblock: md's algorithm numbers (raid5.h ALGORITHM_*), nil
    /// for a number md does not define at that level. md's RAID4 keeps parity on the last member
    /// whatever the number says (raid5_compute_sector ignores it at level 4).
    init?(mdLevel: Int, layout: UInt32) {
        let raid5: [UInt32: ParityAlgorithm] = [0: .leftAsymmetric, 1: .rightAsymmetric, 2: .leftSymmetric,
                                                3: .rightSymmetric, 4: .parity0, 5: .parityN]
        let raid6: [UInt32: ParityAlgorithm] = [0: .leftAsymmetricPQ, 1: .rightAsymmetricPQ, 2: .leftSymmetricPQ,
                                                3: .rightSymmetricPQ, 4: .parity0PQ, 5: .parityN6,
                                                8: .zeroRestart, 9: .nRestart, 10: .nContinue,
                                                16: .leftAsymmetric6, 17: .rightAsymmetric6, 18: .leftSymmetric6,
                                                19: .rightSymmetric6, 20: .parity0Q6]
        switch mdLevel {
        case 4: self = .parityN
        case 5: guard let a = raid5[layout] else { return nil }; self = a
        case 6: guard let a = raid6[layout] else { return nil }; self = a
        default: return nil
        }
    }
}

package enum Raid10Format: String, Sendable { case near, far, offset }

package enum RaidLevel: Sendable {
    case raid0
    case raid1
    case raid10(Raid10Format, copies: Int)
    /// raid4/5 (one parity member) and raid6 (two).
    case parity(ParityAlgorithm, parityMembers: Int)
}

/// The members of one row: which member holds P, Q and each data index.
struct RowLayout {
    let p: Int
    let q: Int?
    /// dataDisks[j]: the member holding data index j.
    let dataDisks: [Int]
    /// qCoefficient[j]: the power of g that multiplies data index j in Q.
    let qCoefficient: [Int]
}

struct RaidGeometry: Sendable {
    let level: RaidLevel
    let members: Int
    let chunk: UInt64
    /// Sectors of each member that hold array data (md's dev_sectors).
    let memberSectors: UInt64
    /// Sectors the array holds; reads past it, up to the table length, fail.
    let arraySectors: UInt64

    var dataMembers: Int {
        switch level {
        case .raid0: members
        case .raid1: 1
        case .raid10: members
        case .parity(_, let parity): members - parity
        }
    }

    /// Where array sector x of a parity set lies: row, data index, inner sector, the row's layout.
    func locate(_ x: UInt64) -> (row: UInt64, j: Int, inner: UInt64, layout: RowLayout) {
        let k = UInt64(dataMembers)
        let chunkIndex = x / chunk
        let r = chunkIndex / k
        return (r, Int(chunkIndex % k), x % chunk, row(r))
    }

    func row(_ r: UInt64) -> RowLayout {
        guard case .parity(let algorithm, _) = level else { preconditionFailure("row layout of a level without parity") }
        let n = members
        let rn = Int(r % UInt64(n))
        let k: Int
        var p = 0
        var q: Int?
        var disk: (Int) -> Int
        var ddf = false
        switch algorithm {
        case .leftAsymmetric, .rightAsymmetric, .leftSymmetric, .rightSymmetric, .parity0, .parityN:
            k = n - 1
            switch algorithm {
            case .leftAsymmetric: p = n - 1 - rn
            case .rightAsymmetric: p = rn
            case .leftSymmetric: p = n - 1 - rn
            case .rightSymmetric: p = rn
            case .parity0: p = 0
            default: p = n - 1
            }
            let pp = p
            switch algorithm {
            case .leftSymmetric, .rightSymmetric: disk = { (pp + 1 + $0) % n }
            case .parity0: disk = { $0 + 1 }
            case .parityN: disk = { $0 }
            default: disk = { $0 < pp ? $0 : $0 + 1 }
            }
        case .zeroRestart, .nRestart, .leftAsymmetricPQ, .rightAsymmetricPQ:
            k = n - 2
            switch algorithm {
            case .zeroRestart, .rightAsymmetricPQ: p = rn
            case .nRestart: p = n - 1 - Int((r + 1) % UInt64(n))
            default: p = n - 1 - rn
            }
            ddf = algorithm == .zeroRestart || algorithm == .nRestart
            let pp = p
            if p == n - 1 {
                q = 0
                disk = { $0 + 1 }
            } else {
                q = p + 1
                disk = { $0 < pp ? $0 : $0 + 2 }
            }
        case .nContinue:
            k = n - 2
            p = n - 1 - rn
            q = (p + n - 1) % n
            ddf = true
            let pp = p
            disk = { (pp + 1 + $0) % n }
        case .parityN6:
            k = n - 2
            p = n - 2
            q = n - 1
            disk = { $0 }
        case .leftSymmetricPQ, .rightSymmetricPQ:
            k = n - 2
            p = algorithm == .leftSymmetricPQ ? n - 1 - rn : rn
            q = (p + 1) % n
            let pp = p
            disk = { (pp + 2 + $0) % n }
        case .parity0PQ:
            k = n - 2
            p = 0
            q = 1
            disk = { $0 + 2 }
        case .parity0Q6:
            k = n - 2
            p = 0
            q = n - 1
            disk = { $0 + 1 }
        case .leftAsymmetric6, .rightAsymmetric6, .leftSymmetric6, .rightSymmetric6:
            k = n - 2
            let m = n - 1
            let rm = Int(r % UInt64(m))
            p = (algorithm == .leftAsymmetric6 || algorithm == .leftSymmetric6) ? m - 1 - rm : rm
            q = n - 1
            let pp = p
            disk = (algorithm == .leftSymmetric6 || algorithm == .rightSymmetric6) ? { (pp + 1 + $0) % m } : { $0 < pp ? $0 : $0 + 1 }
        }
        let dataDisks = (0..<k).map(disk)
        // md's syndrome order: DDF layouts count every member from member 0 (P and Q give zero
        // sources); the others count only the data members, round the ring from the member after Q
        // (raid6_d0; Q is the last member in the dm-raid layouts, so that is member 0).
        let pp = p
        let coefficient: [Int]
        if ddf {
            coefficient = dataDisks
        } else if let q {
            let position = { (m: Int) in (m - q - 1 + 2 * n) % n }
            coefficient = dataDisks.map { position($0) - (position($0) > position(pp) ? 1 : 0) }
        } else {
            coefficient = dataDisks.map { $0 - ($0 > pp ? 1 : 0) }
        }
        return RowLayout(p: p, q: q, dataDisks: dataDisks, qCoefficient: coefficient)
    }

    /// raid10: the (member, member sector) of each copy of array sector `sector`, copy 0 first.
    func raid10Copies(_ sector: UInt64) -> [(member: Int, sector: UInt64)] {
        guard case .raid10(let format, let copies) = level else { return [] }
        let n = UInt64(members)
        let x = sector / chunk
        let inner = sector % chunk
        var result: [(Int, UInt64)] = []
        for c in 0..<UInt64(copies) {
            switch format {
            case .near:
                let v = x * UInt64(copies) + c
                result.append((Int(v % n), (v / n) * chunk + inner))
            case .far:
                // Copy c of the far layout sits in the c-th 1/copies of each member, shifted by c members.
                let stride = (memberSectors / UInt64(copies)) / chunk * chunk
                result.append((Int((x % n + c) % n), c * stride + (x / n) * chunk + inner))
            case .offset:
                result.append((Int((x % n + c) % n), ((x / n) * UInt64(copies) + c) * chunk + inner))
            }
        }
        return result
    }
}
