/// Where md puts the data chunks of a RAID4/5/6 array (the kernel's raid5_compute_sector), so probe
/// can read the metadata of what the array holds (an LVM label, a partition table) without the raid
/// target: a data chunk is read from its member, or, when that member is missing, rebuilt from the
/// rest of its stripe by XOR (RAID4/5, and RAID6 while P is there). RAID10 reads the first copy
/// present (near layout) or the first copy (far, offset).
struct ParityLayout {
    let level: Int
    let algorithm: UInt32
    let raidDisks: Int
    let chunk: UInt64  // bytes

    var dataDisks: Int { raidDisks - (level == 6 ? 2 : 1) }

    /// For data chunk `chunkNumber`: the stripe row, its data member, and the P (and Q) members.
    func locate(_ chunkNumber: UInt64) -> (stripe: UInt64, data: Int, p: Int, q: Int?) {
        let n = raidDisks, dd = dataDisks
        let stripe = chunkNumber / UInt64(dd)
        var d = Int(chunkNumber % UInt64(dd))
        let s = Int(stripe % UInt64(n))
        var p = 0
        var q: Int?
        if level == 4 { return (stripe, d, dd, nil) }
        if level == 5 {
            switch algorithm {
            case 0: p = dd - s; if d >= p { d += 1 }
            case 1: p = s; if d >= p { d += 1 }
            case 2: p = dd - s; d = (p + 1 + d) % n
            case 3: p = s; d = (p + 1 + d) % n
            case 4: p = 0; d += 1
            default: p = dd
            }
            return (stripe, d, p, nil)
        }
        func asymmetric(_ pd: Int) -> (Int, Int) {
            if pd == n - 1 { return (0, d + 1) }
            return (pd + 1, d >= pd ? d + 2 : d)
        }
        switch algorithm {
        case 0: p = n - 1 - s; (q, d) = asymmetric(p)
        case 1, 8: p = s; (q, d) = asymmetric(p)
        case 2: p = n - 1 - s; q = (p + 1) % n; d = (p + 2 + d) % n
        case 3: p = s; q = (p + 1) % n; d = (p + 2 + d) % n
        case 4: p = 0; q = 1; d += 2
        case 5: p = dd; q = dd + 1
        case 9: p = n - 1 - Int((stripe + 1) % UInt64(n)); (q, d) = asymmetric(p)
        case 10: p = n - 1 - s; q = (p + n - 1) % n; d = (p + 1 + d) % n
        case 16: p = dd - Int(stripe % UInt64(n - 1)); if d >= p { d += 1 }; q = n - 1
        case 17: p = Int(stripe % UInt64(n - 1)); if d >= p { d += 1 }; q = n - 1
        case 18: p = dd - Int(stripe % UInt64(n - 1)); d = (p + 1 + d) % (n - 1); q = n - 1
        case 19: p = Int(stripe % UInt64(n - 1)); d = (p + 1 + d) % (n - 1); q = n - 1
        default: p = 0; d += 1; q = n - 1  // 20: parity 0, Q last
        }
        return (stripe, d, p, q)
    }

    /// Fills `buffer` from array byte `offset`; `members[i]` is (volume, data start in bytes) or nil.
    func read(_ buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, members: [(ProbeVolume, UInt64)?], name: String) throws {
        var done = 0
        var position = offset
        while done < buffer.count {
            let chunkNumber = position / chunk
            let within = position % chunk
            let n = Int(min(UInt64(buffer.count - done), chunk - within))
            let (stripe, d, p, q) = locate(chunkNumber)
            let deviceOffset = stripe * chunk + within
            if let (volume, start) = members[d] {
                let bytes = try volume.readExactly(at: start + deviceOffset, count: n, what: "a data chunk")
                bytes.withUnsafeBytes { buffer.baseAddress!.advanced(by: done).copyMemory(from: $0.baseAddress!, byteCount: n) }
            } else {
                // XOR of every other member except Q gives the missing data chunk (P is the XOR of the data).
                var others = (0..<raidDisks).filter { $0 != d && $0 != q }
                if others.contains(where: { members[$0] == nil }) {
                    throw ProbeProblem(place: "md \(name)", message: "a data chunk at array byte \(position) cannot be rebuilt: too many members missing")
                }
                var out = [UInt8](repeating: 0, count: n)
                others.sort()
                for i in others {
                    let (volume, start) = members[i]!
                    let bytes = try volume.readExactly(at: start + deviceOffset, count: n, what: "a stripe chunk")
                    for k in 0..<n { out[k] ^= bytes[k] }
                }
                _ = p
                out.withUnsafeBytes { buffer.baseAddress!.advanced(by: done).copyMemory(from: $0.baseAddress!, byteCount: n) }
            }
            done += n
            position += UInt64(n)
        }
    }
}
