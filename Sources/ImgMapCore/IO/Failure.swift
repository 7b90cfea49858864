/// Process exit statuses, from sysexits(3). The CLI maps every failure to one of these in one place.
public enum ExitStatus: Int32, Sendable {
    case ok = 0
    /// A "no" answer: verify found a difference.
    case no = 1
    case usage = 64
    /// An invalid table, a corrupt image, a bad manifest.
    case dataError = 65
    /// An input that cannot be opened or read as asked.
    case noInput = 66
    case cannotCreate = 73
    /// A key or passphrase that does not open what it should (EX_NOPERM): `luks` with a wrong passphrase.
    case noPermission = 77
    case ioError = 74
    case interrupted = 130
    case terminated = 143
}

/// An error imgmap reports to its user: the text says what and where, the status says which class.
public protocol ImgMapFailure: Error, CustomStringConvertible {
    var exitStatus: ExitStatus { get }
}

/// A failure of a system call on a named file: `a.img: pread at offset 1048576: Input/output error`.
public struct IOFailure: ImgMapFailure, Equatable {
    public var path: String
    public var operation: String
    public var errno: Int32
    public var exitStatus: ExitStatus
    public var hint: String?

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
    public var message: String
    public var exitStatus: ExitStatus

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
