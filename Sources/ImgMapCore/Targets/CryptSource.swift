import Dispatch

/// A crypt segment's plaintext: sector s of the segment is the decryption of sector `lowerStart + s`
/// of the lower device. Reads pread the lower range and decrypt it in place, spread over the cores;
/// writes encrypt and write, as dm-crypt's write path does. A request that does not cover whole crypto
/// units is widened to them (a write then reads, patches and rewrites the units it touches).
public final class CryptSource: ComputedSource {
    let device: Device
    let token: String
    let lowerStart: UInt64
    let length: UInt64
    /// The cipher spec as the table spells it, for provenance.
    let cipherName: String
    let cipher: BulkCipher
    let key: SecretBytes
    let iv: CryptIV
    /// ESSIV only: SHA-256 of the key, the AES-256 key that encrypts the IV.
    let essivKey: SecretBytes?
    let ivOffset: UInt64
    public let unitSectors: UInt64
    let ivLargeSectors: Bool

    init(device: Device, token: String, lowerStart: UInt64, length: UInt64, cipherName: String, cipher: BulkCipher,
         key: SecretBytes, iv: CryptIV, essivKey: SecretBytes?, ivOffset: UInt64, unitSectors: UInt64, ivLargeSectors: Bool) {
        self.device = device
        self.token = token
        self.lowerStart = lowerStart
        self.length = length
        self.cipherName = cipherName
        self.cipher = cipher
        self.key = key
        self.iv = iv
        self.essivKey = essivKey
        self.ivOffset = ivOffset
        self.unitSectors = unitSectors
        self.ivLargeSectors = ivLargeSectors
    }

    /// The whole units covering `sector ..< sector + count`: first sector and sector count.
    func widened(_ sector: UInt64, _ count: UInt64) -> (start: UInt64, count: UInt64) {
        let start = sector / unitSectors * unitSectors
        let end = (sector + count + unitSectors - 1) / unitSectors * unitSectors
        return (start, end - start)
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at sector: UInt64, io: DeviceIO) throws {
        let count = UInt64(buffer.count) / sectorSize
        let (start, units) = widened(sector, count)
        if start == sector && units == count {
            return try readUnits(buffer, at: sector, io: io)
        }
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(units * sectorSize), alignment: 4096)
        defer { scratch.deallocate() }
        try readUnits(scratch, at: start, io: io)
        let skip = Int((sector - start) * sectorSize)
        buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: scratch[skip..<skip + buffer.count]))
        scratch.initializeMemory(as: UInt8.self, repeating: 0)   // plaintext does not linger in freed memory
    }

    /// Reads and decrypts whole units at `sector` (unit-aligned). A large buffer is cut into parts that
    /// the cores take in turn, each part read (pread) and decrypted by the thread that took it, so the
    /// kernel's copy into user memory runs on every core alongside the AES work.
    func readUnits(_ buffer: UnsafeMutableRawBufferPointer, at sector: UInt64, io: DeviceIO) throws {
        let transform = self.transform
        try transform.forEachPart(of: buffer) { part, offset in
            let partSector = sector + UInt64(offset) / sectorSize
            try io.read(device, into: part, at: lowerStart + partSector)
            try transform.transformRun(part, firstSector: partSector, encrypt: false)
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at sector: UInt64, io: DeviceIO) throws {
        let count = UInt64(bytes.count) / sectorSize
        let (start, units) = widened(sector, count)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(units * sectorSize), alignment: 4096)
        defer {
            scratch.initializeMemory(as: UInt8.self, repeating: 0)   // nor does the plaintext of a partial unit
            scratch.deallocate()
        }
        let transform = self.transform
        let device = device, lowerStart = lowerStart
        if start == sector && units == count {
            // Encrypted out of place, from the caller's bytes into the scratch buffer: no extra copy.
            let input = SharedBytes(bytes: bytes)
            return try transform.forEachPart(of: scratch) { part, offset in
                let partSector = start + UInt64(offset) / sectorSize
                try transform.transformRun(part, from: UnsafeRawBufferPointer(rebasing: input.bytes[offset..<offset + part.count]),
                                           firstSector: partSector, encrypt: true)
                try io.write(device, UnsafeRawBufferPointer(part), at: lowerStart + partSector)
            }
        }
        // Partial units: read, patch and rewrite the units touched (as dm-crypt's block layer would).
        try readUnits(scratch, at: start, io: io)
        let skip = Int((sector - start) * sectorSize)
        UnsafeMutableRawBufferPointer(rebasing: scratch[skip..<skip + bytes.count]).copyMemory(from: bytes)
        try transform.forEachPart(of: scratch) { part, offset in
            let partSector = start + UInt64(offset) / sectorSize
            try transform.transformRun(part, firstSector: partSector, encrypt: true)
            try io.write(device, UnsafeRawBufferPointer(part), at: lowerStart + partSector)
        }
    }

    public func writeRefusal(sector: UInt64, count: UInt64) -> String? { nil }

    public func forEachLowerArea(sector: UInt64, count: UInt64, _ body: (Device, String, UInt64, UInt64) throws -> Void) rethrows {
        let (start, units) = widened(sector, count)
        try body(device, token, lowerStart + start, units)
    }

    public func describe(sector: UInt64, count: UInt64) -> String {
        "decrypted (\(cipherName)\(ivOffset == 0 ? "" : ", iv_offset \(ivOffset)")) from \(token) sector \(lowerStart + sector)"
    }

    var transform: CryptTransform {
        CryptTransform(cipher: cipher, key: key, iv: iv, essivKey: essivKey, ivOffset: ivOffset,
                       unitSectors: unitSectors, ivLargeSectors: ivLargeSectors)
    }
}

/// dm-crypt's per-unit encryption of a run of sectors: a cipher, its key and the IV rule.
public struct CryptTransform: Sendable {
    let cipher: BulkCipher
    let key: SecretBytes
    let iv: CryptIV
    let essivKey: SecretBytes?
    let ivOffset: UInt64
    let unitSectors: UInt64
    let ivLargeSectors: Bool
    /// Keeps the cipher calls to EVP instead of OpenSSL's provider functions (tests compare the two).
    var throughEVP = false

    /// The bytes one thread takes at a time when a large buffer is cut into parts: large enough that
    /// a part's set-up (a keyed context, a pread) is noise, small enough that both cores get several
    /// parts of a 1 MiB read, so one thread's pread overlaps the other's AES.
    static let partBytes = 256 << 10

    /// A transform for a dm-crypt cipher spec (`aes-xts-plain64`), or the kernel's refusal.
    public init(spec: String, key: SecretBytes, ivOffset: UInt64 = 0, unitSectors: UInt64 = 1) throws(TargetError) {
        let (cipher, iv) = try CryptTarget.parseCipher(spec)
        guard cipher.acceptsKeyLength(key.count) else {
            throw TargetError("Error decoding and setting key", detail: "a \(key.count)-byte key: \(cipher.kernelName) takes \(cipher.keyLengths) bytes")
        }
        var essiv: SecretBytes?
        if case .essiv = iv { essiv = key.withBytes { OpenSSLDigest.hash("sha256", $0) } }
        self.init(cipher: cipher, key: key, iv: iv, essivKey: essiv, ivOffset: ivOffset, unitSectors: unitSectors, ivLargeSectors: false)
    }

    init(cipher: BulkCipher, key: SecretBytes, iv: CryptIV, essivKey: SecretBytes?, ivOffset: UInt64, unitSectors: UInt64, ivLargeSectors: Bool) {
        self.cipher = cipher
        self.key = key
        self.iv = iv
        self.essivKey = essivKey
        self.ivOffset = ivOffset
        self.unitSectors = unitSectors
        self.ivLargeSectors = ivLargeSectors
    }

    /// Encrypts or decrypts `buffer` (whole units) in place; its first unit starts at `firstSector` of
    /// the segment. Large buffers are cut into parts, spread over the cores.
    public func transform(_ buffer: UnsafeMutableRawBufferPointer, firstSector: UInt64, encrypt: Bool) throws {
        try forEachPart(of: buffer) { part, offset in
            try transformRun(part, firstSector: firstSector + UInt64(offset) / sectorSize, encrypt: encrypt)
        }
    }

    /// Calls `body` with consecutive parts of `buffer` (each whole units, about `partBytes`) and their
    /// byte offsets, on every core when there is more than one part; the first error is rethrown.
    /// Parts are disjoint, so the threads never touch the same bytes.
    func forEachPart(of buffer: UnsafeMutableRawBufferPointer,
                     _ body: @Sendable (UnsafeMutableRawBufferPointer, Int) throws -> Void) throws {
        let unitBytes = Int(unitSectors * sectorSize)
        let units = buffer.count / unitBytes
        guard units > 0 else { return }
        let unitsPerPart = max(1, Self.partBytes / unitBytes)
        let parts = (units + unitsPerPart - 1) / unitsPerPart
        if parts == 1 || activeProcessorCount() == 1 {
            return try body(buffer, 0)
        }
        let failures = FailureSlots(count: parts)
        let shared = SharedBuffer(bytes: buffer)
        DispatchQueue.concurrentPerform(iterations: parts) { index in
            let first = index * unitsPerPart
            let end = min(units, first + unitsPerPart)
            do {
                try body(UnsafeMutableRawBufferPointer(rebasing: shared.bytes[first * unitBytes..<end * unitBytes]), first * unitBytes)
            } catch {
                failures.set(index, error)
            }
        }
        if let error = failures.first { throw error }
    }

    /// One thread's share: its own OpenSSL contexts, keyed once, one IV per unit. With `source`, the
    /// units are read from there (same length) and the result written into `buffer`; otherwise in place.
    func transformRun(_ buffer: UnsafeMutableRawBufferPointer, from source: UnsafeRawBufferPointer? = nil,
                      firstSector: UInt64, encrypt: Bool) throws {
        let context = try CipherContext(cipher: cipher, key: key, encrypt: encrypt, throughEVP: throughEVP)
        let essiv = try essivKey.map { try CipherContext(cipher: .aesECB, key: $0, encrypt: true, throughEVP: throughEVP) }
        if let source, !context.processesOutOfPlace {
            buffer.copyMemory(from: source)
        }
        let input = context.processesOutOfPlace ? source : nil
        let unitBytes = Int(unitSectors * sectorSize)
        let shift = UInt64(unitSectors.trailingZeroBitCount)
        var ivBlock = (UInt64(0), UInt64(0))
        for u in 0..<buffer.count / unitBytes {
            var ivSector = firstSector &+ UInt64(u) &* unitSectors &+ ivOffset
            if ivLargeSectors { ivSector >>= shift }
            switch iv {
            case .plain: ivBlock = (UInt64(ivSector & 0xffff_ffff).littleEndian, 0)
            case .plain64, .essiv: ivBlock = (ivSector.littleEndian, 0)
            case .plain64be: ivBlock = (0, ivSector.bigEndian)
            case .null: ivBlock = (0, 0)
            }
            try withUnsafeMutableBytes(of: &ivBlock) { ivBytes in
                if let essiv { try essiv.process(ivBytes, iv: ivBytes.baseAddress!) }
                let out = UnsafeMutableRawBufferPointer(rebasing: buffer[u * unitBytes..<(u + 1) * unitBytes])
                let from = input.map { UnsafeRawBufferPointer(rebasing: $0[u * unitBytes..<(u + 1) * unitBytes]) }
                try context.process(out, from: from, iv: UnsafeRawPointer(ivBytes.baseAddress!))
            }
        }
        ivBlock = (0, 0)
    }
}

/// Bytes that workers share, each reading only its own disjoint part.
struct SharedBytes: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer
}

/// A buffer that workers share, each writing only its own disjoint part.
struct SharedBuffer: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer
}

/// One error slot per worker of a concurrentPerform; each worker writes only its own.
final class FailureSlots: @unchecked Sendable {
    private var slots: [Error?]
    private let lock = DispatchSemaphore(value: 1)

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func set(_ index: Int, _ error: Error) {
        lock.wait()
        slots[index] = error
        lock.signal()
    }

    var first: Error? {
        lock.wait()
        defer { lock.signal() }
        return slots.compactMap { $0 }.first
    }
}
