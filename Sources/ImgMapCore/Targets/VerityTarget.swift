import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `verity` target (dm-verity): a read-only data device whose blocks are checked against a hash tree before they are returned.
///
/// dm-verity (drivers/md/dm-verity-target.c, Linux 6.1): the data device read through a hash tree on the
/// hash device. Each data block is returned only when its digest, and the digests of every hash block
/// above it up to the root digest, check out; otherwise the read fails with EIO, in whole data blocks
/// (the device's logical block size is the data block size). Version 1 hashes salt ‖ block, version 0
/// block ‖ salt. The target is read-only: the kernel refuses a writable table (`Device must be
/// readonly`) and fails every write, so scatter refuses before writing anything.
///
/// Table arguments:
///
/// ```
/// verity <version> <data_dev> <hash_dev> <data_block_size> <hash_block_size> <num_data_blocks>
///        <hash_start_block> <algorithm> <root_digest> <salt|-> [<#opt_params> <opt_params>...]
/// ```
///
/// options   ignore_corruption (corrupt blocks read as they are), restart_on_corruption and
///           panic_on_corruption (a corrupt block stops the run: the kernel would reboot or panic),
///           ignore_zero_blocks, check_at_most_once, try_verify_in_tasklet. FEC (use_fec_from_device
///           fec_roots fec_blocks fec_start) and root_hash_sig_key_desc are parsed as the kernel parses
///           them, then refused: imgmap implements neither Reed-Solomon correction nor the keyring.
///
/// Checks run in verity_ctr's order: argument count, the optional parameters' count (a first pass),
/// version, devices, block sizes, data blocks, segment length, hash start, algorithm, digest size, root
/// digest, salt, the optional parameters, the tree's levels and offsets, the hash device's size.
public struct VerityTarget: Target {
    public static let name = "verity"

    package let source: VeritySource
    let options: Options

    /// What happens when a block does not match (the kernel's `enum verity_mode`).
    public enum Mode: Sendable, Equatable {
        /// The default: a corrupt block's read fails with EIO.
        case eio
        /// `ignore_corruption`: a corrupt block reads as it is, and is reported.
        case logging
        /// `restart_on_corruption`: the kernel would reboot, so the run stops with ``VerityCorruption``.
        case restart
        /// `panic_on_corruption`: the kernel would panic, so the run stops with ``VerityCorruption``.
        case panic

        var option: String? {
            switch self {
            case .eio: nil
            case .logging: "ignore_corruption"
            case .restart: "restart_on_corruption"
            case .panic: "panic_on_corruption"
            }
        }
    }

    struct Options {
        var mode = Mode.eio
        var ignoreZeroBlocks = false
        var checkAtMostOnce = false
        var tasklet = false
        var fecDevice: String?

        /// verity_status's order.
        var normalForm: String {
            var words: [String] = []
            if let option = mode.option { words.append(option) }
            if ignoreZeroBlocks { words.append("ignore_zero_blocks") }
            if checkAtMostOnce { words.append("check_at_most_once") }
            if tasklet { words.append("try_verify_in_tasklet") }
            return words.isEmpty ? "" : " \(words.count) " + words.joined(separator: " ")
        }
    }

    /// DM_VERITY_OPTS_MAX: 4 flags, 8 FEC words, 2 signature words.
    static let maxOptionalArguments: UInt32 = 4 + 8 + 2
    /// x86's PAGE_SIZE, the largest data block.
    static let pageSize: UInt32 = 4096
    /// What imgmap assumes of every lower device: images have 512-byte logical blocks.
    static let lowerLogicalBlockSize: UInt32 = 512

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        guard arguments.count >= 10 else {
            throw TargetError("Not enough arguments", detail: "verity takes <version> <data_dev> <hash_dev> <data_block_size> <hash_block_size> <num_data_blocks> <hash_start_block> <algorithm> <root_digest> <salt|-> [<#opt_params> <opt_params>...], got \(arguments.count) arguments")
        }
        var options = Options()
        // The first pass over the optional parameters (only those that change how the rest is read;
        // its only possible failure is the count).
        if arguments.count > 10 {
            let (count, _) = try Self.optionalGroup(Array(arguments[10...]))
            for word in arguments[11..<11 + Int(count)] where word.lowercased() == "try_verify_in_tasklet" {
                options.tasklet = true
            }
        }

        guard let version = KernelNumber.unsigned32Scanf(arguments[0]), version <= 1 else {
            throw TargetError("Invalid version", detail: "`\(arguments[0])`: 0 (Chromium OS) or 1")
        }
        let data: Device
        do { data = try context.device(arguments[1]) } catch {
            throw TargetError("Data device lookup failed", detail: "`\(arguments[1])`: \(error.message)\(error.detail.map { ": \($0)" } ?? "")", hint: error.hint, exitStatus: error.exitStatus)
        }
        let hash: Device
        do { hash = try context.device(arguments[2]) } catch {
            throw TargetError("Hash device lookup failed", detail: "`\(arguments[2])`: \(error.message)\(error.detail.map { ": \($0)" } ?? "")", hint: error.hint, exitStatus: error.exitStatus)
        }
        guard let dataBlockSize = KernelNumber.unsigned32Scanf(arguments[3]), dataBlockSize != 0, dataBlockSize & (dataBlockSize - 1) == 0,
              dataBlockSize >= Self.lowerLogicalBlockSize, dataBlockSize <= Self.pageSize else {
            throw TargetError("Invalid data device block size", detail: "`\(arguments[3])`: a power of two from \(Self.lowerLogicalBlockSize) to \(Self.pageSize) bytes")
        }
        let dataBlockBits = dataBlockSize.trailingZeroBitCount
        guard let hashBlockSize = KernelNumber.unsigned32Scanf(arguments[4]), hashBlockSize != 0, hashBlockSize & (hashBlockSize - 1) == 0,
              hashBlockSize >= Self.lowerLogicalBlockSize, hashBlockSize <= UInt32(Int32.max) else {
            throw TargetError("Invalid hash device block size", detail: "`\(arguments[4])`: a power of two from \(Self.lowerLogicalBlockSize) bytes up")
        }
        let hashBlockBits = hashBlockSize.trailingZeroBitCount
        let dataShift = UInt64(dataBlockBits - 9)
        guard let dataBlocks = KernelNumber.sector(arguments[5]), (dataBlocks << dataShift) >> dataShift == dataBlocks else {
            throw TargetError("Invalid data blocks", detail: "`\(arguments[5])`: a decimal count of \(dataBlockSize)-byte blocks below 2^64 sectors")
        }
        guard length.value <= dataBlocks << dataShift else {
            throw TargetError("Data device is too small", detail: "the segment has \(counted(length.value, "sector")); \(counted(dataBlocks, "data block")) of \(dataBlockSize) bytes are \(counted(dataBlocks << dataShift, "sector"))")
        }
        let hashShift = UInt64(hashBlockBits - 9)
        guard let hashStart = KernelNumber.sector(arguments[6]), (hashStart << hashShift) >> hashShift == hashStart else {
            throw TargetError("Invalid hash start", detail: "`\(arguments[6])`: a decimal number of \(hashBlockSize)-byte hash blocks below 2^64 sectors")
        }
        let algorithm: VerityHashAlgorithm
        switch VerityHashAlgorithm.lookup(arguments[7]) {
        case .found(let found): algorithm = found
        case .unknown:
            throw TargetError("Cannot initialize hash function", detail: "`\(arguments[7])`: the kernel's crypto API has no hash of that name (-ENOENT)",
                              hint: "names are case-sensitive: sha256, sha1, sha512 …")
        case .notImplemented(let why):
            throw TargetError("Unsupported hash algorithm", detail: why)
        }
        guard Int(hashBlockSize) >= algorithm.digestSize * 2 else {
            throw TargetError("Digest size too big", detail: "a \(hashBlockSize)-byte hash block must hold two \(algorithm.digestSize)-byte \(algorithm.name) digests")
        }
        guard let rootDigest = Self.hexBytes(arguments[8]), rootDigest.count == algorithm.digestSize else {
            throw TargetError("Invalid root digest", detail: "`\(arguments[8])`: \(algorithm.digestSize * 2) hex digits (\(algorithm.name))")
        }
        var salt: [UInt8] = []
        if arguments[9] != "-" {
            guard let bytes = Self.hexBytes(arguments[9]) else {
                throw TargetError("Invalid salt", detail: "`\(arguments[9])`: an even number of hex digits, or `-` for none")
            }
            salt = bytes
        }

        // The optional parameters, for real.
        if arguments.count > 10 {
            try Self.parseOptions(Array(arguments[10...]), into: &options, dataBlocks: dataBlocks, dataShift: dataShift, context: context)
        }

        let geometry = try VerityGeometry(version: version, dataBlockBits: dataBlockBits, hashBlockBits: hashBlockBits,
                                          dataBlocks: dataBlocks, hashStart: hashStart, digestSize: algorithm.digestSize)
        // dm_bufio_get_device_size: whole hash blocks of the device. A device of unknown size (an image
        // `check` could not open) is not checked.
        let hashDeviceBlocks = hash.size.value >> hashShift
        if hash.sizeIsKnown && hashDeviceBlocks < geometry.hashBlocks {
            throw TargetError("Hash device is too small",
                              detail: "the tree ends at hash block \(geometry.hashBlocks) (\(counted(geometry.hashBlocks << hashShift, "sector")) of \(arguments[2])); the device has \(counted(hashDeviceBlocks, "whole \(hashBlockSize)-byte block"))")
        }
        if let fec = options.fecDevice {
            throw TargetError("Unsupported feature", detail: "use_fec_from_device \(fec): forward error correction (Reed-Solomon over the FEC device) is not implemented by imgmap",
                              hint: "remove the FEC parameters to read without correction: intact blocks read the same")
        }
        // The table's logical block size becomes the data block size (verity_io_hints); the kernel then
        // refuses, on resume, a segment that does not start and end on it.
        let unit = geometry.dataBlockSectors
        guard context.start.value % unit == 0, length.value % unit == 0 else {
            throw TargetError("not aligned to h/w logical block size",
                              detail: "the segment (start \(context.start.value), length \(length.value)) is not a multiple of the \(dataBlockSize)-byte data block (\(counted(unit, "sector")))")
        }

        var zeroDigest: [UInt8]?
        if options.ignoreZeroBlocks {
            do {
                let hasher = try VerityHasher(algorithm: algorithm, salt: salt, version: version)
                let zeros = [UInt8](repeating: 0, count: Int(dataBlockSize))
                zeroDigest = try zeros.withUnsafeBytes { try hasher.digest($0) }
            } catch {
                throw TargetError("Cannot allocate zero digest", detail: "\(error)")
            }
        }
        source = VeritySource(data: data, dataToken: arguments[1], hash: hash, hashToken: arguments[2], length: length.value,
                              geometry: geometry, algorithm: algorithm, rootDigest: rootDigest, salt: salt,
                              mode: options.mode, zeroDigest: zeroDigest)
        self.options = options
    }

    /// dm_read_arg_group: a count of 0…DM_VERITY_OPTS_MAX that the remaining arguments can satisfy.
    /// Arguments past the group are ignored, as the kernel does.
    static func optionalGroup(_ arguments: [String]) throws(TargetError) -> (UInt32, ArraySlice<String>) {
        guard let count = KernelNumber.unsigned32Scanf(arguments[0]), count <= maxOptionalArguments, Int(count) <= arguments.count - 1 else {
            throw TargetError("Invalid number of feature args",
                              detail: "`\(arguments[0])`: a count of 0 to \(maxOptionalArguments) optional parameters that follow")
        }
        return (count, arguments[1..<1 + Int(count)])
    }

    /// verity_parse_opt_args (the second pass). Names are compared without case (strcasecmp).
    static func parseOptions(_ arguments: [String], into options: inout Options, dataBlocks: UInt64, dataShift: UInt64,
                             context: TargetContext) throws(TargetError) {
        var (left, words) = try optionalGroup(arguments)
        func next() -> String { left -= 1; return words.popFirst()! }
        while left > 0 {
            let word = next()
            switch word.lowercased() {
            case "ignore_corruption", "restart_on_corruption", "panic_on_corruption":
                guard options.mode == .eio else {
                    throw TargetError("Conflicting error handling parameters", detail: "`\(word)` after `\(options.mode.option!)`: one of ignore_corruption, restart_on_corruption, panic_on_corruption")
                }
                options.mode = word.lowercased() == "ignore_corruption" ? .logging : word.lowercased() == "restart_on_corruption" ? .restart : .panic
            case "ignore_zero_blocks":
                options.ignoreZeroBlocks = true
            case "check_at_most_once":
                guard dataBlocks <= UInt64(Int32.max) else {
                    throw TargetError("device too large to use check_at_most_once", detail: "\(dataBlocks) data blocks; the kernel's bitmap holds \(Int32.max)")
                }
                options.checkAtMostOnce = true
            case "try_verify_in_tasklet":
                options.tasklet = true
            case "use_fec_from_device", "fec_blocks", "fec_start", "fec_roots":
                guard left > 0 else {
                    throw TargetError("FEC feature arguments require a value", detail: "`\(word)` is the last optional parameter")
                }
                let value = next()
                switch word.lowercased() {
                case "use_fec_from_device":
                    do { _ = try context.device(value) } catch {
                        throw TargetError("FEC device lookup failed", detail: "`\(value)`: \(error.message)\(error.detail.map { ": \($0)" } ?? "")", hint: error.hint, exitStatus: error.exitStatus)
                    }
                    options.fecDevice = value
                case "fec_roots":
                    // %hhu: the value is kept modulo 256.
                    guard let roots = KernelNumber.sector(value).map({ UInt8(truncatingIfNeeded: $0) }), roots >= 2, roots <= 24 else {
                        throw TargetError("Invalid fec_roots", detail: "`\(value)`: 2 to 24 parity bytes")
                    }
                default:
                    guard let n = KernelNumber.sector(value), (n << dataShift) >> dataShift == n else {
                        throw TargetError("Invalid \(word.lowercased())", detail: "`\(value)`: a decimal count of data blocks")
                    }
                }
            case "root_hash_sig_key_desc":
                guard left > 0 else {
                    throw TargetError("DM Verity Sig Verification Signature key not specified", detail: "`\(word)` needs the key's description")
                }
                let key = next()
                throw TargetError("Unsupported feature", detail: "root_hash_sig_key_desc \(key): the kernel checks the root digest's PKCS#7 signature from its keyring, which imgmap cannot read",
                                  hint: "check the signature yourself (openssl smime -verify) and remove the two words")
            default:
                throw TargetError("Unrecognized verity feature request", detail: "`\(word)`",
                                  hint: "verity's optional parameters: ignore_corruption, restart_on_corruption, panic_on_corruption, ignore_zero_blocks, check_at_most_once, try_verify_in_tasklet, use_fec_from_device <dev>, fec_roots <n>, fec_blocks <n>, fec_start <n>, root_hash_sig_key_desc <key>")
            }
        }
    }

    /// hex2bin of a whole string: nil for an odd length or a character that is not a hex digit.
    static func hexBytes(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var i = 0
        while i < digits.count {
            guard let hi = hexDigit(digits[i]), let lo = hexDigit(digits[i + 1]) else { return nil }
            bytes.append(hi << 4 | lo)
            i += 2
        }
        return bytes
    }

    private static func hexDigit(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {
        // verity_iterate_devices names the data area; the hash tree's blocks are the hash device's area
        // (checked by the constructor against the device's size, as dm-bufio's device size is).
        try body(DeviceArea(device: source.data, token: source.dataToken, start: 0, length: source.length))
        try body(DeviceArea(device: source.hash, token: source.hashToken, start: 0, length: source.geometry.hashBlocks * source.geometry.hashBlockSectors))
    }

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        try body(.computed(source, token: source.dataToken, sector: offset, count: count))
    }

    /// verity_status: numbers in decimal, digests in lower-case hex, the algorithm as given.
    public var tableArguments: String {
        let g = source.geometry
        let salt = source.salt.isEmpty ? "-" : hexString(source.salt)
        return "\(g.version) \(source.dataToken) \(source.hashToken) \(g.dataBlockSize) \(g.hashBlockSize) \(g.dataBlocks) \(g.hashStart) "
            + "\(source.algorithm.name) \(hexString(source.rootDigest)) \(salt)\(options.normalForm)"
    }

    public var writeRefusal: String? {
        "Device must be readonly: dm-verity maps its data read-only (the kernel refuses a writable verity table and fails every write); change the data and run `veritysetup format` again"
    }
}

private func hexString(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 15)])
    }
    return String(decoding: out, as: UTF8.self)
}

extension Device {
    /// False for an image `check` could not open, whose size is unknown.
    var sizeIsKnown: Bool {
        if case .leaf(let leaf) = self { return leaf.sizeKnown }
        return true
    }
}

/// A verity restart_on_corruption or panic_on_corruption device met a corrupt block: the kernel would
/// have rebooted or panicked, so the read never returns.
public struct VerityCorruption: ImgMapFailure {
    /// The corrupt block: the data device's token, then `data block N` or `metadata block N` (a hash block).
    public var what: String
    /// The table's corruption mode: ``VerityTarget/Mode/restart`` or ``VerityTarget/Mode/panic``.
    public var mode: VerityTarget.Mode
    /// Always ``ExitStatus/dataError`` (65).
    public var exitStatus: ExitStatus { .dataError }

    public var description: String {
        let consequence = mode == .panic ? "panic" : "restart the machine"
        return "verity: \(what) is corrupted: the kernel would \(consequence) here (\(mode.option ?? "")), so the read stops"
    }
}

/// A verity segment's data, checked against the hash tree. Sector s of the segment is sector s of the
/// data device (6.1 has no data offset); reads are widened to whole data blocks. Verified hash blocks
/// are kept (bounded) across reads, as the kernel's dm-bufio keeps them with `hash_verified` set; a
/// block is verified against the digest above it once, then trusted.
package final class VeritySource: ComputedSource {
    let data: Device
    let dataToken: String
    let hash: Device
    let hashToken: String
    let length: UInt64
    package let geometry: VerityGeometry
    let algorithm: VerityHashAlgorithm
    let rootDigest: [UInt8]
    let salt: [UInt8]
    let mode: VerityTarget.Mode
    let zeroDigest: [UInt8]?
    let verified: VerifiedHashBlocks

    /// Data smaller than this is hashed on one thread.
    static let minimumBytesPerWorker = 256 << 10

    init(data: Device, dataToken: String, hash: Device, hashToken: String, length: UInt64, geometry: VerityGeometry,
         algorithm: VerityHashAlgorithm, rootDigest: [UInt8], salt: [UInt8], mode: VerityTarget.Mode, zeroDigest: [UInt8]?) {
        self.data = data
        self.dataToken = dataToken
        self.hash = hash
        self.hashToken = hashToken
        self.length = length
        self.geometry = geometry
        self.algorithm = algorithm
        self.rootDigest = rootDigest
        self.salt = salt
        self.mode = mode
        self.zeroDigest = zeroDigest
        // 16 MiB of hash blocks covers 2 GiB of data at level 0 with sha256 and 4 KiB blocks, and always
        // at least one block per level so that a walk's blocks fit.
        verified = VerifiedHashBlocks(capacity: max(16 << 20, (geometry.levels + 1) * geometry.hashBlockSize))
    }

    public var unitSectors: UInt64 { geometry.dataBlockSectors }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at sector: UInt64, io: DeviceIO) throws {
        let count = UInt64(buffer.count) / sectorSize
        guard count > 0 else { return }
        let unit = unitSectors
        let first = sector / unit
        let end = (sector + count + unit - 1) / unit
        if first * unit == sector && end * unit == sector + count {
            try io.read(data, into: buffer, at: sector)
            return try verify(buffer, firstBlock: first, io: io)
        }
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: Int((end - first) * unit * sectorSize), alignment: 4096)
        defer { scratch.deallocate() }
        try io.read(data, into: scratch, at: first * unit)
        try verify(scratch, firstBlock: first, io: io)
        let skip = Int((sector - first * unit) * sectorSize)
        buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: scratch[skip..<skip + buffer.count]))
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at sector: UInt64, io: DeviceIO) throws {
        // Never called: writeRefusal refuses every write first.
        throw PlainFailure("verity: sectors \(sector)+\(UInt64(bytes.count) / sectorSize) of \(dataToken) cannot be written: the device is read-only", .dataError)
    }

    public func writeRefusal(sector: UInt64, count: UInt64) -> String? {
        "Device must be readonly: verity devices are read-only"
    }

    public func forEachLowerArea(sector: UInt64, count: UInt64, _ body: (Device, String, UInt64, UInt64) throws -> Void) rethrows {
        guard count > 0 else { return }
        let unit = unitSectors
        let first = sector / unit
        let last = (sector + count + unit - 1) / unit - 1
        try body(data, dataToken, first * unit, (last + 1 - first) * unit)
        for level in stride(from: geometry.levels - 1, through: 0, by: -1) {
            let from = geometry.digestPosition(of: first, level: level).hashBlock
            let to = geometry.digestPosition(of: last, level: level).hashBlock
            try body(hash, hashToken, from * geometry.hashBlockSectors, (to + 1 - from) * geometry.hashBlockSectors)
        }
    }

    public func describe(sector: UInt64, count: UInt64) -> String {
        "verified (verity \(geometry.version), \(algorithm.name), \(geometry.dataBlockSize)-byte blocks\(mode.option.map { ", \($0)" } ?? "")) from \(dataToken) sector \(sector); hash tree on \(hashToken) from hash block \(geometry.hashStart)"
    }

    // MARK: Verification

    /// What the tree walk found for a block.
    enum Walk {
        case ok(isZero: Bool)
        /// A hash block whose digest is not the one above it (EIO, restart or panic modes).
        case corruptHashBlock(UInt64)
    }

    /// Checks `blocks` (whole data blocks from `firstBlock`, just read) against the tree, in the kernel's
    /// order (verity_verify_io): for each block its digest from the tree, then the block itself. Zeroes
    /// the blocks ignore_zero_blocks answers with zeros; throws `MappedReadError` at the first block that
    /// fails (the reader then retries block by block), or `VerityCorruption` in restart/panic modes.
    func verify(_ blocks: UnsafeMutableRawBufferPointer, firstBlock: UInt64, io: DeviceIO) throws {
        let blockSize = geometry.dataBlockSize
        let digestSize = geometry.digestSize
        let n = blocks.count / blockSize
        var wanted = [UInt8](repeating: 0, count: n * digestSize)
        var isZero = [Bool](repeating: false, count: n)
        let walker = try VerityHasher(algorithm: algorithm, salt: salt, version: geometry.version)
        var unverified: [UInt64: [UInt8]] = [:]
        var walked = n
        var corruptHashBlock: UInt64?
        try wanted.withUnsafeMutableBytes { want in
            for b in 0..<n {
                switch try wantedDigest(of: firstBlock + UInt64(b), into: want.baseAddress! + b * digestSize,
                                        hasher: walker, unverified: &unverified, io: io) {
                case .ok(let zero):
                    isZero[b] = zero
                case .corruptHashBlock(let block):
                    walked = b
                    corruptHashBlock = block
                    return
                }
            }
        }
        // ignore_corruption returns the data whatever its digest: nothing to compare.
        if mode != .logging, let bad = try firstMismatch(blocks, count: walked, wanted: wanted, isZero: isZero) {
            try fail(block: firstBlock + UInt64(bad), what: "data block \(firstBlock + UInt64(bad))")
        }
        if let block = corruptHashBlock {
            try fail(block: firstBlock + UInt64(walked), what: "metadata block \(block)")
        }
        for b in 0..<n where isZero[b] {
            UnsafeMutableRawBufferPointer(rebasing: blocks[b * blockSize..<(b + 1) * blockSize]).initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    /// The kernel's answer to a corrupt block under data block `block`: EIO, or the end of the run.
    func fail(block: UInt64, what: String) throws -> Never {
        switch mode {
        case .restart, .panic:
            throw VerityCorruption(what: "\(dataToken): \(what)", mode: mode)
        case .eio, .logging:
            throw MappedReadError(range: SectorRange(start: block * unitSectors, length: unitSectors),
                                  origin: Origin(table: "", line: 0, target: "verity \(what) is corrupted", device: dataToken))
        }
    }

    /// verity_hash_for_block: writes the digest data block `block` must have to `out`, walking from the
    /// root down through hash blocks not yet verified (or straight to a verified level-0 block).
    func wantedDigest(of block: UInt64, into out: UnsafeMutableRawPointer, hasher: VerityHasher,
                      unverified: inout [UInt64: [UInt8]], io: DeviceIO) throws -> Walk {
        let digestSize = geometry.digestSize
        var found = false
        if geometry.levels > 0 {
            let (hashBlock, offset) = geometry.digestPosition(of: block, level: 0)
            if let bytes = verified.get(hashBlock) {
                bytes.withUnsafeBytes { out.copyMemory(from: $0.baseAddress! + offset, byteCount: digestSize) }
                found = true
            }
        }
        if !found {
            rootDigest.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: digestSize) }
            for level in stride(from: geometry.levels - 1, through: 0, by: -1) {
                let (hashBlock, offset) = geometry.digestPosition(of: block, level: level)
                let bytes: [UInt8]
                if let known = verified.get(hashBlock) ?? unverified[hashBlock] {
                    bytes = known
                } else {
                    var read = [UInt8](repeating: 0, count: geometry.hashBlockSize)
                    try read.withUnsafeMutableBytes { try io.read(hash, into: $0, at: hashBlock * geometry.hashBlockSectors) }
                    let real = try read.withUnsafeBytes { try hasher.digest($0) }
                    if real.withUnsafeBytes({ memcmp($0.baseAddress!, out, digestSize) }) == 0 {
                        verified.insert(hashBlock, read)
                    } else if mode == .logging {
                        // Used unverified, as the kernel does after logging the corruption.
                        unverified[hashBlock] = read
                    } else {
                        return .corruptHashBlock(hashBlock)
                    }
                    bytes = read
                }
                bytes.withUnsafeBytes { out.copyMemory(from: $0.baseAddress! + offset, byteCount: digestSize) }
            }
        }
        guard let zeroDigest else { return .ok(isZero: false) }
        return .ok(isZero: zeroDigest.withUnsafeBytes { memcmp($0.baseAddress!, out, digestSize) } == 0)
    }

    /// The index of the first of `count` data blocks whose digest is not `wanted` (blocks that read as
    /// zeros are not hashed), hashing on every core for large reads.
    func firstMismatch(_ blocks: UnsafeMutableRawBufferPointer, count: Int, wanted: [UInt8], isZero: [Bool]) throws -> Int? {
        guard count > 0 else { return nil }
        let blockSize = geometry.dataBlockSize
        let workers = max(1, min(activeProcessorCount(), count * blockSize / Self.minimumBytesPerWorker, count))
        let perWorker = (count + workers - 1) / workers
        let firsts = FirstIndexSlots(count: workers)
        let failures = FailureSlots(count: workers)
        let shared = SharedBuffer(bytes: blocks)
        let work: @Sendable (Int) -> Void = { [self] worker in
            let start = worker * perWorker
            let end = min(count, start + perWorker)
            guard start < end else { return }
            do {
                let hasher = try VerityHasher(algorithm: algorithm, salt: salt, version: geometry.version)
                var real = [UInt8](repeating: 0, count: geometry.digestSize)
                try real.withUnsafeMutableBytes { realBytes in
                    try wanted.withUnsafeBytes { want in
                        for b in start..<end where !isZero[b] {
                            try hasher.digest(UnsafeRawBufferPointer(rebasing: shared.bytes[b * blockSize..<(b + 1) * blockSize]), into: realBytes.baseAddress!)
                            if memcmp(realBytes.baseAddress!, want.baseAddress! + b * geometry.digestSize, geometry.digestSize) != 0 {
                                firsts.set(worker, b)
                                return
                            }
                        }
                    }
                }
            } catch {
                failures.set(worker, error)
            }
        }
        if workers == 1 {
            work(0)
        } else {
            DispatchQueue.concurrentPerform(iterations: workers, execute: work)
        }
        if let error = failures.first { throw error }
        return firsts.minimum
    }
}

/// One index slot per worker of a concurrentPerform.
final class FirstIndexSlots: Sendable {
    private let slots: Mutex<[Int?]>

    init(count: Int) { slots = Mutex(Array(repeating: nil, count: count)) }

    func set(_ worker: Int, _ index: Int) { slots.withLock { $0[worker] = index } }

    var minimum: Int? { slots.withLock { $0.compactMap { $0 }.min() } }
}

/// Hash blocks whose digest matched the one above them, by hash block number, up to `capacity` bytes
/// (the oldest go first). Shared by every thread reading the device.
final class VerifiedHashBlocks: Sendable {
    private struct Store {
        var blocks: [UInt64: [UInt8]] = [:]
        var order: [UInt64] = []
        var bytes = 0
    }
    private let store = Mutex(Store())
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    func get(_ block: UInt64) -> [UInt8]? { store.withLock { $0.blocks[block] } }

    func insert(_ block: UInt64, _ bytes: [UInt8]) {
        store.withLock { store in
            guard store.blocks[block] == nil else { return }
            while store.bytes + bytes.count > capacity, !store.order.isEmpty {
                let old = store.order.removeFirst()
                store.bytes -= store.blocks.removeValue(forKey: old)?.count ?? 0
            }
            store.blocks[block] = bytes
            store.order.append(block)
            store.bytes += bytes.count
        }
    }
}
