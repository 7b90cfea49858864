/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of persistent-data blocks
/// (the kernel's `crc32c`, via `dm_bm_checksum`). Neither zlib (CRC-32/IEEE only) nor libcrypto has it.
/// It is a checksum, not a cryptographic hash: a 256-entry table, byte at a time (a 4 KiB block in a
/// few microseconds).
enum CRC32C {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    /// The raw register after `bytes`, from `seed`, without the final inversion (the kernel's
    /// `crc32c(seed, data, len)`).
    static func update(_ seed: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc = seed
        table.withUnsafeBufferPointer { t in
            for byte in bytes { crc = t[Int((crc ^ UInt32(byte)) & 0xff)] ^ (crc >> 8) }
        }
        return crc
    }

    /// The standard CRC-32C of `bytes` (initial ~0, final inversion): 0xE3069283 for "123456789".
    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        ~update(0xffff_ffff, bytes)
    }

    /// persistent-data's `dm_bm_checksum(data, len, xor)`: crc32c from ~0, no final inversion, then xor.
    static func blockChecksum(_ bytes: UnsafeRawBufferPointer, xor: UInt32) -> UInt32 {
        update(0xffff_ffff, bytes) ^ xor
    }
}
