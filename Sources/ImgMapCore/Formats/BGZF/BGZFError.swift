/// Bad BGZF or `.gzi` data: `disk.img.gz: member at offset 65311: CRC32 mismatch (…)`. Always exit 65
/// (data error); failing system calls are `IOFailure` instead and pass through unchanged.
public struct BGZFError: ImgMapFailure, Equatable {
    /// The file holding the bad data (the BGZF file or its `.gzi`).
    public var path: String
    /// Where in that file, when one place is to blame: a member start or an index entry.
    public var offset: UInt64?
    /// What is wrong and, where it helps, what to do.
    public var message: String

    /// Bad data in `path`, at byte `offset` of it when one place is to blame.
    public init(path: String, offset: UInt64? = nil, _ message: String) {
        self.path = path
        self.offset = offset
        self.message = message
    }

    /// Always ``ExitStatus/dataError`` (65).
    public var exitStatus: ExitStatus { .dataError }

    public var description: String {
        if let offset { return "\(path): offset \(offset): \(message)" }
        return "\(path): \(message)"
    }
}
