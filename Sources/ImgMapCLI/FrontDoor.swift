import ArgumentParser
import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

/// What the command line is checked for before ArgumentParser sees it, and how every error is worded.
/// Everything here reads the subcommand list and each subcommand's help, so a new subcommand or option
/// is covered without changes here.
enum FrontDoor {
    /// Every subcommand, by the name typed on the command line.
    static var commands: [(name: String, type: ParsableCommand.Type)] {
        IMGMap.configuration.subcommands.flatMap { type in
            ([type.configuration.commandName ?? type._commandName] + type.configuration.aliases).map { (name: $0, type: type) }
        }
    }

    /// The usage error, if any, that `arguments` (without the program name) make before parsing: no
    /// subcommand, a subcommand that does not exist, `help` for one that does not exist, or an unknown
    /// long option close to a real one (ArgumentParser reports a missing required option first, which
    /// hides the typo in `--ouput out.img`).
    static func precheck(_ arguments: [String]) -> String? {
        guard let first = arguments.first else {
            return "imgmap: no command given\n" + rootUsage
        }
        if first.hasPrefix("-") { return nil }  // --help, --version, --generate-completion-script
        if first == "help" {
            if arguments.count > 1, !arguments[1].hasPrefix("-"), lookUp(arguments[1]) == nil {
                return "imgmap: help: " + unknownCommand(arguments[1]) + "\n" + rootUsage
            }
            return nil
        }
        guard var command = lookUp(first) else {
            return "imgmap: " + unknownCommand(first) + "\n" + rootUsage
        }
        // A command with subcommands of its own (`imgmap luks dump …`): its options are the deepest one's.
        var rest = arguments.dropFirst()
        while let next = rest.first, let nested = command.configuration.subcommands.first(where: {
            ([$0._commandName] + $0.configuration.aliases).contains(next)
        }) {
            command = nested
            rest = rest.dropFirst()
        }
        if !command.configuration.subcommands.isEmpty { return nil }  // a group: ArgumentParser answers
        let known = longOptions(of: command)
        for argument in rest {
            if argument == "--" { break }
            guard argument.hasPrefix("--"), argument.count > 2 else { continue }
            let name = String(argument.split(separator: "=", maxSplits: 1)[0])
            if known.contains(name) { continue }
            var message = "imgmap: unknown option '\(name)'"
            if let close = closest(to: name, in: known) { message += "; did you mean '\(close)'?" }
            return message + "\n" + subcommandUsage(command)
        }
        return nil
    }

    static func lookUp(_ name: String) -> ParsableCommand.Type? {
        commands.first { $0.name == name }?.type
    }

    /// `'compse' is not an imgmap command; did you mean compose?`
    static func unknownCommand(_ name: String) -> String {
        let names = commands.map(\.name)
        if let close = closest(to: name, in: names) {
            return "'\(name)' is not an imgmap command; did you mean \(close)?"
        }
        return "'\(name)' is not an imgmap command (commands: \(names.joined(separator: ", ")))"
    }

    static var rootUsage: String {
        "Usage: imgmap <command> [<options>]  (commands: \(commands.map(\.name).joined(separator: ", ")))\n"
            + "  See 'imgmap --help' or 'imgmap help <command>' for more information."
    }

    static func subcommandUsage(_ command: ParsableCommand.Type) -> String {
        let name = command._commandName
        return "Usage: " + IMGMap.usageString(for: command) + "\n  See 'imgmap \(name) --help' for more information."
    }

    /// The long option names a subcommand's help lists (its OPTIONS lines, `-o, --output <OUT>`), plus
    /// ArgumentParser's own.
    static func longOptions(of command: ParsableCommand.Type) -> [String] {
        var names = ["--help", "--version", "--generate-completion-script"]
        for line in IMGMap.helpMessage(for: command, includeHidden: true, columns: 1000).split(separator: "\n") {
            var rest = line.drop { $0 == " " }
            guard line.count - rest.count == 2 else { continue }  // option lines are indented by two
            if rest.hasPrefix("-"), !rest.hasPrefix("--"), let comma = rest.firstIndex(of: ",") {
                rest = rest[rest.index(after: comma)...].drop { $0 == " " }
            }
            guard rest.hasPrefix("--") else { continue }
            let name = rest.prefix { $0.isLetter || $0.isNumber || $0 == "-" }
            names.append(String(name))
        }
        return names
    }

    /// The candidate nearest to `word` when it is near enough to be a typo of it: at most one edit for
    /// short words, two for longer ones, a swap of neighbours counting as one.
    static func closest(to word: String, in candidates: [String]) -> String? {
        let limit = word.count <= 4 ? 1 : 2
        var best: (String, Int)?
        for candidate in candidates {
            let d = editDistance(word, candidate)
            if d <= limit, d < (best?.1 ?? Int.max) { best = (candidate, d) }
        }
        return best?.0
    }

    /// Optimal string alignment distance (Levenshtein plus adjacent transposition).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }

    /// ArgumentParser's message with imgmap's one prefix: `Error: X` becomes `imgmap: X`.
    static func reworded(_ message: String) -> String {
        message.hasPrefix("Error: ") ? "imgmap: " + message.dropFirst("Error: ".count) : message
    }
}

/// `--force`: what a command that writes binary output adds, so that `-o -` on a terminal is refused
/// as gzip and bgzip refuse it.
struct ForceOption: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Write binary output even to a terminal.")
    var force = false

    /// Refuses (64) binary output to a terminal: `-` when stdout is one, or a path naming a terminal.
    func refuseTerminal(_ output: String) throws {
        guard !force else { return }
        var tty = false
        if output == "-" {
            tty = isatty(1) == 1
        } else {
            // Only an existing character device can be a terminal; nothing else is opened here.
            var st = stat()
            if PathCalls.stat(output, &st) == 0, st.st_mode & S_IFMT == S_IFCHR {
                let fd = PathCalls.open(output, O_WRONLY | O_NOCTTY | O_CLOEXEC | O_NONBLOCK)
                if fd >= 0 {
                    tty = isatty(fd) == 1
                    close(fd)
                }
            }
        }
        if tty {
            let name = output == "-" ? "standard output" : output
            throw PlainFailure("\(name) is a terminal: refusing to write binary data to it (redirect it, e.g. `> out.img`, or pass --force)", .usage)
        }
    }
}

/// `--progress`: what a command that can run long adds; `make` gives the shared Progress engine.
struct ProgressOptions: ParsableArguments {
    @Option(help: "Progress on stderr: auto (a line with rate and time left on a terminal, nothing otherwise), never, or json (lines of done, total, elapsed, rate).")
    var progress: ProgressMode = .auto

    /// nil when nothing is to be shown; `total` nil when the size is not known (a pipe).
    func make(total: UInt64?, label: String) -> Progress? {
        Progress(mode: progress, total: total, label: label)
    }
}
