/// Reads table text the way `dmsetup create` and the kernel's table loader do, byte for byte:
///
/// - dmsetup (libdm) reads each line, trims C `isspace` from both ends (so CR of CRLF goes), skips blank
///   lines and lines starting with `#`, reads `<start> <length>` with `%llu` (leading `+`, zeros and a
///   wrapping `-` accepted; saturating on overflow) and the target name with `%s`, and cuts the parameters
///   at the first `#`. Anything else is `Invalid format`.
/// - The kernel splits the parameters with `dm_split_args`: runs of `isspace` (including 0xA0) separate
///   arguments. Its backslash quoting never shows: libdevmapper escapes every backslash on the way in.
///
/// A `dmsetup table` dump of several devices prefixes each line with `NAME: `; `parse` returns one
/// `TableText` per device then, in order of first appearance.
public enum TableParser {
    /// Parses `bytes` read from `path`. `defaultName` names the device of a plain (unprefixed) table.
    public static func parse(_ bytes: [UInt8], path: String, defaultName: String) throws(TableError) -> [TableText] {
        var tables: [TableText] = []
        var indexByName: [String: Int] = [:]
        var dumpFormat: Bool?
        var lineNumber = 0
        var lineStart = 0
        let count = bytes.count
        while lineStart < count {
            lineNumber += 1
            var lineEnd = lineStart
            while lineEnd < count && bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            defer { lineStart = lineEnd + 1 }
            var lo = lineStart
            var hi = lineEnd
            while lo < hi && isCSpace(bytes[lo]) { lo += 1 }
            while hi > lo && isCSpace(bytes[hi - 1]) { hi -= 1 }
            if lo == hi || bytes[lo] == UInt8(ascii: "#") { continue }

            var name = defaultName
            let isDumpLine = dumpPrefixEnd(bytes, lo, hi)
            if dumpFormat == nil { dumpFormat = isDumpLine != nil }
            if dumpFormat == true {
                guard let prefixEnd = isDumpLine else {
                    throw TableError(path: path, line: lineNumber, message: "Invalid format",
                                     detail: "expected `NAME: <start> <length> <target> …` as in the rest of this `dmsetup table` dump")
                }
                name = String(decoding: bytes[lo..<prefixEnd - 1], as: UTF8.self)
                lo = prefixEnd
            }
            _ = try scanHeader(bytes, lo, hi, number: lineNumber, path: path)
            let span = TableText.LineSpan(number: lineNumber, lo: lo, hi: hi)
            if let index = indexByName[name] {
                tables[index].spans.append(span)
            } else {
                indexByName[name] = tables.count
                tables.append(TableText(name: name, path: path, bytes: bytes, spans: [span]))
            }
        }
        if tables.isEmpty {
            throw TableError(path: path, line: nil, message: "no targets",
                             detail: "the table has no segment lines", hint: "a table needs at least one `<start> <length> <target> <args…>` line")
        }
        return tables
    }

    /// The fields dmsetup reads with `sscanf("%llu %llu %s")`: start, length, and where the target name
    /// lies. Allocates nothing.
    struct SegmentHeader {
        var start: UInt64
        var length: UInt64
        var target: Range<Int>
    }

    /// dmsetup's format check of a segment line: start, length and a target name are there. The line is
    /// split into arguments only when the loader reaches it (`parseSegment`).
    static func scanHeader(_ b: [UInt8], _ lo: Int, _ hi: Int, number: Int, path: String) throws(TableError) -> SegmentHeader {
        func invalid(_ what: String) -> TableError {
            TableError(path: path, line: number, message: "Invalid format",
                       detail: what, hint: "a segment line is `<start> <length> <target> <args…>` in 512-byte sectors")
        }
        guard let (start, afterStart) = scanULL(b, lo, hi) else { throw invalid("start is not a number") }
        guard let (length, afterLength) = scanULL(b, afterStart, hi) else { throw invalid("length is not a number") }
        var i = afterLength
        while i < hi && isCSpace(b[i]) { i += 1 }
        let targetStart = i
        while i < hi && !isCSpace(b[i]) { i += 1 }
        guard i > targetStart else { throw invalid("no target type") }
        return SegmentHeader(start: start, length: length, target: targetStart..<i)
    }

    /// One segment line between `lo` and `hi` (already trimmed, not a comment).
    static func parseSegment(_ b: [UInt8], _ lo: Int, _ hi: Int, number: Int, path: String) throws(TableError) -> TableLine {
        let header = try scanHeader(b, lo, hi, number: number, path: path)
        var i = header.target.upperBound
        while i < hi && isCSpace(b[i]) { i += 1 }
        var paramsEnd = i
        while paramsEnd < hi && b[paramsEnd] != UInt8(ascii: "#") { paramsEnd += 1 }
        return TableLine(number: number, start: header.start, length: header.length,
                         target: String(decoding: b[header.target], as: UTF8.self),
                         arguments: splitArguments(b, i, paramsEnd))
    }

    /// `NAME: ` at the start of a `dmsetup table` dump line: returns the index after the colon, or nil.
    /// A plain segment line starts with a number, so it never looks like this.
    static func dumpPrefixEnd(_ b: [UInt8], _ lo: Int, _ hi: Int) -> Int? {
        var i = lo
        while i < hi && !isCSpace(b[i]) { i += 1 }
        guard i - lo >= 2, b[i - 1] == UInt8(ascii: ":") else { return nil }
        let first = b[lo]
        if (first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")) || first == UInt8(ascii: "+") || first == UInt8(ascii: "-") {
            return nil
        }
        return i
    }

    /// glibc `sscanf("%llu")` from `i`: skips whitespace, takes an optional sign and decimal digits.
    /// Overflow saturates at 2^64 − 1 (strtoull); a `-` negates modulo 2^64. Returns nil without digits.
    static func scanULL(_ b: [UInt8], _ from: Int, _ hi: Int) -> (UInt64, Int)? {
        var i = from
        while i < hi && isCSpace(b[i]) { i += 1 }
        var negative = false
        if i < hi && (b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-")) {
            negative = b[i] == UInt8(ascii: "-")
            i += 1
        }
        let digitsStart = i
        var value: UInt64 = 0
        var overflow = false
        while i < hi, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(b[i] - UInt8(ascii: "0")))
            if o1 || o2 { overflow = true }
            value = s
            i += 1
        }
        guard i > digitsStart else { return nil }
        if overflow { return (UInt64.max, i) }
        return (negative ? 0 &- value : value, i)
    }

    /// The arguments as the kernel's `dm_split_args` sees them from dmsetup: runs of `isspace` (0xA0
    /// included) separate them. libdevmapper escapes every backslash before the ioctl, so the kernel's
    /// unquoting gives each one back: a backslash is an ordinary character. (Asked of the kernel with
    /// dm-oracle: `linear A \ 5` is "Invalid argument count", `linear A\ 5` looks up a device `A\`,
    /// `linear A 1\0` is "Invalid device sector".)
    static func splitArguments(_ b: [UInt8], _ lo: Int, _ hi: Int) -> [String] {
        var args: [String] = []
        var i = lo
        while true {
            while i < hi && isKernelSpace(b[i]) { i += 1 }
            if i >= hi { return args }
            let start = i
            while i < hi && !isKernelSpace(b[i]) { i += 1 }
            args.append(String(decoding: b[start..<i], as: UTF8.self))
        }
    }

    /// C `isspace` in the C locale, as dmsetup uses it.
    @inline(__always) static func isCSpace(_ c: UInt8) -> Bool {
        c == 0x20 || (c >= 0x09 && c <= 0x0d)
    }

    /// The kernel's `isspace`: its ctype table also counts 0xA0 (Latin-1 no-break space).
    @inline(__always) static func isKernelSpace(_ c: UInt8) -> Bool {
        isCSpace(c) || c == 0xa0
    }
}

/// Number parsing as the kernel's target constructors do it.
public enum KernelNumber {
    /// `sscanf(arg, "%llu%c")` in the kernel: decimal digits only (no sign, no spaces), wrapping modulo
    /// 2^64 as the kernel's simple_strtoull does. Used for device offsets.
    public static func sector(_ text: String) -> UInt64? {
        var value: UInt64 = 0
        var any = false
        for c in text.utf8 {
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return nil }
            value = value &* 10 &+ UInt64(c - UInt8(ascii: "0"))
            any = true
        }
        return any ? value : nil
    }

    /// `kstrtouint(arg, 10, …)`: an optional `+`, decimal digits, an optional trailing newline; nil when
    /// the value does not fit in 32 bits. Used for stripe counts and chunk sizes.
    public static func unsigned32(_ text: String) -> UInt32? {
        var bytes = Substring(text).utf8[...]
        if bytes.first == UInt8(ascii: "+") { bytes = bytes.dropFirst() }
        if bytes.last == UInt8(ascii: "\n") { bytes = bytes.dropLast() }
        guard !bytes.isEmpty else { return nil }
        var value: UInt64 = 0
        for c in bytes {
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + UInt64(c - UInt8(ascii: "0"))
            if value > UInt64(UInt32.max) { return nil }
        }
        return UInt32(value)
    }
}
