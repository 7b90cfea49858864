/// Process exit statuses, from sysexits(3). The CLI maps every failure to one of these in one place.
public enum ExitStatus: Int32, Sendable {
    /// Success (EX_OK).
    case ok = 0
    /// A "no" answer: verify found a difference.
    case no = 1
    /// The command line is wrong (EX_USAGE): an unknown option, a missing argument, an unused `--dev`.
    case usage = 64
    /// An invalid table, a corrupt image, a bad manifest.
    case dataError = 65
    /// An input that cannot be opened or read as asked.
    case noInput = 66
    /// An output that cannot be created or written in place (EX_CANTCREAT): no directory, no permission.
    case cannotCreate = 73
    /// A key or passphrase that does not open what it should (EX_NOPERM): `luks` with a wrong passphrase.
    case noPermission = 77
    /// A read or write failed (EX_IOERR): EIO from an image, a full disk, a read through an `error` target.
    case ioError = 74
    /// Stopped by SIGINT (128 + 2, as a shell reports it); partial output is removed.
    case interrupted = 130
    /// Stopped by SIGTERM (128 + 15); partial output is removed.
    case terminated = 143
}

/// An error imgmap reports to its user: the text says what and where, the status says which class.
public protocol ImgMapFailure: Error, CustomStringConvertible {
    /// The class of the failure: the process's exit status when the CLI reports it.
    var exitStatus: ExitStatus { get }
}

/// A failure of a system call on a named file: `a.img: pread at offset 1048576: Input/output error`.
public struct IOFailure: ImgMapFailure, Equatable {
    /// The file the call was made on, as the user named it.
    public var path: String
    /// The call and where, as the message shows it: `pread at offset 1048576` (offsets in bytes).
    public var operation: String
    /// The errno the call set; the message gives its strerror(3) text.
    public var errno: Int32
    /// ``ExitStatus/ioError`` (74) unless the caller chose another class (`noInput` for an open).
    public var exitStatus: ExitStatus
    /// What the user can do about it, shown in parentheses after the message.
    public var hint: String?

    /// A failure of `operation` on `path` with `errno`; the text is `path: operation: strerror (hint)`.
    public init(path: String, operation: String, errno: Int32, exitStatus: ExitStatus = .ioError, hint: String? = nil) {
        self.path = path
        self.operation = operation
        self.errno = errno
        self.exitStatus = exitStatus
        self.hint = hint
    }

    public var description: String {
        var text = "\(path): \(operation): \(errnoDescription(errno))"
        if let hint { text += " (\(hint))" }
        return text
    }
}

/// A failure described in words, with its class: for conditions that are not a single errno.
public struct PlainFailure: ImgMapFailure, Equatable {
    /// The whole message, place included (`a.table:3: …`).
    public var message: String
    /// The class of the failure.
    public var exitStatus: ExitStatus

    /// A failure reported as `message`, exiting with `exitStatus`.
    public init(_ message: String, _ exitStatus: ExitStatus) {
        self.message = message
        self.exitStatus = exitStatus
    }

    public var description: String { message }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// strerror(3) text for an errno value.
public func errnoDescription(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "errno \(code)" }
    return String(cString: text)
}

/// `1 sector`, `2 sectors`: a count with its noun, singular only for one (`plural` for irregular nouns).
public func counted<N: BinaryInteger>(_ n: N, _ noun: String, plural: String? = nil) -> String {
    "\(n) \(n == 1 ? noun : plural ?? noun + "s")"
}
