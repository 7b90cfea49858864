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
            try io.read(device, into: buffer, at: lowerStart + sector)
            try transform(buffer, firstSector: sector, encrypt: false)
            return
        }
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(units * sectorSize), alignment: 4096)
        defer { scratch.deallocate() }
        try io.read(device, into: scratch, at: lowerStart + start)
        try transform(scratch, firstSector: start, encrypt: false)
        let skip = Int((sector - start) * sectorSize)
        buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: scratch[skip..<skip + buffer.count]))
        scratch.initializeMemory(as: UInt8.self, repeating: 0)   // plaintext does not linger in freed memory
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at sector: UInt64, io: DeviceIO) throws {
        let count = UInt64(bytes.count) / sectorSize
        let (start, units) = widened(sector, count)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(units * sectorSize), alignment: 4096)
        defer { scratch.deallocate() }
        if start != sector || units != count {
            try read(into: scratch, at: start, io: io)
        }
        let skip = Int((sector - start) * sectorSize)
        UnsafeMutableRawBufferPointer(rebasing: scratch[skip..<skip + bytes.count]).copyMemory(from: bytes)
        try transform(scratch, firstSector: start, encrypt: true)
        try io.write(device, UnsafeRawBufferPointer(scratch), at: lowerStart + start)
    }

    public func writeRefusal(sector: UInt64, count: UInt64) -> String? { nil }

    public func forEachLowerArea(sector: UInt64, count: UInt64, _ body: (Device, String, UInt64, UInt64) throws -> Void) rethrows {
        let (start, units) = widened(sector, count)
        try body(device, token, lowerStart + start, units)
    }

    public func describe(sector: UInt64, count: UInt64) -> String {
        "decrypted (\(cipherName)\(ivOffset == 0 ? "" : ", iv_offset \(ivOffset)")) from \(token) sector \(lowerStart + sector)"
    }

    func transform(_ buffer: UnsafeMutableRawBufferPointer, firstSector: UInt64, encrypt: Bool) throws {
        try CryptTransform(cipher: cipher, key: key, iv: iv, essivKey: essivKey, ivOffset: ivOffset,
                           unitSectors: unitSectors, ivLargeSectors: ivLargeSectors)
            .transform(buffer, firstSector: firstSector, encrypt: encrypt)
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

    /// Work smaller than this is not split across threads (thread start-up would cost more).
    static let minimumBytesPerWorker = 64 << 10

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
    /// the segment. Large buffers are cut into runs of units, one per core.
    public func transform(_ buffer: UnsafeMutableRawBufferPointer, firstSector: UInt64, encrypt: Bool) throws {
        let unitBytes = Int(unitSectors * sectorSize)
        let units = buffer.count / unitBytes
        guard units > 0 else { return }
        let workers = max(1, min(activeProcessorCount(), buffer.count / Self.minimumBytesPerWorker, units))
        if workers == 1 {
            return try transformRun(buffer, firstSector: firstSector, encrypt: encrypt)
        }
        let failures = FailureSlots(count: workers)
        let perWorker = (units + workers - 1) / workers
        let shared = SharedBuffer(bytes: buffer)
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let first = worker * perWorker
            let end = min(units, first + perWorker)
            guard first < end else { return }
            let run = UnsafeMutableRawBufferPointer(rebasing: shared.bytes[first * unitBytes..<end * unitBytes])
            do {
                try transformRun(run, firstSector: firstSector + UInt64(first) * unitSectors, encrypt: encrypt)
            } catch {
                failures.set(worker, error)
            }
        }
        if let error = failures.first { throw error }
    }

    /// One thread's share: its own OpenSSL contexts, one IV per unit.
    func transformRun(_ buffer: UnsafeMutableRawBufferPointer, firstSector: UInt64, encrypt: Bool) throws {
        let context = try CipherContext(cipher: cipher, key: key, encrypt: encrypt)
        let essiv = try essivKey.map { try CipherContext(cipher: .aesECB, key: $0, encrypt: true) }
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
                try context.process(UnsafeMutableRawBufferPointer(rebasing: buffer[u * unitBytes..<(u + 1) * unitBytes]),
                                    iv: UnsafeRawPointer(ivBytes.baseAddress!))
            }
        }
        ivBlock = (0, 0)
    }
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
