/// A JSON value for `probe --json`, objects keeping their key order so the report reads top-down
/// and diffs stay small.
public indirect enum JSONValue: Equatable, Sendable {
    /// An object: its members in the order they are written.
    case object([(String, JSONValue)])
    /// An array.
    case array([JSONValue])
    /// A string, escaped when written.
    case string(String)
    /// A signed integer (JSON numbers in the report are all integers).
    case number(Int64)
    /// An unsigned integer too large for `number` (sector counts, byte offsets, event counters).
    case unsigned(UInt64)
    /// `true` or `false`.
    case bool(Bool)
    /// `null`.
    case null

    public static func == (a: JSONValue, b: JSONValue) -> Bool { a.text() == b.text() }

    /// The value of `key` in an object.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let pairs) = self else { return nil }
        return pairs.first { $0.0 == key }?.1
    }

    /// Serialized with two-space indentation (`pretty`) or on one line.
    public func text(pretty: Bool = false) -> String {
        var out = ""
        write(&out, pretty: pretty, indent: 0)
        return out
    }

    private func write(_ out: inout String, pretty: Bool, indent: Int) {
        let pad = pretty ? "\n" + String(repeating: "  ", count: indent + 1) : ""
        let close = pretty ? "\n" + String(repeating: "  ", count: indent) : ""
        switch self {
        case .object(let pairs):
            if pairs.isEmpty { out += "{}"; return }
            out += "{"
            for (i, (key, value)) in pairs.enumerated() {
                if i > 0 { out += "," }
                out += pad
                Self.quote(key, &out)
                out += pretty ? ": " : ":"
                value.write(&out, pretty: pretty, indent: indent + 1)
            }
            out += close + "}"
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            out += "["
            for (i, value) in items.enumerated() {
                if i > 0 { out += "," }
                out += pad
                value.write(&out, pretty: pretty, indent: indent + 1)
            }
            out += close + "]"
        case .string(let s): Self.quote(s, &out)
        case .number(let n): out += String(n)
        case .unsigned(let n): out += String(n)
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        }
    }

    static func quote(_ s: String, _ out: inout String) {
        out += jsonString(s)
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}
