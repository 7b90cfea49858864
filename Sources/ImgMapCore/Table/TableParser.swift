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
    /// What else a dump may say about its devices besides their tables: the device numbers that
    /// `dmsetup table -v` headers (`Major, minor: 253, 3`) and `kpartx -av` (`add map p1 (254:1): …`)
    /// print, as `MAJOR:MINOR` → device name.
    public struct DumpFacts: Sendable {
        /// `MAJOR:MINOR` → device name, in the order printed.
        public var numbers: [(token: String, name: String)] = []
    }

    /// Parses `bytes` read from `path`. `defaultName` names the device of a plain (unprefixed) table.
    public static func parse(_ bytes: [UInt8], path: String, defaultName: String) throws(TableError) -> [TableText] {
        var facts = DumpFacts()
        return try parse(bytes, path: path, defaultName: defaultName, facts: &facts)
    }

    /// How the lines of a file are laid out: decided by the first line that is not blank or a comment.
    enum Layout { case plain, dump, verbose }

    /// Parses `bytes` read from `path`, recording device numbers the text gives in `facts`.
    ///
    /// Besides plain tables it reads what users paste from real machines: `dmsetup table` dumps
    /// (`NAME: <start> <length> <target> …`, names that start with digits or hold spaces and `#`, and
    /// `NAME:` alone for a device with no table), `dmsetup table -v` (a header block per device, then its
    /// lines), `kpartx -l` (`p1 : 0 262144 /dev/loop0 4096`, a linear mapping) and `kpartx -av`
    /// (`add map p1 (254:1): 0 262144 linear 7:0 4096`).
    public static func parse(_ bytes: [UInt8], path: String, defaultName: String,
                             facts: inout DumpFacts) throws(TableError) -> [TableText] {
        var tables: [TableText] = []
        var indexByName: [String: Int] = [:]
        var layout: Layout?
        var verboseName: String?
        var lineNumber = 0
        var lineStart = 0
        var segments = 0
        let count = bytes.count
        func table(_ name: String) -> Int {
            if let index = indexByName[name] { return index }
            indexByName[name] = tables.count
            tables.append(TableText(name: name, path: path, bytes: bytes, spans: []))
            return tables.count - 1
        }
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
            let text = { (a: Int, b: Int) in PathBytes.string(bytes[a..<b]) }

            if equals(bytes, lo, hi, "No devices found") {
                throw TableError(path: path, line: lineNumber, message: "No devices found",
                                 detail: "this is what `dmsetup table` prints when the machine has no device-mapper devices: there is no table here",
                                 hint: "take the dump on the machine while the devices are active, or write the table yourself")
            }
            if starts(bytes, lo, hi, "loop deleted : ") { continue }  // kpartx -l on an image file says so at the end

            // dmsetup table -v: a header block names each device; its lines follow without a prefix.
            if let (key, valueStart) = verboseHeader(bytes, lo, hi), (layout == nil || layout == .verbose),
               (try? scanHeader(bytes, valueStart, hi, number: lineNumber, path: path)) == nil {
                layout = .verbose
                let value = text(valueStart, hi).trimmingCharacters(in: " \t")
                if key == "Name:" {
                    verboseName = value
                    _ = table(value)
                } else if key == "Major, minor:", let name = verboseName {
                    let parts = value.split(separator: ",").map { $0.trimmingCharacters(in: " \t") }
                    if parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 48 && $0 <= 57 } }) {
                        facts.numbers.append((token: "\(parts[0]):\(parts[1])", name: name))
                    }
                }
                continue
            }

            var name = defaultName
            var kind = TableText.LineKind.table
            let prefix = dumpPrefix(bytes, lo, hi, number: lineNumber, path: path)
            if layout == nil { layout = prefix != nil ? .dump : .plain }
            switch layout! {
            case .dump:
                guard let prefix else {
                    throw TableError(path: path, line: lineNumber, message: "Invalid format",
                                     detail: "expected `NAME: <start> <length> <target> …` as in the rest of this `dmsetup table` dump")
                }
                name = prefix.name
                kind = prefix.kind
                if let number = prefix.number { facts.numbers.append((token: number, name: name)) }
                let index = table(name)
                if prefix.rest == hi { continue }  // `NAME:` alone: a device with no table
                lo = prefix.rest
                _ = index
            case .verbose:
                guard let current = verboseName else {
                    throw TableError(path: path, line: lineNumber, message: "Invalid format",
                                     detail: "a table line before the first `Name:` header of this `dmsetup table -v` output")
                }
                name = current
            case .plain:
                if prefix != nil {
                    throw TableError(path: path, line: lineNumber, message: "Invalid format",
                                     detail: "a `NAME: …` dump line after plain table lines",
                                     hint: "a file is either one table or a `dmsetup table` dump of several devices")
                }
            }
            _ = try scanHeader(bytes, lo, hi, number: lineNumber, path: path)
            segments += 1
            if segments > maxTargetsPerTable {
                throw TableError(path: path, line: lineNumber, message: "too many targets",
                                 detail: "more than \(maxTargetsPerTable) segment lines (DM_MAX_TARGETS): the kernel refuses such a table with EOVERFLOW")
            }
            tables[table(name)].spans.append(TableText.LineSpan(number: lineNumber, lo: lo, hi: hi, kind: kind))
        }
        if tables.isEmpty {
            throw TableError(path: path, line: nil, message: "no targets",
                             detail: "the table has no segment lines", hint: "a table needs at least one `<start> <length> <target> <args…>` line")
        }
        return tables
    }

    /// The kernel's limit on the segments of one table (`DM_MAX_TARGETS`, dm-core.h). Asked of the
    /// kernel oracle (6.1.0-57, 2026-12-02): a table of 1,048,577 `zero` lines, and even one of 100,000,
    /// did not finish within its 120 s limit (TCG emulation: dmsetup and the ioctl for that many
    /// targets take longer), so the refusal and its phrase are taken from the source, not observed.
    public static let maxTargetsPerTable = 1_048_576

    /// The keys `dmsetup table -v` (`_display_info_long`) prints before a device's lines.
    static let verboseKeys = ["Name:", "State:", "Read Ahead:", "Tables present:", "Open count:", "Event number:",
                              "Major, minor:", "Number of targets:", "UUID:"]

    static func verboseHeader(_ b: [UInt8], _ lo: Int, _ hi: Int) -> (String, Int)? {
        for key in verboseKeys where starts(b, lo, hi, key) { return (key, lo + key.utf8.count) }
        return nil
    }

    static func starts(_ b: [UInt8], _ lo: Int, _ hi: Int, _ s: String) -> Bool {
        let u = Array(s.utf8)
        guard hi - lo >= u.count else { return false }
        for i in 0..<u.count where b[lo + i] != u[i] { return false }
        return true
    }

    static func equals(_ b: [UInt8], _ lo: Int, _ hi: Int, _ s: String) -> Bool {
        hi - lo == s.utf8.count && starts(b, lo, hi, s)
    }

    /// A dump line's device prefix: the name, where the segment starts (`hi` for a device with no
    /// table), a device number `kpartx -av` gives, and whether the rest is a `kpartx -l` mapping.
    struct DumpPrefix {
        var name: String
        var rest: Int
        var number: String?
        var kind: TableText.LineKind
    }

    /// dmsetup prints `"%s: "` before each line, and a dm name may hold anything but `/`: digits first,
    /// spaces, `#`, colons. The name ends at the first `:` + whitespace (or the line's end) after which
    /// a segment follows. `kpartx -l` writes `NAME : 0 SIZE DEVICE OFFSET`; `kpartx -av` writes
    /// `add map NAME (MAJ:MIN): 0 SIZE linear DEVICE OFFSET`. A plain segment line never matches: its
    /// start is a number, which cannot end in `:`.
    static func dumpPrefix(_ b: [UInt8], _ lo: Int, _ hi: Int, number: Int, path: String) -> DumpPrefix? {
        var from = lo
        var mapNumber: String?
        if starts(b, lo, hi, "add map ") {
            from = lo + 8
            // `NAME (MAJ:MIN): ` — the number in the last parentheses before the colon.
            if let close = (from..<hi).first(where: { b[$0] == UInt8(ascii: ")") && $0 + 1 < hi && b[$0 + 1] == UInt8(ascii: ":") }),
               let open = (from..<close).last(where: { b[$0] == UInt8(ascii: "(") }) {
                let inner = String(decoding: b[(open + 1)..<close], as: UTF8.self)
                let parts = inner.split(separator: ":")
                if parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 48 && $0 <= 57 } }) {
                    mapNumber = inner
                    var nameEnd = open
                    while nameEnd > from && isCSpace(b[nameEnd - 1]) { nameEnd -= 1 }
                    var rest = close + 2
                    while rest < hi && isCSpace(b[rest]) { rest += 1 }
                    guard nameEnd > from, (try? scanHeader(b, rest, hi, number: number, path: path)) != nil else { return nil }
                    return DumpPrefix(name: String(decoding: b[from..<nameEnd], as: UTF8.self), rest: rest, number: mapNumber, kind: .table)
                }
            }
            from = lo
        }
        var i = from
        while i < hi {
            defer { i += 1 }
            guard b[i] == UInt8(ascii: ":"), i > lo, i + 1 == hi || isCSpace(b[i + 1]) else { continue }
            var rest = i + 1
            while rest < hi && isCSpace(b[rest]) { rest += 1 }
            let spaceBefore = isCSpace(b[i - 1])
            var nameEnd = i
            if spaceBefore { while nameEnd > lo && isCSpace(b[nameEnd - 1]) { nameEnd -= 1 } }
            guard nameEnd > lo else { return nil }
            let name = String(decoding: b[lo..<nameEnd], as: UTF8.self)
            if rest == hi {
                // `NAME:` alone (dmsetup's line for a device with no table); not when the name is itself
                // a segment (`0 8 zero:` is a bad segment line, not a device called `0 8 zero`).
                if (try? scanHeader(b, lo, nameEnd, number: number, path: path)) != nil { return nil }
                return DumpPrefix(name: name, rest: hi, number: nil, kind: .table)
            }
            guard (try? scanHeader(b, rest, hi, number: number, path: path)) != nil else { continue }
            if spaceBefore && isKpartxList(b, rest, hi) {
                return DumpPrefix(name: name, rest: rest, number: nil, kind: .kpartx)
            }
            return DumpPrefix(name: name, rest: rest, number: nil, kind: .table)
        }
        return nil
    }

    /// `0 SIZE DEVICE OFFSET` as `kpartx -l` prints it: four fields, the last a number.
    static func isKpartxList(_ b: [UInt8], _ lo: Int, _ hi: Int) -> Bool {
        let fields = splitArguments(b, lo, hi)
        return fields.count == 4 && fields[3].utf8.allSatisfy { $0 >= 48 && $0 <= 57 }
            && !fields[2].utf8.allSatisfy { $0 >= 48 && $0 <= 57 }
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
    static func parseSegment(_ b: [UInt8], _ lo: Int, _ hi: Int, number: Int, path: String,
                             kind: TableText.LineKind = .table) throws(TableError) -> TableLine {
        let header = try scanHeader(b, lo, hi, number: number, path: path)
        if kind == .kpartx {
            // `0 SIZE DEVICE OFFSET`: what kpartx loads is `linear DEVICE OFFSET`.
            return TableLine(number: number, start: header.start, length: header.length, target: "linear",
                             arguments: splitArguments(b, header.target.lowerBound, hi))
        }
        var i = header.target.upperBound
        while i < hi && isCSpace(b[i]) { i += 1 }
        var paramsEnd = i
        while paramsEnd < hi && b[paramsEnd] != UInt8(ascii: "#") { paramsEnd += 1 }
        return TableLine(number: number, start: header.start, length: header.length,
                         target: String(decoding: b[header.target], as: UTF8.self),
                         arguments: splitArguments(b, i, paramsEnd))
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
            args.append(PathBytes.string(b[start..<i]))
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

    /// `sscanf(arg, "%u%c") == 1` in the kernel: decimal digits only, the value truncated to 32 bits
    /// as vsscanf stores it. Used for crypt's counts.
    public static func unsigned32Scanf(_ text: String) -> UInt32? {
        sector(text).map { UInt32(truncatingIfNeeded: $0) }
    }

    /// `sscanf(arg, "%hu%c") == 1`: as `unsigned32Scanf`, truncated to 16 bits (`sector_size:66048`
    /// reads as 512, as in the kernel).
    public static func unsigned16Scanf(_ text: String) -> UInt16? {
        sector(text).map { UInt16(truncatingIfNeeded: $0) }
    }

    /// A `%u` conversion at the start of `text` that may be followed by more: the value (truncated to
    /// 32 bits) and what follows, or nil when `text` does not start with a digit.
    public static func leadingUnsigned(_ text: Substring) -> (value: UInt32, rest: Substring)? {
        let digits = text.prefix(while: { $0.isASCII && $0.isNumber })
        guard !digits.isEmpty, let value = sector(String(digits)) else { return nil }
        return (UInt32(truncatingIfNeeded: value), text.dropFirst(digits.count))
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
