/// One segment line of a table as dmsetup hands it to the kernel: numbers read, arguments split.
public struct TableLine: Sendable, Equatable {
    /// 1-based line number in the table file; every line counts, blank and comment lines too.
    public var number: Int
    public var start: UInt64
    public var length: UInt64
    public var target: String
    /// The target's arguments after the kernel's `dm_split_args` (whitespace-separated, `\` quotes).
    public var arguments: [String]
}

/// A device's table: its name, the file it came from, its segment lines in order.
public struct TableText: Sendable {
    public var name: String
    /// The file as the user named it, for messages.
    public var path: String
    public var lines: [TableLine]
}
