/// A partition table read from a disk: the partitions as kpartx maps them, in 512-byte sectors of the
/// disk, numbered as kpartx and the kernel number them (MBR: slots 1–4, logical partitions from 5;
/// GPT: entry index + 1).
public struct PartitionTable: Sendable {
    public struct Partition: Sendable {
        public var number: Int
        /// First sector and length, in 512-byte sectors.
        public var start: UInt64
        public var length: UInt64
        /// The MBR type byte as `0x83`, or the GPT type GUID.
        public var type: String
        /// An MBR extended partition: mapped as its first two logical sectors only (kpartx, for LILO).
        public var isExtended = false
        public var bootable = false
        /// GPT only.
        public var uuid: String?
        public var name: String?
        public var attributes: UInt64?
    }

    /// `dos` or `gpt`, as sfdisk calls them.
    public var scheme: String
    /// Logical sector size the table was read with.
    public var sectorSize: Int
    /// MBR disk identifier (`0x1234abcd`) or the GPT disk GUID.
    public var identifier: String
    public var partitions: [Partition]
    /// What was odd but survived: a GPT read from its backup, a loop cut in an extended chain.
    public var notes: [String] = []
    /// GPT: which header was used (`primary` or `backup`).
    public var header: String?
}
