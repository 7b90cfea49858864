#if canImport(Glibc)
import Glibc
#endif

/// File names are bytes on Linux, and a table or a command line may name `a\xff.img`; a Swift `String`
/// holds Unicode only, and its decoding replaces such bytes with U+FFFD, so the file could no longer be
/// opened. Every path imgmap reads from bytes (table text, argv) goes through ``string(_:)``: valid UTF-8
/// decodes as usual, and each byte that is not part of valid UTF-8 becomes one scalar of the last 128 code
/// points of plane 16 (U+10FF80 + byte − 0x80, private use, never in a real name). Every system call
/// that takes a path goes through ``withCString(_:_:)``, which turns those scalars back into their bytes.
/// The round trip is exact for any byte string: a real U+10FF80…U+10FFFF in the input is itself escaped
/// byte by byte, so decoding never produces two strings for one name.
public enum PathBytes {
    static let escapeBase: UInt32 = 0x10FF00

    /// The string for the bytes of a path (or of a table line holding paths), losing none of them.
    public static func string<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        // The common case: valid UTF-8 with no lead byte 0xF4 (plane 16 and above) needs no escapes.
        if !bytes.contains(0xF4), let valid = String(validating: bytes, as: UTF8.self) { return valid }
        let b = Array(bytes)
        var out = String.UnicodeScalarView()
        func escape(_ byte: UInt8) { out.append(Unicode.Scalar(escapeBase + UInt32(byte))!) }
        func continuation(_ k: Int, _ range: ClosedRange<UInt8> = 0x80...0xBF) -> Bool { k < b.count && range.contains(b[k]) }
        var i = 0
        while i < b.count {
            let lead = b[i]
            // The length of the well-formed sequence starting at i (Unicode table 3-7), or 0.
            var length = 0
            switch lead {
            case 0x00...0x7F: length = 1
            case 0xC2...0xDF: length = continuation(i + 1) ? 2 : 0
            case 0xE0...0xEF:
                let second: ClosedRange<UInt8> = lead == 0xE0 ? 0xA0...0xBF : lead == 0xED ? 0x80...0x9F : 0x80...0xBF
                length = continuation(i + 1, second) && continuation(i + 2) ? 3 : 0
            case 0xF0...0xF4:
                let second: ClosedRange<UInt8> = lead == 0xF0 ? 0x90...0xBF : lead == 0xF4 ? 0x80...0x8F : 0x80...0xBF
                length = continuation(i + 1, second) && continuation(i + 2) && continuation(i + 3) ? 4 : 0
            default: length = 0
            }
            guard length > 0 else { escape(lead); i += 1; continue }
            var value = length == 1 ? UInt32(lead) : UInt32(lead) & (0xFF >> (length + 1))
            for k in 1..<length { value = value << 6 | UInt32(b[i + k] & 0x3F) }
            if value >= escapeBase + 0x80 {
                for k in 0..<length { escape(b[i + k]) }
            } else {
                out.append(Unicode.Scalar(value)!)
            }
            i += length
        }
        return String(out)
    }

    /// The bytes `path` stands for: the inverse of ``string(_:)``.
    public static func bytes(_ path: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(path.utf8.count)
        for scalar in path.unicodeScalars {
            if scalar.value >= escapeBase + 0x80 {
                out.append(UInt8(scalar.value - escapeBase))
            } else {
                out.append(contentsOf: String(scalar).utf8)
            }
        }
        return out
    }

    /// Whether `path` holds a byte that is not valid UTF-8 (so it must not be written as UTF-8).
    public static func hasRawBytes(_ path: String) -> Bool {
        path.unicodeScalars.contains { $0.value >= escapeBase + 0x80 }
    }

    /// Calls `body` with the NUL-terminated bytes of `path`, for a system call.
    public static func withCString<R>(_ path: String, _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        guard hasRawBytes(path) else { return try path.withCString(body) }
        let raw = bytes(path) + [0]
        return try raw.withUnsafeBufferPointer { buffer in
            try buffer.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
        }
    }

    /// The string for a C string a system call returned (realpath(3), argv).
    public static func string(cString: UnsafePointer<CChar>) -> String {
        string(UnsafeBufferPointer(start: UnsafeRawPointer(cString).assumingMemoryBound(to: UInt8.self), count: strlen(cString)))
    }
}

/// System calls on paths that are bytes (``PathBytes``).
package enum PathCalls {
    package static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Int32 {
        PathBytes.withCString(path) { Glibc.open($0, flags, mode) }
    }

    package static func stat(_ path: String, _ st: inout Glibc.stat) -> Int32 {
        PathBytes.withCString(path) { systemStat($0, &st) }
    }

    @discardableResult
    package static func unlink(_ path: String) -> Int32 {
        PathBytes.withCString(path) { Glibc.unlink($0) }
    }

    package static func rename(_ from: String, _ to: String) -> Int32 {
        PathBytes.withCString(from) { f in PathBytes.withCString(to) { Glibc.rename(f, $0) } }
    }

    package static func access(_ path: String, _ mode: Int32) -> Int32 {
        PathBytes.withCString(path) { Glibc.access($0, mode) }
    }

    /// realpath(3) of `path`, or nil.
    package static func realpath(_ path: String) -> String? {
        PathBytes.withCString(path) { c in
            guard let resolved = Glibc.realpath(c, nil) else { return nil }
            defer { free(resolved) }
            return PathBytes.string(cString: resolved)
        }
    }
}

/// stat(2): inside `PathCalls`, `stat` names the method and `Glibc.stat` the struct.
private func systemStat(_ path: UnsafePointer<CChar>, _ st: inout stat) -> Int32 { stat(path, &st) }
