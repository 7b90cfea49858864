/// A run of the mapped device's sectors that all come from one place.
public struct Extent: Sendable {
    /// Where the run's bytes come from.
    public enum Source: Sendable {
        /// Sectors of an image, from `offset`.
        case data(LeafFile, offset: Sector)
        /// Reads as zeros (a `zero` target, a hole of a thin device).
        case zero
        /// Reading gives EIO (an `error` target, or a device area past the end of an image).
        case error
        /// Bytes computed by `source` (decrypted, reconstructed …), from sector `at` of its own space.
        case computed(any ComputedSource, at: UInt64)
    }

    /// First sector of the run in the mapped device.
    public var start: Sector
    /// Sectors in the run.
    public var length: Sector
    /// Where the bytes come from.
    public var source: Source
    /// The table line that made this run (the deepest one: the line naming the image, or the zero or
    /// error segment).
    public var origin: Origin

    /// The sector after the run.
    public var end: Sector { start + length }
}

/// A table line that produced an extent.
///
/// Its fields sit behind one reference: an extent is copied several times on its way out of a walk,
/// and as a struct of three strings each copy retained each string (a third of a million-extent `map`
/// was retain and release).
public struct Origin: Sendable, Equatable {
    private final class Fields: Sendable {
        let table: String
        let line: Int
        let target: String
        let device: String?

        init(table: String, line: Int, target: String, device: String?) {
            self.table = table
            self.line = line
            self.target = target
            self.device = device
        }
    }

    private let fields: Fields

    /// The line `line` of `table`, of target `target`, naming `device` when it names one.
    public init(table: String, line: Int, target: String, device: String? = nil) {
        fields = Fields(table: table, line: line, target: target, device: device)
    }

    /// The table file as the user named it.
    public var table: String { fields.table }
    /// 1-based line in that file.
    public var line: Int { fields.line }
    /// The target type of that line.
    public var target: String { fields.target }
    /// The device token of that line (nil for zero and error).
    public var device: String? { fields.device }

    /// `disk.table:3 linear A`.
    public var description: String {
        "\(table):\(line) \(target)" + (device.map { " \($0)" } ?? "")
    }

    public static func == (a: Origin, b: Origin) -> Bool {
        a.fields === b.fields || (a.line == b.line && a.table == b.table && a.target == b.target && a.device == b.device)
    }
}

extension Extent {
    /// Whether `next` continues this extent: adjacent, from the same place, with the same origin.
    func isContinued(by next: Extent) -> Bool {
        guard end == next.start, origin == next.origin else { return false }
        switch (source, next.source) {
        case (.zero, .zero), (.error, .error): return true
        case (.data(let a, let ao), .data(let b, let bo)): return a === b && ao + length == bo
        case (.computed(let a, let ao), .computed(let b, let bo)): return a === b && ao + length.value == bo
        default: return false
        }
    }
}
