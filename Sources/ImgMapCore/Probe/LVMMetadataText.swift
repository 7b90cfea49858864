/// LVM2's text metadata format (the config syntax of lvm.conf and the VG backups): sections
/// `name { … }`, assignments `key = value` with values a string ("…", backslash escapes), an
/// integer, a float, or an array `[v, v, …]`; `#` comments to the end of the line.
indirect enum LVMConfig: Sendable {
    case section([(String, LVMConfig)])
    case string(String)
    case integer(Int64)
    case float(String)
    case array([LVMConfig])

    struct ParseError: Error {
        var line: Int
        var message: String
    }

    subscript(key: String) -> LVMConfig? {
        guard case .section(let items) = self else { return nil }
        return items.first { $0.0 == key }?.1
    }

    var string: String? { if case .string(let s) = self { s } else { nil } }
    var integer: Int64? { if case .integer(let n) = self { n } else { nil } }
    var array: [LVMConfig]? { if case .array(let a) = self { a } else { nil } }
    /// The subsections, in order.
    var sections: [(String, LVMConfig)] {
        guard case .section(let items) = self else { return [] }
        return items.filter { if case .section = $0.1 { true } else { false } }
    }
    var strings: [String] { array?.compactMap(\.string) ?? [] }

    /// Parses a whole text; the result is the top-level section.
    static func parse(_ text: [UInt8]) throws -> LVMConfig {
        var parser = Parser(b: text)
        let items = try parser.items(top: true)
        return .section(items)
    }

    struct Parser {
        let b: [UInt8]
        var i = 0
        var line = 1
        /// Sections deeper than this are refused (a corrupt or hostile text cannot exhaust the stack).
        static let maxDepth = 64
        var depth = 0

        mutating func skip() {
            while i < b.count {
                let c = b[i]
                if c == UInt8(ascii: "\n") { line += 1; i += 1 }
                else if c == 0x20 || c == 0x09 || c == 0x0d { i += 1 }
                else if c == UInt8(ascii: "#") { while i < b.count && b[i] != UInt8(ascii: "\n") { i += 1 } }
                else { return }
            }
        }

        func fail(_ m: String) -> ParseError { ParseError(line: line, message: m) }

        static func isNameChar(_ c: UInt8) -> Bool {
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x5f || c == 0x2e || c == 0x2b || c == 0x2d || c == 0x2f
        }

        mutating func items(top: Bool) throws -> [(String, LVMConfig)] {
            var out: [(String, LVMConfig)] = []
            while true {
                skip()
                if i >= b.count {
                    if top { return out }
                    throw fail("unexpected end of text inside a section")
                }
                if b[i] == UInt8(ascii: "}") {
                    if top { throw fail("unexpected `}`") }
                    i += 1
                    return out
                }
                let start = i
                while i < b.count && Self.isNameChar(b[i]) { i += 1 }
                guard i > start else { throw fail("expected a name, found `\(Character(Unicode.Scalar(b[i])))`") }
                let name = String(decoding: b[start..<i], as: UTF8.self)
                skip()
                guard i < b.count else { throw fail("unexpected end of text after `\(name)`") }
                if b[i] == UInt8(ascii: "{") {
                    i += 1
                    depth += 1
                    guard depth <= Self.maxDepth else { throw fail("sections nested deeper than \(Self.maxDepth)") }
                    out.append((name, .section(try items(top: false))))
                    depth -= 1
                } else if b[i] == UInt8(ascii: "=") {
                    i += 1
                    out.append((name, try value()))
                } else {
                    throw fail("expected `=` or `{` after `\(name)`")
                }
            }
        }

        mutating func value() throws -> LVMConfig {
            skip()
            guard i < b.count else { throw fail("missing value") }
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                var s: [UInt8] = []
                while true {
                    guard i < b.count else { throw fail("unterminated string") }
                    let d = b[i]
                    i += 1
                    if d == UInt8(ascii: "\"") { break }
                    if d == UInt8(ascii: "\\") {
                        guard i < b.count else { throw fail("unterminated string") }
                        s.append(b[i])
                        i += 1
                        continue
                    }
                    if d == UInt8(ascii: "\n") { line += 1 }
                    s.append(d)
                }
                return .string(String(decoding: s, as: UTF8.self))
            }
            if c == UInt8(ascii: "[") {
                i += 1
                var values: [LVMConfig] = []
                while true {
                    skip()
                    guard i < b.count else { throw fail("unterminated array") }
                    if b[i] == UInt8(ascii: "]") { i += 1; return .array(values) }
                    let v = try value()
                    if case .array = v { throw fail("nested arrays") }
                    values.append(v)
                    skip()
                    guard i < b.count else { throw fail("unterminated array") }
                    if b[i] == UInt8(ascii: ",") { i += 1 }
                    else if b[i] != UInt8(ascii: "]") { throw fail("expected `,` or `]` in an array") }
                }
            }
            let start = i
            if c == UInt8(ascii: "-") || c == UInt8(ascii: "+") { i += 1 }
            while i < b.count && ((b[i] >= 0x30 && b[i] <= 0x39) || b[i] == UInt8(ascii: ".")) { i += 1 }
            let text = String(decoding: b[start..<i], as: UTF8.self)
            guard i > start, text != "-", text != "+" else { throw fail("expected a value") }
            if text.contains(".") { return .float(text) }
            guard let n = Int64(text.hasPrefix("+") ? String(text.dropFirst()) : text) else { throw fail("number \(text) out of range") }
            return .integer(n)
        }
    }
}
