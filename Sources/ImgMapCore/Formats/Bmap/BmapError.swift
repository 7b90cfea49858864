/// A bmap file that cannot be read or written as asked, e.g.
/// `disk.bmap:31: <Range>: range 300-299 is reversed`. Always a data error (65): the bmap or the image
/// does not make sense; I/O failures stay `IOFailure`.
public struct BmapError: ImgMapFailure, Equatable {
    /// The bmap file, or a name given by the caller when the text did not come from a file.
    public var path: String
    /// 1-based line in the bmap text; nil when the error is not about one place in the text.
    public var line: Int?
    /// The element the error is about, without brackets (`Range`); nil when about the text as a whole.
    public var element: String?
    /// What is wrong, without the place.
    public var message: String

    /// An error about `element` at `line` of `path` (each nil when not about one place).
    public init(path: String, line: Int? = nil, element: String? = nil, _ message: String) {
        self.path = path
        self.line = line
        self.element = element
        self.message = message
    }

    /// Always ``ExitStatus/dataError`` (65).
    public var exitStatus: ExitStatus { .dataError }

    public var description: String {
        var text = path
        if let line { text += ":\(line)" }
        if let element { text += ": <\(element)>" }
        return text + ": " + message
    }
}
