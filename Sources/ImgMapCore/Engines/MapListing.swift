import Dispatch
import Synchronization

/// The `map` engine: the resolved leaf map as aligned columns or JSON lines, written as it is walked
/// (a million-segment table is never held as text).
public struct MapListing {
    /// How the listing is written.
    public enum Format: Sendable {
        /// Aligned columns with a header line.
        case columns
        /// One JSON object per line.
        case json
    }

    /// The device to list.
    public let map: SectorMap
    /// Columns or JSON lines.
    public let format: Format

    /// A listing of `map` in `format`.
    public init(map: SectorMap, format: Format) {
        self.map = map
        self.format = format
    }

    /// Writes the listing to `out`, one line per extent, formatted straight into its byte buffer (no
    /// string per line: a million-extent map lists in a fraction of a second). Returns the extent count.
    @discardableResult
    public func write(to sink: TextSink) throws -> Int {
        var count = 0
        var out = TextBuffer()
        var widths = Widths()
        var measured = Measured()
        if format == .columns {
            // A first pass, with no I/O and no text, sizes the columns to their longest entries so long
            // paths keep everything after them aligned.
            widths = Self.widths(of: map)
            out.pad("START", 12, right: true)
            out.pad("LENGTH", 12, right: true)
            out.append(" ")
            out.pad("TARGET", widths.target)
            out.pad("DEVICE", widths.device)
            out.pad("OFFSET", 12, right: true)
            out.append(" ")
            out.pad("TABLE:LINE", widths.place)
            out.append("FILE\n")
        }
        try map.forEachExtent { extent in
            count += 1
            if format == .json { Self.json(extent, &out) } else { Self.columns(extent, widths, &measured, &out) }
            if out.isFull { try sink.write(&out) }
        }
        try sink.write(&out)
        return count
    }

    /// The column widths of `map`'s listing, its parts measured on every core at once: this first pass
    /// is a whole walk of its own. Extents cut where the parts meet give the same widths as whole ones.
    static func widths(of map: SectorMap) -> Widths {
        let parts = activeProcessorCount()
        let size = map.size.value
        let found = Mutex<Widths>(Widths())
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let start = size / UInt64(parts) * UInt64(part)
            let end = part == parts - 1 ? size : size / UInt64(parts) * UInt64(part + 1)
            var widths = Widths()
            var measured = Measured()
            map.forEachExtent(from: Sector(start), to: Sector(end)) { widths.fit($0, &measured) }
            found.withLock { $0.merge(widths) }
        }
        return found.withLock { $0 }
    }

    /// Column widths: at least the header's, else the longest entry.
    struct Widths {
        var target = 8
        var device = 8
        var place = 18

        mutating func merge(_ other: Widths) {
            target = max(target, other.target)
            device = max(device, other.device)
            place = max(place, other.place)
        }

        mutating func fit(_ e: Extent, _ measured: inout Measured) {
            var targetCount = e.origin.target.utf8.count
            if case .error = e.source, e.origin.device != nil { targetCount += "(past end)".utf8.count }
            target = max(target, targetCount)
            device = max(device, e.origin.device.map { measured.device.width($0) } ?? 1)
            place = max(place, Self.place(e.origin, &measured))
        }

        /// The columns `TABLE:LINE` takes.
        static func place(_ origin: Origin, _ measured: inout Measured) -> Int {
            var digits = 1
            var line = origin.line / 10
            while line > 0 { digits += 1; line /= 10 }
            return measured.table.width(origin.table) + 1 + digits
        }
    }

    /// The display widths of the last device and table names seen: consecutive extents nearly always
    /// name the same ones (the same string storage, so the comparison is one word), and measuring each
    /// again was 6 % of a million-extent listing.
    struct Measured {
        struct Last {
            var text = ""
            var columns = 0

            mutating func width(_ s: String) -> Int {
                if s != text {
                    text = s
                    columns = displayWidth(s)
                }
                return columns
            }
        }

        var device = Last()
        var table = Last()
    }

    static func columns(_ e: Extent, _ widths: Widths, _ measured: inout Measured, _ out: inout TextBuffer) {
        out.pad(e.start.value, 12)
        out.pad(e.length.value, 12)
        out.append(" ")
        var target = e.origin.target
        if case .error = e.source, e.origin.device != nil {
            // Past the end of an image: the line maps onto the image, the sectors read as errors.
            target += "(past end)"
        }
        out.pad(target, widths.target)
        if let device = e.origin.device {
            out.append(device)
            out.spaces(widths.device - measured.device.width(device))
            out.append(byte: UInt8(ascii: " "))
        } else {
            out.pad("-", widths.device)
        }
        if case .data(_, let offset) = e.source { out.pad(offset.value, 12) } else { out.pad("-", 12, right: true) }
        out.append(" ")
        out.append(e.origin.table)
        out.append(byte: UInt8(ascii: ":"))
        out.append(decimal: UInt64(e.origin.line))
        out.spaces(max(1, widths.place + 1 - Widths.place(e.origin, &measured)))
        switch e.source {
        case .data(let leaf, _): out.append(leaf.path)
        case .computed(let source, let at): out.append(source.describe(sector: at, count: e.length.value))
        default: out.append("-")
        }
        out.append("\n")
    }

    static func json(_ e: Extent, _ out: inout TextBuffer) {
        out.append("{\"start\":")
        out.append(decimal: e.start.value)
        out.append(",\"length\":")
        out.append(decimal: e.length.value)
        out.append(",\"target\":")
        out.append(json: e.origin.target)
        out.append(",\"device\":")
        switch e.source {
        case .data(let leaf, let offset):
            out.append(json: e.origin.device ?? "")
            out.append(",\"file\":")
            out.append(json: leaf.path)
            out.append(",\"offset\":")
            out.append(decimal: offset.value)
        case .zero:
            out.append("null,\"file\":null,\"offset\":null")
        case .error:
            if let device = e.origin.device { out.append(json: device) } else { out.append("null") }
            out.append(",\"file\":null,\"offset\":null,\"error\":true")
        case .computed(let source, let at):
            if let device = e.origin.device { out.append(json: device) } else { out.append("null") }
            out.append(",\"file\":null,\"offset\":null,\"computed\":")
            out.append(json: source.describe(sector: at, count: e.length.value))
        }
        out.append(",\"table\":")
        out.append(json: e.origin.table)
        out.append(",\"line\":")
        out.append(decimal: UInt64(e.origin.line))
        out.append("}\n")
    }
}

/// A JSON string literal for `s`.
public func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value >= PathBytes.escapeBase + 0x80 {
                // A file-name byte that is not UTF-8 (PathBytes): JSON has no bytes, so it is written as
                // Python's surrogateescape writes it, `\udcff` for 0xFF, which os.fsencode turns back.
                out += "\\udc" + String(scalar.value - PathBytes.escapeBase, radix: 16)
            } else if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

/// Buffered text output to a file descriptor.
public final class TextSink {
    let file: ImageFile
    var text = TextBuffer()

    /// A sink writing to `file` (standard output or an opened output).
    public init(file: ImageFile) {
        self.file = file
    }

    /// Appends `line` and writes out when the buffer is full.
    public func write(_ line: String) throws {
        text.append(line)
        if text.isFull { try flush() }
    }

    /// Writes out a buffer formatted elsewhere, after what this sink holds.
    func write(_ other: inout TextBuffer) throws {
        try flush()
        try other.withBytes { try file.append($0) }
        other.removeAll()
    }

    /// Writes out what the buffer holds.
    public func flush() throws {
        guard !text.isEmpty else { return }
        try text.withBytes { try file.append($0) }
        text.removeAll()
    }
}

/// Bytes of text formatted in place: numbers, padding and JSON strings without a String per line.
///
/// The bytes live in memory of its own, written through a pointer: appending to an `[UInt8]` checks
/// uniqueness and capacity on every call (`append(contentsOf: repeatElement(…))` alone was 8 % of a
/// million-line `map`). A value type so that a local one needs no exclusivity checks at run time; it
/// is never copied (a copy would share the memory): it lives in one local or in one ``TextSink``.
struct TextBuffer {
    /// Frees the memory when the buffer goes away.
    private final class Memory {
        var base: UnsafeMutablePointer<UInt8>
        init(capacity: Int) { base = .allocate(capacity: capacity) }
        deinit { base.deallocate() }
    }

    private let memory: Memory
    private var base: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    /// Bytes held.
    private(set) var count = 0

    /// Where a buffer is written out: lines are appended until it holds this many bytes.
    static let flushSize = 1 << 20

    init() {
        capacity = Self.flushSize + 64 * 1024
        memory = Memory(capacity: capacity)
        base = memory.base
    }

    var isFull: Bool { count >= Self.flushSize }

    var isEmpty: Bool { count == 0 }

    /// Room for `n` more bytes (a line longer than the slack past `flushSize` grows the memory).
    @inline(__always)
    private mutating func reserve(_ n: Int) {
        if count + n > capacity { grow(count + n) }
    }

    private mutating func grow(_ needed: Int) {
        let bigger = max(needed, capacity * 2)
        let new = UnsafeMutablePointer<UInt8>.allocate(capacity: bigger)
        new.update(from: base, count: count)
        memory.base.deallocate()
        memory.base = new
        base = new
        capacity = bigger
    }

    /// The bytes held, for writing out.
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    mutating func removeAll() { count = 0 }

    mutating func append(byte: UInt8) {
        reserve(1)
        base[count] = byte
        count += 1
    }

    mutating func append(bytes: UnsafeBufferPointer<UInt8>) {
        guard let from = bytes.baseAddress, !bytes.isEmpty else { return }
        reserve(bytes.count)
        (base + count).update(from: from, count: bytes.count)
        count += bytes.count
    }

    mutating func append(_ text: String) {
        var text = text
        // A file name's non-UTF-8 bytes go out as the bytes they are (PathBytes); their scalars are the
        // only ones whose UTF-8 starts 0xF4 0x8F 0xBE/0xBF, so a line without 0xF4 is copied as it is.
        let copied = text.withUTF8 { utf8 in
            guard !utf8.contains(0xF4) else { return false }
            append(bytes: utf8)
            return true
        }
        if !copied { PathBytes.bytes(text).withUnsafeBufferPointer { append(bytes: $0) } }
    }

    mutating func append(decimal value: UInt64) {
        var digits = 1
        var tmp = value
        while tmp >= 10 { tmp /= 10; digits += 1 }
        reserve(digits)
        var v = value
        var i = count + digits - 1
        repeat {
            base[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
            v /= 10
            i -= 1
        } while v > 0
        count += digits
    }

    /// A JSON string literal; escapes only when the text needs it.
    mutating func append(json text: String) {
        var text = text
        let plain = text.withUTF8 { utf8 in
            utf8.allSatisfy { $0 >= 0x20 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") && $0 != 0xF4 }
        }
        if plain {
            append(byte: UInt8(ascii: "\""))
            text.withUTF8 { append(bytes: $0) }
            append(byte: UInt8(ascii: "\""))
        } else {
            append(jsonString(text))
        }
    }

    mutating func spaces(_ n: Int) {
        guard n > 0 else { return }
        reserve(n)
        (base + count).initialize(repeating: UInt8(ascii: " "), count: n)
        count += n
    }

    /// Text padded to `width` columns of a terminal (on the left when `right`), then a space.
    mutating func pad(_ text: String, _ width: Int, right: Bool = false) {
        let n = width - displayWidth(text)
        if right { spaces(n) }
        append(text)
        if !right { spaces(n) }
        append(byte: UInt8(ascii: " "))
    }

    /// A number right-aligned in `width`, then a space.
    mutating func pad(_ value: UInt64, _ width: Int) {
        var digits = 1
        var tmp = value
        while tmp >= 10 { tmp /= 10; digits += 1 }
        spaces(width - digits)
        append(decimal: value)
        append(byte: UInt8(ascii: " "))
    }
}

/// The columns `text` takes on a terminal as the listing prints it: ASCII one each; a byte of a file
/// name that is not UTF-8 (PathBytes), printed as that one byte, one (terminals show one replacement
/// glyph); a combining mark or other zero-width scalar none; an East Asian wide or fullwidth scalar two.
/// Padding by UTF-8 length instead misaligned every column after a name holding `é` or a raw byte.
func displayWidth(_ text: String) -> Int {
    var text = text
    let ascii = text.withUTF8 { utf8 -> Int? in
        var high: UInt8 = 0
        for b in utf8 { high |= b }
        return high < 0x80 ? utf8.count : nil
    }
    if let ascii { return ascii }
    var width = 0
    for scalar in text.unicodeScalars { width += columns(of: scalar) }
    return width
}

/// The terminal columns of one scalar (see ``displayWidth(_:)``), after wcwidth's rules.
func columns(of scalar: Unicode.Scalar) -> Int {
    let v = scalar.value
    if v < 0x80 { return 1 }
    if v >= PathBytes.escapeBase + 0x80 { return 1 }  // a raw byte, printed as itself
    switch scalar.properties.generalCategory {
    case .nonspacingMark, .enclosingMark, .format: return 0
    default: break
    }
    if v == 0x200B || (0x1160...0x11FF).contains(v) { return 0 }  // zero width space, Hangul medial jamo
    for range in wideScalars where range.contains(v) { return 2 }
    return 1
}

/// East Asian Wide and Fullwidth scalars (Unicode 15's EastAsianWidth.txt, W and F, merged).
private let wideScalars: [ClosedRange<UInt32>] = [
        0x1100...0x115F, 0x231A...0x231B, 0x2329...0x232A, 0x23E9...0x23EC, 0x23F0...0x23F0, 0x23F3...0x23F3,
        0x25FD...0x25FE, 0x2614...0x2615, 0x2648...0x2653, 0x267F...0x267F, 0x2693...0x2693, 0x26A1...0x26A1,
        0x26AA...0x26AB, 0x26BD...0x26BE, 0x26C4...0x26C5, 0x26CE...0x26CE, 0x26D4...0x26D4, 0x26EA...0x26EA,
        0x26F2...0x26F3, 0x26F5...0x26F5, 0x26FA...0x26FA, 0x26FD...0x26FD, 0x2705...0x2705, 0x270A...0x270B,
        0x2728...0x2728, 0x274C...0x274C, 0x274E...0x274E, 0x2753...0x2755, 0x2757...0x2757, 0x2795...0x2797,
        0x27B0...0x27B0, 0x27BF...0x27BF, 0x2B1B...0x2B1C, 0x2B50...0x2B50, 0x2B55...0x2B55,
        0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xA000...0xA4CF, 0xA960...0xA97F,
        0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE10...0xFE19, 0xFE30...0xFE6F, 0xFF00...0xFF60, 0xFFE0...0xFFE6,
        0x16FE0...0x18CFF, 0x1B000...0x1B2FF, 0x1F004...0x1F004, 0x1F0CF...0x1F0CF, 0x1F18E...0x1F18E,
        0x1F191...0x1F19A, 0x1F200...0x1F2FF, 0x1F300...0x1F64F, 0x1F680...0x1F6FF, 0x1F7E0...0x1F7EB,
        0x1F90C...0x1F9FF, 0x1FA70...0x1FAFF, 0x20000...0x2FFFD, 0x30000...0x3FFFD,
]
