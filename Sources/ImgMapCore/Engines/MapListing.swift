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

    /// Writes the listing to `out`, one line per extent. Returns the number of extents.
    @discardableResult
    public func write(to out: TextSink) throws -> Int {
        var count = 0
        if format == .columns {
            try out.write(Self.row("START", "LENGTH", "TARGET", "DEVICE", "OFFSET", "TABLE:LINE", "FILE"))
        }
        try map.forEachExtent { extent in
            count += 1
            try out.write(format == .json ? Self.json(extent) : Self.columns(extent))
        }
        return count
    }

    static func columns(_ e: Extent) -> String {
        let device = e.origin.device ?? "-"
        var file = "-"
        var offset = "-"
        var target = e.origin.target
        switch e.source {
        case .data(let leaf, let o):
            file = leaf.path
            offset = String(o.value)
        case .zero:
            break
        case .error:
            // Past the end of an image: the line maps onto the image, the sectors read as errors.
            if e.origin.device != nil { target += "(past end)" }
        }
        return row(String(e.start.value), String(e.length.value), target, device, offset, "\(e.origin.table):\(e.origin.line)", file)
    }

    /// Right-aligned numbers, left-aligned names; the file last since paths vary most in length.
    static func row(_ start: String, _ length: String, _ target: String, _ device: String, _ offset: String,
                    _ place: String, _ file: String) -> String {
        func pad(_ s: String, _ width: Int, right: Bool) -> String {
            let fill = String(repeating: " ", count: max(0, width - s.count))
            return right ? fill + s : s + fill
        }
        return pad(start, 12, right: true) + " " + pad(length, 12, right: true) + "  " + pad(target, 8, right: false) + " "
            + pad(device, 8, right: false) + " " + pad(offset, 12, right: true) + "  " + pad(place, 18, right: false) + " " + file + "\n"
    }

    static func json(_ e: Extent) -> String {
        var text = "{\"start\":\(e.start.value),\"length\":\(e.length.value),\"target\":\(jsonString(e.origin.target))"
        switch e.source {
        case .data(let leaf, let o):
            text += ",\"device\":\(jsonString(e.origin.device ?? "")),\"file\":\(jsonString(leaf.path)),\"offset\":\(o.value)"
        case .zero:
            text += ",\"device\":null,\"file\":null,\"offset\":null"
        case .error:
            let device = e.origin.device.map(jsonString) ?? "null"
            text += ",\"device\":\(device),\"file\":null,\"offset\":null,\"error\":true"
        }
        return text + ",\"table\":\(jsonString(e.origin.table)),\"line\":\(e.origin.line)}\n"
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
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

/// Buffered text output to a file descriptor (1 MiB at a time).
public final class TextSink {
    let file: ImageFile
    var buffer: [UInt8] = []

    public init(file: ImageFile) {
        self.file = file
        buffer.reserveCapacity(1 << 20)
    }

    public func write(_ text: String) throws {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 1 << 20 { try flush() }
    }

    public func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try file.append($0) }
        buffer.removeAll(keepingCapacity: true)
    }
}
