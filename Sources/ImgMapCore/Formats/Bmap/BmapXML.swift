/// A minimal XML reader for bmap files: elements, attributes, character data, comments, processing
/// instructions, CDATA and the five predefined entities plus character references. No DTDs, no
/// namespaces. Builds a small tree in one pass; cost is linear in the text. Errors name the line.
struct BmapXMLElement {
    var name: String
    var attributes: [(name: String, value: String)] = []
    /// Character data directly inside this element, entities decoded, segments joined.
    var text = ""
    /// Byte range of the first character-data segment in the file, as written (for in-place checks).
    var textBytes: Range<Int>?
    var children: [BmapXMLElement] = []
    /// 1-based line of the start tag.
    var line: Int

    func attribute(_ name: String) -> String? { attributes.first { $0.name == name }?.value }
}

struct BmapXMLReader {
    private let bytes: [UInt8]
    private let path: String
    private var position = 0
    /// Offsets of every newline, for line numbers by binary search.
    private let newlines: [Int]
    /// Deeper nesting than this is refused rather than risking the stack (bmap files use 2 levels).
    private static let maxDepth = 32

    init(bytes: [UInt8], path: String) {
        self.bytes = bytes
        self.path = path
        self.newlines = bytes.indices.filter { bytes[$0] == UInt8(ascii: "\n") }
    }

    /// 1-based line holding byte `offset`.
    func line(at offset: Int) -> Int {
        var low = 0, high = newlines.count
        while low < high {
            let mid = (low + high) / 2
            if newlines[mid] < offset { low = mid + 1 } else { high = mid }
        }
        return low + 1
    }

    private func fail(_ message: String, at offset: Int? = nil, element: String? = nil) -> BmapError {
        BmapError(path: path, line: line(at: offset ?? position), element: element, message)
    }

    /// Parses the whole document and returns its root element.
    mutating func parseDocument() throws(BmapError) -> BmapXMLElement {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
        try skipMisc()
        guard position < bytes.count else { throw fail("not an XML file: no root element") }
        guard bytes[position] == UInt8(ascii: "<") else { throw fail("not an XML file: text before the root element") }
        let root = try parseElement(depth: 0)
        try skipMisc()
        if position < bytes.count { throw fail("content after the end of <\(root.name)>") }
        return root
    }

    private func at(_ literal: String) -> Bool {
        let utf8 = literal.utf8
        guard position + utf8.count <= bytes.count else { return false }
        return zip(bytes[position...], utf8).allSatisfy { $0 == $1 }
    }

    private mutating func skipSpace() {
        while position < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[position]) { position += 1 }
    }

    /// Moves past the next `terminator`, or fails naming what was left unterminated.
    private mutating func skip(past terminator: String, what: String) throws(BmapError) {
        let start = position
        let t = Array(terminator.utf8)
        while position + t.count <= bytes.count {
            if bytes[position] == t[0], Array(bytes[position..<position + t.count]) == t {
                position += t.count
                return
            }
            position += 1
        }
        throw fail("\(what) is not closed (missing '\(terminator)')", at: start)
    }

    /// Whitespace, comments and processing instructions outside the root element.
    private mutating func skipMisc() throws(BmapError) {
        while true {
            skipSpace()
            if at("<?") { try skip(past: "?>", what: "processing instruction") }
            else if at("<!--") { try skip(past: "-->", what: "comment") }
            else if at("<!") { throw fail("document type declarations are not supported") }
            else { return }
        }
    }

    private static func isNameByte(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || (b >= 0x30 && b <= 0x39)
            || b == UInt8(ascii: "_") || b == UInt8(ascii: "-") || b == UInt8(ascii: ".") || b == UInt8(ascii: ":") || b >= 0x80
    }

    private mutating func parseName(what: String) throws(BmapError) -> String {
        let start = position
        while position < bytes.count, Self.isNameByte(bytes[position]) { position += 1 }
        guard position > start, !(bytes[start] >= 0x30 && bytes[start] <= 0x39) else { throw fail("expected \(what)") }
        return String(decoding: bytes[start..<position], as: UTF8.self)
    }

    /// Parses from `<` of a start tag through its end tag.
    private mutating func parseElement(depth: Int) throws(BmapError) -> BmapXMLElement {
        let tagStart = position
        guard depth < Self.maxDepth else { throw fail("elements nested too deeply") }
        position += 1
        var element = BmapXMLElement(name: try parseName(what: "an element name after '<'"), line: line(at: tagStart))
        // Attributes, then '>' or '/>'.
        while true {
            let beforeSpace = position
            skipSpace()
            guard position < bytes.count else { throw fail("start tag <\(element.name) is not closed", at: tagStart) }
            if at("/>") { position += 2; return element }
            if bytes[position] == UInt8(ascii: ">") { position += 1; break }
            guard position > beforeSpace else { throw fail("expected whitespace, '>' or '/>' in the start tag", element: element.name) }
            let name = try parseName(what: "an attribute name")
            skipSpace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: "=") else {
                throw fail("attribute '\(name)' has no value", element: element.name)
            }
            position += 1
            skipSpace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") || bytes[position] == UInt8(ascii: "'") else {
                throw fail("the value of attribute '\(name)' is not quoted", element: element.name)
            }
            let quote = bytes[position]
            position += 1
            let valueStart = position
            while position < bytes.count, bytes[position] != quote {
                if bytes[position] == UInt8(ascii: "<") { throw fail("'<' in the value of attribute '\(name)'", element: element.name) }
                position += 1
            }
            guard position < bytes.count else { throw fail("the value of attribute '\(name)' is not closed", at: valueStart, element: element.name) }
            let value = try decode(valueStart..<position, element: element.name)
            position += 1
            if element.attribute(name) != nil { throw fail("attribute '\(name)' given twice", element: element.name) }
            element.attributes.append((name, value))
        }
        // Content up to the matching end tag.
        while true {
            guard position < bytes.count else { throw fail("<\(element.name)> is not closed before the end of the file", at: tagStart) }
            if at("</") {
                let endStart = position
                position += 2
                let name = try parseName(what: "an element name after '</'")
                skipSpace()
                guard name == element.name else {
                    throw fail("end tag </\(name)> does not match <\(element.name)> of line \(element.line)", at: endStart)
                }
                guard position < bytes.count, bytes[position] == UInt8(ascii: ">") else { throw fail("end tag </\(name) is not closed", at: endStart) }
                position += 1
                return element
            } else if at("<!--") {
                try skip(past: "-->", what: "comment")
            } else if at("<![CDATA[") {
                let start = position + 9
                try skip(past: "]]>", what: "CDATA section")
                element.text += String(decoding: bytes[start..<position - 3], as: UTF8.self)
            } else if at("<?") {
                try skip(past: "?>", what: "processing instruction")
            } else if at("<!") {
                throw fail("unexpected '<!' inside <\(element.name)>")
            } else if bytes[position] == UInt8(ascii: "<") {
                element.children.append(try parseElement(depth: depth + 1))
            } else {
                let start = position
                while position < bytes.count, bytes[position] != UInt8(ascii: "<") { position += 1 }
                element.text += try decode(start..<position, element: element.name)
                if element.textBytes == nil { element.textBytes = start..<position }
            }
        }
    }

    /// Character data with entity and character references replaced.
    private func decode(_ range: Range<Int>, element: String) throws(BmapError) -> String {
        guard bytes[range].contains(UInt8(ascii: "&")) else { return String(decoding: bytes[range], as: UTF8.self) }
        var out: [UInt8] = []
        var i = range.lowerBound
        while i < range.upperBound {
            guard bytes[i] == UInt8(ascii: "&") else { out.append(bytes[i]); i += 1; continue }
            guard let semicolon = bytes[i..<range.upperBound].firstIndex(of: UInt8(ascii: ";")) else {
                throw fail("'&' not followed by an entity reference", at: i, element: element)
            }
            let name = String(decoding: bytes[(i + 1)..<semicolon], as: UTF8.self)
            switch name {
            case "lt": out.append(UInt8(ascii: "<"))
            case "gt": out.append(UInt8(ascii: ">"))
            case "amp": out.append(UInt8(ascii: "&"))
            case "quot": out.append(UInt8(ascii: "\""))
            case "apos": out.append(UInt8(ascii: "'"))
            default:
                var code: UInt32?
                if name.hasPrefix("#x") { code = UInt32(name.dropFirst(2), radix: 16) }
                else if name.hasPrefix("#") { code = UInt32(name.dropFirst(1), radix: 10) }
                guard let code, let scalar = Unicode.Scalar(code) else {
                    throw fail("unknown entity '&\(name);'", at: i, element: element)
                }
                out.append(contentsOf: String(Character(scalar)).utf8)
            }
            i = semicolon + 1
        }
        return String(decoding: out, as: UTF8.self)
    }
}
