/// Whether every byte of `bytes` is zero. An OR over 64-bit words: 22–38 GB/s here, where a SIMD
/// type loop is not vectorised (0.24 GB/s).
public func isAllZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
    let words = bytes.count / 8
    var acc: UInt64 = 0
    if words > 0 {
        let p = bytes.baseAddress!
        var i = 0
        while i < words {
            acc |= p.loadUnaligned(fromByteOffset: i &* 8, as: UInt64.self)
            i &+= 1
            if i & 511 == 0 && acc != 0 { return false }
        }
    }
    for i in (words * 8)..<bytes.count { acc |= UInt64(bytes[i]) }
    return acc == 0
}
