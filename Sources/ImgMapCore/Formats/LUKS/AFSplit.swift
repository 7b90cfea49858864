/// The anti-forensic merge of LUKS keyslots (cryptsetup's af.c): the stored material is `stripes`
/// blocks of `blockSize`; all but the last are XORed into a buffer, each followed by `diffuse`; the key
/// is that buffer XOR the last block. `diffuse` replaces each digest-sized piece i of the buffer by
/// hash(BE32(i) ‖ piece), truncated for the last, short piece.
enum AntiForensic {
    static func merge(_ material: UnsafeRawBufferPointer, blockSize: Int, stripes: Int, hash: String) -> SecretBytes? {
        guard stripes > 0, material.count >= blockSize * stripes, let digestSize = OpenSSLDigest.size(hash) else { return nil }
        let buffer = SecretBytes(count: blockSize)
        let ok = buffer.withMutableBytes { buf -> Bool in
            for stripe in 0..<stripes - 1 {
                for i in 0..<blockSize { buf[i] ^= material[stripe * blockSize + i] }
                guard diffuse(buf, digestSize: digestSize, hash: hash) else { return false }
            }
            for i in 0..<blockSize { buf[i] ^= material[(stripes - 1) * blockSize + i] }
            return true
        }
        return ok ? buffer : nil
    }

    static func diffuse(_ buf: UnsafeMutableRawBufferPointer, digestSize: Int, hash: String) -> Bool {
        var input = [UInt8](repeating: 0, count: 4 + digestSize)
        defer { SecretBytes.wipe(&input) }
        var index: UInt32 = 0
        var at = 0
        while at < buf.count {
            let length = min(digestSize, buf.count - at)
            withUnsafeBytes(of: index.bigEndian) { for i in 0..<4 { input[i] = $0[i] } }
            for i in 0..<length { input[4 + i] = buf[at + i] }
            guard let digest = input.withUnsafeBytes({ OpenSSLDigest.hash(hash, UnsafeRawBufferPointer(rebasing: $0[0..<4 + length])) }) else {
                return false
            }
            digest.withBytes { d in for i in 0..<length { buf[at + i] = d[i] } }
            index += 1
            at += length
        }
        return true
    }
}
