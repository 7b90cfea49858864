/// A partition table read from a disk: the partitions as kpartx maps them, in 512-byte sectors of the
/// disk, numbered as kpartx and the kernel number them (MBR: slots 1–4, logical partitions from 5;
/// GPT: entry index + 1).
package struct PartitionTable: Sendable {
    package struct Partition: Sendable {
        package var number: Int
        /// First sector and length, in 512-byte sectors.
        package var start: UInt64
        package var length: UInt64
        /// The MBR type byte as `0x83`, or the GPT type GUID.
        package var type: String
        /// An MBR extended partition: mapped as its first two logical sectors only (kpartx, for LILO).
        package var isExtended = false
        package var bootable = false
        /// GPT only.
        package var uuid: String?
        package var name: String?
        package var attributes: UInt64?
    }

    /// `dos` or `gpt`, as sfdisk calls them.
    package var scheme: String
    /// Logical sector size the table was read with.
    package var sectorSize: Int
    /// MBR disk identifier (`0x1234abcd`) or the GPT disk GUID.
    package var identifier: String
    package var partitions: [Partition]
    /// What was odd but survived: a GPT read from its backup, a loop cut in an extended chain.
    package var notes: [String] = []
    /// GPT: which header was used (`primary` or `backup`).
    package var header: String?
}
