// Parity arithmetic for RAID4/5/6, as md's raid6 library computes it: P is the XOR of the data chunks,
// Q is the sum over data chunks of g^c·D in GF(2⁸) with the polynomial x⁸+x⁴+x³+x²+1 (0x11d) and
// generator g = 2, where c is the chunk's coefficient index (the member's index in md's DDF layouts,
// its place among the row's data members otherwise; RaidLayout decides).

enum GF256 {
    /// exp[i] = g^i for i in 0..<510 (doubled so products need no modulo).
    static let exp: [UInt8] = {
        var table = [UInt8](repeating: 0, count: 512)
        var x: UInt16 = 1
        for i in 0..<255 {
            table[i] = UInt8(x)
            table[i + 255] = UInt8(x)
            x <<= 1
            if x & 0x100 != 0 { x ^= 0x11d }
        }
        table[510] = table[0]
        table[511] = table[1]
        return table
    }()

    /// log[x] for x ≠ 0; log[0] is unused.
    static let log: [Int] = {
        var table = [Int](repeating: 0, count: 256)
        for i in 0..<255 { table[Int(exp[i])] = i }
        return table
    }()

    static func multiply(_ a: UInt8, _ b: UInt8) -> UInt8 {
        guard a != 0, b != 0 else { return 0 }
        return exp[log[Int(a)] + log[Int(b)]]
    }

    static func inverse(_ a: UInt8) -> UInt8 {
        precondition(a != 0)
        return exp[255 - log[Int(a)]]
    }

    /// g^power.
    static func power(_ power: Int) -> UInt8 { exp[power % 255] }

    /// The 256-entry table of x ↦ c·x, so a chunk is multiplied by a constant with one lookup a byte.
    static func table(for c: UInt8) -> [UInt8] {
        (0..<256).map { multiply(c, UInt8($0)) }
    }
}

enum Parity {
    /// target ^= source, word-wise.
    static func xor(_ target: UnsafeMutableRawBufferPointer, _ source: UnsafeRawBufferPointer) {
        precondition(target.count == source.count)
        let words = target.count / 8
        let t = target.baseAddress!
        let s = source.baseAddress!
        for i in 0..<words {
            let v = t.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) ^ s.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
            t.storeBytes(of: v, toByteOffset: i * 8, as: UInt64.self)
        }
        for i in words * 8..<target.count { target[i] ^= source[i] }
    }

    /// target ^= c·source in GF(2⁸).
    static func multiplyAccumulate(_ target: UnsafeMutableRawBufferPointer, _ source: UnsafeRawBufferPointer, by c: UInt8) {
        precondition(target.count == source.count)
        if c == 1 { return xor(target, source) }
        guard c != 0 else { return }
        let table = GF256.table(for: c)
        table.withUnsafeBufferPointer { t in
            for i in 0..<target.count { target[i] ^= t[Int(source[i])] }
        }
    }

    /// buffer = c·buffer in GF(2⁸).
    static func scale(_ buffer: UnsafeMutableRawBufferPointer, by c: UInt8) {
        guard c != 1 else { return }
        let table = GF256.table(for: c)
        table.withUnsafeBufferPointer { t in
            for i in 0..<buffer.count { buffer[i] = t[Int(buffer[i])] }
        }
    }
}
