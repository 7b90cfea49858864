/// The target names the Linux kernel (6.1, drivers/md) registers, for telling a target imgmap does not
/// implement from a misspelt one. Not imgmap's list: `TableLoader.targets` is (the registry and
/// whatever a library user adds), so a target that lands there stops being "not implemented".
enum KernelTargets {
    static let names: [String] = [
        "linear", "striped", "zero", "error", "crypt", "delay", "dust", "ebs", "era", "flakey", "integrity",
        "log-writes", "mirror", "multipath", "raid", "snapshot", "snapshot-origin", "snapshot-merge", "switch",
        "thin", "thin-pool", "cache", "clone", "unstriped", "verity", "writecache", "zoned", "vdo",
    ]

    /// A known name `name` is probably a misspelling of: the same but for case, or at most two edits
    /// away (for names of four or more characters). Nil when nothing is that close.
    static func closest(to name: String, among known: [String]) -> String? {
        if let same = known.first(where: { $0.lowercased() == name.lowercased() }) { return same }
        guard name.count >= 4 else { return nil }
        var best: (String, Int)?
        for candidate in known {
            let d = editDistance(name, candidate)
            if d <= 2, d < (best?.1 ?? Int.max) { best = (candidate, d) }
        }
        return best?.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8), b = Array(b.utf8)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}

/// `dmsetup status` prints lines that look like table lines (`NAME: 0 2048 linear `) but carry each
/// target's state instead of its constructor arguments. These are the shapes that cannot be a table
/// line, from the kernels' `status` functions (STATUSTYPE_INFO).
enum StatusOutput {
    static func hint(for line: TableLine) -> String? {
        let a = line.arguments
        let digits = { (s: String) in !s.isEmpty && s.utf8.allSatisfy { $0 >= 48 && $0 <= 57 } }
        let ratio = { (s: String) in
            let p = s.split(separator: "/", omittingEmptySubsequences: false)
            return p.count == 2 && p.allSatisfy { digits(String($0)) }
        }
        let health = { (s: String) in !s.isEmpty && s.utf8.allSatisfy { $0 == UInt8(ascii: "A") || $0 == UInt8(ascii: "D") || $0 == UInt8(ascii: "a") } }
        var shape: String?
        switch line.target {
        case "linear", "crypt", "snapshot-origin", "delay", "flakey", "unstriped":
            if a.isEmpty { shape = "`\(line.target)` with no arguments" }
        case "striped":
            // <#stripes> <dev>… 1 <health chars>
            if let n = a.first.flatMap({ Int($0) }), a.count == n + 3, a[n + 1] == "1", health(a[n + 2]) {
                shape = "`striped` with a health field (`\(a[n + 2])`)"
            }
        case "thin-pool", "cache":
            if a.count >= 2, digits(a[0]), ratio(a[1]) { shape = "`\(line.target)` with used/total blocks (`\(a[1])`)" }
        case "thin":
            if a.count <= 2, let first = a.first, digits(first) || first == "-" || first == "Fail" {
                shape = "`thin` with mapped sectors"
            }
        case "snapshot", "snapshot-merge":
            if a.count <= 2, let first = a.first, ratio(first) || first == "Invalid" || first == "Overflow" {
                shape = "`\(line.target)` with used/total sectors"
            }
        case "raid":
            if a.count >= 3, digits(a[1]), health(a[2]) { shape = "`raid` with a health field (`\(a[2])`)" }
        case "mirror":
            if let first = a.first, digits(first), a.contains(where: ratio) { shape = "`mirror` with a sync ratio" }
        case "verity":
            if a.count == 1, a[0] == "V" || a[0] == "C" { shape = "`verity` with its check state" }
        default:
            break
        }
        return shape.map { "\($0) is what `dmsetup status` prints, not a table line: give imgmap the output of `dmsetup table` instead" }
    }
}

/// `text` as a message quotes it: characters that do not show (controls, no-break and other Unicode
/// spaces than the plain one, zero-width and format characters) are written as
/// `\u{A0}`-style escapes, so `@ventoy\u{A0}` does not read as `@ventoy `.
public func escapedForMessage(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        let v = scalar.value
        let invisible = v < 0x20 || v == 0x7f || (v >= 0x80 && v < 0xa0) || v == 0xa0 || v == 0xad
            || (v >= 0x2000 && v <= 0x200f) || (v >= 0x2028 && v <= 0x202f) || (v >= 0x205f && v <= 0x206f)
            || v == 0x1680 || v == 0x180e || v == 0x3000 || v == 0xfeff || v == 0xfffd
            || scalar.properties.generalCategory == .format
        if v >= PathBytes.escapeBase + 0x80 {
            // A byte of a file name that is not UTF-8 (PathBytes): shown as the byte.
            out += "\\x" + String(v - PathBytes.escapeBase, radix: 16, uppercase: true)
        } else if invisible {
            out += "\\u{" + String(v, radix: 16, uppercase: true) + "}"
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    return out
}
