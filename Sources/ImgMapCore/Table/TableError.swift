/// A table the kernel (or dmsetup's parser) would refuse, or a device it could not look up.
/// Prints as `disk.table:3: striped: Target length not divisible by chunk size`: the place, the target,
/// then the kernel's own phrase so it can be searched for, then imgmap's detail and advice.
public struct TableError: ImgMapFailure, Equatable {
    /// The table file as the user named it (`-` reads as `<stdin>`).
    public var path: String
    /// 1-based line of the table file; nil for errors about the table as a whole.
    public var line: Int?
    /// The target whose constructor refused its arguments, as `DM_MSG_PREFIX` names it.
    public var target: String?
    /// The kernel's phrase: `Gap in table`, `Invalid device sector`, …
    public var message: String
    /// What imgmap saw: the values involved.
    public var detail: String?
    /// What to do about it.
    public var hint: String?
    /// 65 for a bad table, 66 for a device that cannot be found, 74 for an unreadable one.
    public var exitStatus: ExitStatus

    /// An error at `path`:`line` (nil: the table as a whole), from `target` when a constructor refused, with the kernel's `message` first.
    public init(path: String, line: Int?, target: String? = nil, message: String, detail: String? = nil,
                hint: String? = nil, exitStatus: ExitStatus = .dataError) {
        self.path = path
        self.line = line
        self.target = target
        self.message = message
        self.detail = detail
        self.hint = hint
        self.exitStatus = exitStatus
    }

    public var description: String {
        var text = path
        if let line { text += ":\(line)" }
        text += ": "
        if let target { text += "\(target): " }
        text += message
        if let detail { text += ": \(detail)" }
        if let hint { text += " (\(hint))" }
        return text
    }
}

/// What a target constructor reports: the kernel's phrase and imgmap's detail. The table loader adds
/// the place (file, line, target), as dm's table loader does with `ti->error`.
public struct TargetError: Error, Equatable {
    /// The kernel's phrase (`ti->error`), word for word, so it can be searched for.
    public var message: String
    /// What imgmap found: the argument and why it is wrong.
    public var detail: String?
    /// What to do about it.
    public var hint: String?
    /// 65 for a bad table, 66 for a device that cannot be found, 74 for an unreadable one.
    public var exitStatus: ExitStatus

    /// A constructor's refusal: the kernel's `message`, imgmap's `detail` and `hint`.
    public init(_ message: String, detail: String? = nil, hint: String? = nil, exitStatus: ExitStatus = .dataError) {
        self.message = message
        self.detail = detail
        self.hint = hint
        self.exitStatus = exitStatus
    }
}
