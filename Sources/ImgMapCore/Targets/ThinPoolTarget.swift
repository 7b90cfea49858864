/// dm-thin's pool: data blocks shared by thin devices, its metadata read by the constructor.
///
/// ```
/// thin-pool <metadata dev> <data dev> <data block sectors> <low water mark> [<#features> <feature>…]
/// ```
///
/// A pool of data blocks shared by thin devices (dm-thin.c `pool_ctr`). The constructor reads the
/// metadata device (Formats/Thin/ThinMetadata.swift): the superblock and the device-details tree; each
/// `thin` line on the pool reads its own mapping tree. Reading the pool device itself reads the data
/// device (pool_map sends bios there unchanged, by the absolute sector). A metadata device that is all
/// zeros is a new pool with no thin devices (the kernel would format it).
///
/// Constructor checks, in the kernel's order: at least 4 arguments, metadata and data devices differ,
/// the feature group, the metadata device, the data device, the block size (a multiple of 128 sectors
/// from 128 to 2097152), the low water mark, the metadata, and the pool length (at least the metadata's
/// data blocks, as pool_preresume requires).
public struct ThinPoolTarget: Target {
    public static let name = "thin-pool"
    static let minBlockSize: UInt64 = 128
    static let maxBlockSize: UInt64 = 2_097_152
    static let knownFeatures = ["skip_block_zeroing", "ignore_discard", "no_discard_passdown", "read_only", "error_if_no_space"]

    package let metadataDevice: Device
    package let metadataToken: String
    package let dataDevice: Device
    package let dataToken: String
    package let blockSize: UInt64
    package let lowWaterMark: UInt64
    package let features: [String]
    /// nil when the metadata device's content is unknown (`check` without `--dev`).
    package let metadata: ThinPoolMetadata?
    let start: UInt64
    let length: UInt64

    /// With `read_only` the kernel sends unmapped reads to an external origin unchecked (EIO past its
    /// end); a writable pool zero-fills there.
    package var isReadOnly: Bool { features.contains("read_only") }

    public init(arguments: [String], length: Sector, context: TargetContext) throws(TargetError) {
        guard arguments.count >= 4 else {
            throw TargetError("Invalid argument count",
                              detail: "<metadata dev> <data dev> <data block size> <low water mark> [<#features> <feature>…], got \(arguments.count) arguments")
        }
        guard arguments[0] != arguments[1] else {
            throw TargetError("Error setting metadata or data device", detail: "both are `\(arguments[0])`")
        }
        features = try Self.parseFeatures(Array(arguments[4...]))
        metadataToken = arguments[0]
        do {
            metadataDevice = try context.device(metadataToken)
        } catch {
            throw TargetError("Error opening metadata block device", detail: error.detail ?? error.message, hint: error.hint, exitStatus: error.exitStatus)
        }
        dataToken = arguments[1]
        do {
            dataDevice = try context.device(dataToken)
        } catch {
            throw TargetError("Error getting data device", detail: error.detail ?? error.message, hint: error.hint, exitStatus: error.exitStatus)
        }
        guard let size = KernelNumber.unsignedLong(arguments[2]), size >= Self.minBlockSize, size <= Self.maxBlockSize,
              size % Self.minBlockSize == 0 else {
            throw TargetError("Invalid block size", detail: "`\(arguments[2])`: a multiple of 128 sectors (64 KiB) from 128 to 2097152")
        }
        blockSize = size
        guard let lowWater = KernelNumber.unsignedLong(arguments[3]) else {
            throw TargetError("Invalid low water mark", detail: "`\(arguments[3])` is not a decimal block count")
        }
        lowWaterMark = lowWater
        start = context.start.value
        self.length = length.value
        if metadataDevice.isReadable {
            let metadata: ThinPoolMetadata
            do {
                metadata = try ThinPoolMetadata(device: metadataDevice, token: metadataToken, dataBlockSize: size)
            } catch {
                throw TargetError(error.message, detail: error.description, exitStatus: error.exitStatus)
            }
            let poolBlocks = length.value / size
            if poolBlocks < metadata.nrDataBlocks {
                throw TargetError("pool target (\(poolBlocks) blocks) too small: expected \(metadata.nrDataBlocks)",
                                  detail: "the metadata counts \(metadata.nrDataBlocks) data blocks of \(size) sectors; the segment holds \(length.value) sectors")
            }
            self.metadata = metadata
        } else {
            metadata = nil
        }
    }

    /// dm_read_arg_group with 0 to 4 features.
    static func parseFeatures(_ rest: [String]) throws(TargetError) -> [String] {
        guard let countText = rest.first else { return [] }
        guard let count = KernelNumber.unsigned32(countText), count <= 4, Int(count) <= rest.count - 1 else {
            throw TargetError("Invalid number of pool feature arguments", detail: "`\(countText)`: 0 to 4, followed by that many features")
        }
        let features = Array(rest[1..<1 + Int(count)])
        for feature in features where !knownFeatures.contains(where: { $0.lowercased() == feature.lowercased() }) {
            throw TargetError("Unrecognised pool feature requested", detail: "`\(feature)`; known: \(knownFeatures.joined(separator: ", "))")
        }
        if 1 + Int(count) < rest.count {
            throw TargetError("Invalid argument count", detail: "\(rest.count - 1 - Int(count)) arguments after the features")
        }
        return features.map { $0.lowercased() }
    }

    public func forEachDeviceArea<E: Error>(_ body: (DeviceArea) throws(E) -> Void) throws(E) {
        try body(DeviceArea(device: dataDevice, token: dataToken, start: 0, length: length))
    }

    public func map(offset: UInt64, count: UInt64, _ body: (MappedPiece) throws -> Void) rethrows {
        try SnapshotTarget.emit(dataDevice, token: dataToken, sector: start &+ offset, count: count, body)
    }

    /// The kernel's form: the features in its fixed order, and a trailing space.
    public var tableArguments: String {
        let shown = Self.knownFeatures.filter { features.contains($0) }
        return "\(metadataToken) \(dataToken) \(blockSize) \(lowWaterMark) \(shown.count) " + shown.map { "\($0) " }.joined()
    }
}

extension KernelNumber {
    /// `kstrtoul`/`kstrtoull(arg, 10, …)`: an optional `+`, decimal digits, an optional trailing newline;
    /// nil on overflow.
    public static func unsignedLong(_ text: String) -> UInt64? {
        var bytes = Substring(text).utf8[...]
        if bytes.first == UInt8(ascii: "+") { bytes = bytes.dropFirst() }
        if bytes.last == UInt8(ascii: "\n") { bytes = bytes.dropLast() }
        guard !bytes.isEmpty else { return nil }
        var value: UInt64 = 0
        for c in bytes {
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return nil }
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(UInt64(c - UInt8(ascii: "0")))
            if o1 || o2 { return nil }
            value = sum
        }
        return value
    }
}
