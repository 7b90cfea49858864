/// One segment line of a table as dmsetup hands it to the kernel: numbers read, arguments split.
public struct TableLine: Sendable, Equatable {
    /// 1-based line number in the table file; every line counts, blank and comment lines too.
    public var number: Int
    /// First sector of the segment.
    public var start: UInt64
    /// Sectors the segment spans.
    public var length: UInt64
    /// The target name (case-sensitive, as the kernel looks it up).
    public var target: String
    /// The target's arguments as the kernel receives them from dmsetup: whitespace-separated.
    public var arguments: [String]
}

/// A device's table: its name, the file it came from, and where its segment lines are in the file's
/// bytes. Lines are checked for format when the file is read (as dmsetup reads the whole table before
/// loading it) but split into `TableLine`s only as the loader walks them, so a million-line table is
/// never held as a million argument arrays.
public struct TableText: Sendable {
    /// The device's name.
    public var name: String
    /// The file as the user named it, for messages.
    public var path: String
    let bytes: [UInt8]
    var spans: [LineSpan]

    /// A segment line: its number and its bytes after any `NAME: ` prefix, trimmed.
    struct LineSpan: Sendable {
        var number: Int
        var lo: Int
        var hi: Int
        var kind: LineKind = .table
    }

    /// How a line spells its segment: as a table does, or as `kpartx -l` prints a linear mapping.
    enum LineKind: Sendable { case table, kpartx }

    /// Whether the device has a table at all (`NAME:` alone in a dump: created with `dmsetup create -n`).
    public var hasTable: Bool { !spans.isEmpty }

    /// How many segment lines the table has.
    public var lineCount: Int { spans.count }

    /// Calls `body` with each segment line in order.
    public func forEachLine(_ body: (TableLine) throws -> Void) rethrows {
        for span in spans {
            // The format was checked when the table was read, so this parse cannot fail.
            guard let line = try? TableParser.parseSegment(bytes, span.lo, span.hi, number: span.number, path: path, kind: span.kind) else {
                preconditionFailure("\(path):\(span.number): line changed between two parses")
            }
            try body(line)
        }
    }

    /// All segment lines (for tests and small tables).
    public var lines: [TableLine] {
        var result: [TableLine] = []
        forEachLine { result.append($0) }
        return result
    }
}
