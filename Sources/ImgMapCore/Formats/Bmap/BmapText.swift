#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The fixed text of a bmap file as `bmaptool create` (bmap-tools 3.x, `BmapCreate.py`) writes it. Kept
/// byte-for-byte, comments and spacing included, so that our bmap of an image equals bmaptool's.
enum BmapText {
    /// The format version we write.
    static let version = "2.0"

    /// Everything up to the `<!-- Count of mapped blocks:` comment (`_BMAP_START_TEMPLATE`).
    static func start(imageSize: UInt64, blockSize: UInt64, blocksCount: UInt64) -> String {
        """
        <?xml version="1.0" ?>
        <!-- This file contains the block map for an image file, which is basically
             a list of useful (mapped) block numbers in the image file. In other words,
             it lists only those blocks which contain data (boot sector, partition
             table, file-system metadata, files, directories, extents, etc). These
             blocks have to be copied to the target device. The other blocks do not
             contain any useful data and do not have to be copied to the target
             device.

             The block map an optimization which allows to copy or flash the image to
             the image quicker than copying of flashing the entire image. This is
             because with bmap less data is copied: <MappedBlocksCount> blocks instead
             of <BlocksCount> blocks.

             Besides the machine-readable data, this file contains useful commentaries
             which contain human-readable information like image size, percentage of
             mapped data, etc.

             The 'version' attribute is the block map file format version in the
             'major.minor' format. The version major number is increased whenever an
             incompatible block map format change is made. The minor number changes
             in case of minor backward-compatible changes. -->

        <bmap version="\(version)">
            <!-- Image size in bytes: \(humanSize(imageSize)) -->
            <ImageSize> \(imageSize) </ImageSize>

            <!-- Size of a block in bytes -->
            <BlockSize> \(blockSize) </BlockSize>

            <!-- Count of blocks in the image file -->
            <BlocksCount> \(blocksCount) </BlocksCount>


        """
    }

    static let checksumTypeComment = "    <!-- Type of checksum used in this file -->\n"
    static let bmapFileChecksumComment = """
            <!-- The checksum of this bmap file. When it is calculated, the value of
                 the checksum has be zero (all ASCII "0" symbols).  -->

        """
    static let blockMapComment = """
            <!-- The block map which consists of elements which may either be a
                 range of blocks or a single block. The 'chksum' attribute
                 (if present) is the checksum of this blocks range. -->
            <BlockMap>

        """
    static let end = "    </BlockMap>\n</bmap>\n"

    /// One `<Range>` line; a single block is written as `a`, more as `a-b` (both inclusive).
    static func range(first: UInt64, last: UInt64, checksum: String?) -> String {
        let attribute = checksum.map { " chksum=\"\($0)\"" } ?? ""
        let blocks = first == last ? "\(first)" : "\(first)-\(last)"
        return "        <Range\(attribute)> \(blocks) </Range>\n"
    }

    /// bmap-tools' `human_size`: `1 byte`, `N bytes` below 512, else one decimal in KiB…TiB (then EiB,
    /// skipping PiB, as bmap-tools does). Divides in binary floating point exactly as Python does.
    static func humanSize(_ size: UInt64) -> String {
        if size == 1 { return "1 byte" }
        if size < 512 { return "\(size) bytes" }
        var value = Double(size)
        for unit in ["KiB", "MiB", "GiB", "TiB"] {
            value /= 1024.0
            if value < 1024 { return formatOneDecimal(value) + " " + unit }
        }
        return formatOneDecimal(value) + " EiB"
    }

    /// `%.1f` through the C library, which rounds exactly as Python's `%` operator does.
    static func formatOneDecimal(_ value: Double) -> String {
        var buffer = [CChar](repeating: 0, count: 400)
        let count = buffer.count
        _ = buffer.withUnsafeMutableBufferPointer { out in
            withVaList([value]) { vsnprintf(out.baseAddress, count, "%.1f", $0) }
        }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
