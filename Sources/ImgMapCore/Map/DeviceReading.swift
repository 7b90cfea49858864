/// Reading a device's own sectors, whatever it is: an image file (pread, or inflate for BGZF) or a
/// mapped device (through its sector map, layer by layer). For constructors that read metadata from a
/// device, as the kernel's snapshot and thin-pool constructors do, before any mapping is asked for.
extension Device {
    /// Whether the device's content can be read: false for an image that was not opened (`check`
    /// without `--dev`, planned images of `scatter --create --dry-run`), whose content is unknown.
    public var isReadable: Bool {
        switch self {
        case .leaf(let leaf): leaf.image.fd >= 0
        case .mapped(let device):
            device.segments.allSatisfy { segment in segment.target.deviceAreas.allSatisfy { $0.device.isReadable } }
        }
    }

    /// Fills `buffer` (a multiple of 512 bytes) from `sector` of the device. Sectors past the end, or
    /// on an error extent of a mapped device, fail with EIO as the kernel's read would (exit 74).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at sector: Sector) throws {
        let count = UInt64(buffer.count) / sectorSize
        guard sector.value <= size.value, count <= size.value - sector.value else {
            throw DeviceReadError(device: displayName, range: SectorRange(start: sector.value, length: count), size: size.value)
        }
        switch self {
        case .leaf(let leaf):
            try MapReader.readLeaf(leaf, into: buffer, at: sector)
        case .mapped(let device):
            try MapReader(map: SectorMap(top: device), onError: .fail).read(into: buffer, at: sector)
        }
    }

    /// `count` sectors from `sector`, as bytes.
    public func readSectors(_ sector: UInt64, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count * Int(sectorSize))
        try bytes.withUnsafeMutableBytes { try read(into: $0, at: Sector(sector)) }
        return bytes
    }

    /// The image path or the mapped device's name, for messages.
    public var displayName: String {
        switch self {
        case .leaf(let leaf): leaf.path
        case .mapped(let device): "device \(device.name)"
        }
    }
}

/// A read of a device's sectors that lies past its end.
public struct DeviceReadError: ImgMapFailure, Equatable {
    /// The device read (an image path or `device NAME`).
    public var device: String
    /// The sectors asked for.
    public var range: SectorRange
    /// The device's size in sectors.
    public var size: UInt64
    public var exitStatus: ExitStatus { .ioError }
    public var description: String {
        "\(device): sectors \(range.start)+\(range.length) lie past the end of the device (\(size) sectors): Input/output error"
    }
}
