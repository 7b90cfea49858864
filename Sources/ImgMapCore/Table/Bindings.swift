/// What the command line says about devices: the tables (lower ones in order, the top last), the
/// `--dev` bindings, `dmsetup ls` numbers, and which device is the top.
public struct Bindings: Sendable {
    /// A table to read: its device name (nil for the positional table) and file (`-` for stdin).
    public struct TableFile: Sendable {
        /// The device name (`--table NAME=`), nil for the positional table.
        public var name: String?
        /// The file (`-` for stdin).
        public var path: String
        /// The table of device `name` in `path`.
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
    /// `--key NAME=FILE`: raw key bytes for the device NAME's table (nil: for every device without
    /// its own), for targets that need a key the table does not hold (crypt). Read when loading.
    public var keys: [(device: String?, path: String)] = []
    /// `--luks NAME=IMAGE`: device NAME is the opened LUKS volume on IMAGE (the crypt line its header
    /// describes, keyed by the volume key its passphrase unlocks). Replaces a dump's own line for NAME.
    public var luks: [(device: String, image: String)] = []
    /// `--passphrase-file [NAME=]FILE` (keyFile false) and `--key-file [NAME=]FILE` (true): what unlocks
    /// the `--luks` device NAME (nil: every one without its own).
    public var luksSecrets: [(device: String?, path: String, keyFile: Bool)] = []
    /// `--dmsetup-ls FILE` entries (`253:1` → `@NAME`): a listing of the machine's devices, so only the
    /// file as a whole must be of use; a `--dev` for the same number wins.
    public var listed: [(token: String, target: String)]
    /// The `--dmsetup-ls` file, for messages.
    public var listedFrom: String?

    /// What the command line gave; keys and LUKS bindings are set afterwards.
    public init(tables: [TableFile], devices: [(token: String, target: String)] = [], top: String? = nil,
                listed: [(token: String, target: String)] = [], listedFrom: String? = nil) {
        self.tables = tables
        self.devices = devices
        self.top = top
        self.listed = listed
        self.listedFrom = listedFrom
    }

    /// Parses a `NAME=VALUE` option; the name may not be empty.
    public static func splitAssignment(_ text: String, option: String) throws(PlainFailure) -> (String, String) {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex, text.index(after: eq) != text.endIndex else {
            throw PlainFailure("\(option) \(text): expected NAME=VALUE", .usage)
        }
        return (String(text[..<eq]), String(text[text.index(after: eq)...]))
    }

    /// Reads `dmsetup ls` output (`NAME<TAB>(253:1)` or the older `(253, 1)`) into `--dev 253:1=@NAME`
    /// bindings. Lines that say "No devices found" or are blank are skipped. Output copied from a web
    /// page or a mail may have a no-break (or another Unicode) space where dmsetup printed a tab: any
    /// Unicode white space separates the name from the number.
    public static func parseDmsetupLs(_ text: String, path: String) throws(PlainFailure) -> [(token: String, target: String)] {
        var result: [(token: String, target: String)] = []
        let isSpace = { (c: Character) in c.isWhitespace }
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = Substring(raw).drop(while: isSpace).reversed().drop(while: isSpace).reversed()
            let trimmed = String(line)
            if trimmed.isEmpty || trimmed == "No devices found" { continue }
            let bad = PlainFailure("\(path):\(index + 1): expected `NAME (MAJOR:MINOR)` as `dmsetup ls` prints it, not `\(escapedForMessage(trimmed))`", .dataError)
            guard let open = trimmed.lastIndex(of: "("), trimmed.hasSuffix(")") else { throw bad }
            let name = String(trimmed[..<open].reversed().drop(while: isSpace).reversed())
            let numbers = trimmed[trimmed.index(after: open)..<trimmed.index(before: trimmed.endIndex)]
                .split(whereSeparator: { $0 == ":" || $0 == "," }).map { String($0.filter { !$0.isWhitespace }) }
            guard !name.isEmpty, numbers.count == 2, numbers.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 48 && $0 <= 57 } }) else {
                throw bad
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
