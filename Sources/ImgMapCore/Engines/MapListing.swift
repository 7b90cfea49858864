/// The `map` engine: the resolved leaf map as aligned columns or JSON lines, written as it is walked
/// (a million-segment table is never held as text).
public struct MapListing {
    public enum Format: Sendable { case columns, json }

    public let map: SectorMap
    public let format: Format

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
        if format == .columns {
            // A first pass, with no I/O and no text, sizes the columns to their longest entries so long
            // paths keep everything after them aligned.
            map.forEachExtent { widths.fit($0) }
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
            if format == .json { Self.json(extent, &out) } else { Self.columns(extent, widths, &out) }
            if out.isFull { try sink.write(&out) }
        }
        try sink.write(&out)
        return count
    }

    /// Column widths: at least the header's, else the longest entry.
    struct Widths {
        var target = 8
        var device = 8
        var place = 18

        mutating func fit(_ e: Extent) {
            var targetCount = e.origin.target.utf8.count
            if case .error = e.source, e.origin.device != nil { targetCount += "(past end)".utf8.count }
            target = max(target, targetCount)
            device = max(device, e.origin.device?.utf8.count ?? 1)
            var digits = 1
            var line = e.origin.line / 10
            while line > 0 { digits += 1; line /= 10 }
            place = max(place, e.origin.table.utf8.count + 1 + digits)
        }
    }

    static func columns(_ e: Extent, _ widths: Widths, _ out: inout TextBuffer) {
        out.pad(e.start.value, 12)
        out.pad(e.length.value, 12)
        out.append(" ")
        var target = e.origin.target
        if case .error = e.source, e.origin.device != nil {
            // Past the end of an image: the line maps onto the image, the sectors read as errors.
            target += "(past end)"
        }
        out.pad(target, widths.target)
        out.pad(e.origin.device ?? "-", widths.device)
        if case .data(_, let offset) = e.source { out.pad(offset.value, 12) } else { out.pad("-", 12, right: true) }
        out.append(" ")
        let placeStart = out.bytes.count
        out.append(e.origin.table)
        out.append(":")
        out.append(decimal: UInt64(e.origin.line))
        out.spaces(max(1, widths.place + 1 - (out.bytes.count - placeStart)))
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
        try other.bytes.withUnsafeBytes { try file.append($0) }
        other.bytes.removeAll(keepingCapacity: true)
    }

    public func flush() throws {
        guard !text.bytes.isEmpty else { return }
        try text.bytes.withUnsafeBytes { try file.append($0) }
        text.bytes.removeAll(keepingCapacity: true)
    }
}

/// Bytes of text formatted in place: numbers, padding and JSON strings without a String per line. A
/// value type, so a local one is checked for exclusive access at compile time, not on every append.
struct TextBuffer {
    var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(1 << 20) }

    var isFull: Bool { bytes.count >= 1 << 20 }

    mutating func append(_ text: String) {
        var text = text
        // A file name's non-UTF-8 bytes go out as the bytes they are (PathBytes); their scalars are the
        // only ones whose UTF-8 starts 0xF4 0x8F 0xBE/0xBF, so a line without 0xF4 is copied as it is.
        let copied = text.withUTF8 { utf8 in
            guard !utf8.contains(0xF4) else { return false }
            bytes.append(contentsOf: utf8)
            return true
        }
        if !copied { bytes.append(contentsOf: PathBytes.bytes(text)) }
    }

    mutating func append(decimal value: UInt64) {
        var digits = 1
        var tmp = value
        while tmp >= 10 { tmp /= 10; digits += 1 }
        bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: digits))
        bytes.withUnsafeMutableBufferPointer { p in
            var v = value
            var i = p.count - 1
            while v > 0 {
                p[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
                v /= 10
                i -= 1
            }
        }
    }

    /// A JSON string literal; escapes only when the text needs it.
    mutating func append(json text: String) {
        var text = text
        let plain = text.withUTF8 { utf8 in
            utf8.allSatisfy { $0 >= 0x20 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") && $0 != 0xF4 }
        }
        if plain {
            bytes.append(UInt8(ascii: "\""))
            text.withUTF8 { bytes.append(contentsOf: $0) }
            bytes.append(UInt8(ascii: "\""))
        } else {
            append(jsonString(text))
        }
    }

    mutating func spaces(_ n: Int) {
        if n > 0 { bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: n)) }
    }

    /// Text padded to `width` (on the left when `right`), then a space.
    mutating func pad(_ text: String, _ width: Int, right: Bool = false) {
        let n = width - text.utf8.count
        if right { spaces(n) }
        append(text)
        if !right { spaces(n) }
        bytes.append(UInt8(ascii: " "))
    }

    /// A number right-aligned in `width`, then a space.
    mutating func pad(_ value: UInt64, _ width: Int) {
        var digits = 1
        var tmp = value
        while tmp >= 10 { tmp /= 10; digits += 1 }
        spaces(width - digits)
        append(decimal: value)
        bytes.append(UInt8(ascii: " "))
    }
}
