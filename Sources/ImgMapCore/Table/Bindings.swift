/// What the command line says about devices: the tables (lower ones in order, the top last), the
/// `--dev` bindings, `dmsetup ls` numbers, and which device is the top.
public struct Bindings: Sendable {
    /// A table to read: its device name (nil for the positional table) and file (`-` for stdin).
    public struct TableFile: Sendable {
        public var name: String?
        public var path: String
        public init(name: String?, path: String) {
            self.name = name
            self.path = path
        }
    }

    /// Lower tables (`--table NAME=FILE`) in order, then the top (positional) table.
    public var tables: [TableFile]
    /// `--dev TOKEN=PATH` or `--dev TOKEN=@NAME` (a device of a `dmsetup table` dump), in order.
    public var devices: [(token: String, target: String)]
    /// `--top NAME`: which device of a dump is the one to compose.
    public var top: String?

    public init(tables: [TableFile], devices: [(token: String, target: String)] = [], top: String? = nil) {
        self.tables = tables
        self.devices = devices
        self.top = top
    }

    /// Parses a `NAME=VALUE` option; the name may not be empty.
    public static func splitAssignment(_ text: String, option: String) throws(PlainFailure) -> (String, String) {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex, text.index(after: eq) != text.endIndex else {
            throw PlainFailure("\(option) \(text): expected NAME=VALUE", .usage)
        }
        return (String(text[..<eq]), String(text[text.index(after: eq)...]))
    }

    /// Reads `dmsetup ls` output (`NAME<TAB>(253:1)` or the older `(253, 1)`) into `--dev 253:1=@NAME`
    /// bindings. Lines that say "No devices found" or are blank are skipped.
    public static func parseDmsetupLs(_ text: String, path: String) throws(PlainFailure) -> [(token: String, target: String)] {
        var result: [(token: String, target: String)] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: " \t\r")
            if line.isEmpty || line == "No devices found" { continue }
            guard let open = line.lastIndex(of: "("), line.hasSuffix(")") else {
                throw PlainFailure("\(path):\(index + 1): expected `NAME (MAJOR:MINOR)` as `dmsetup ls` prints it", .dataError)
            }
            let name = line[..<open].trimmingCharacters(in: " \t")
            let numbers = line[line.index(after: open)..<line.index(before: line.endIndex)]
                .split(whereSeparator: { $0 == ":" || $0 == "," }).map { $0.trimmingCharacters(in: " ") }
            guard !name.isEmpty, numbers.count == 2, numbers.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) }) else {
                throw PlainFailure("\(path):\(index + 1): expected `NAME (MAJOR:MINOR)` as `dmsetup ls` prints it", .dataError)
            }
            result.append((token: "\(numbers[0]):\(numbers[1])", target: "@" + name))
        }
        return result
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}
