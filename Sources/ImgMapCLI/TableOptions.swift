import ArgumentParser
import ImgMapCore

/// The table and device options every command that reads a table shares.
struct TableOptions: ParsableArguments {
    @Argument(help: "The top device's table, in dmsetup syntax or a `dmsetup table` dump; `-` reads stdin.")
    var table: String

    @OptionGroup var devices: DeviceOptions

    /// Loads and checks the tables; images are opened unless `strictness` says otherwise.
    func load(_ strictness: TableLoader.Strictness = .openAll, unlocked: [String: SecretBytes] = [:]) throws -> TableLoader.Loaded {
        try devices.load(table: table, strictness, unlocked: unlocked)
    }
}

/// Lower tables and device bindings.
struct DeviceOptions: ParsableArguments {
    @Option(name: .customLong("table"), help: ArgumentHelp(
        "A lower device: NAME is usable as a device in later tables. Repeatable, in order.", valueName: "NAME=FILE"))
    var lowerTables: [String] = []

    @Option(name: .customLong("dev"), help: ArgumentHelp(
        "Bind a device name or number the tables use to an image (or to @NAME, a device of a dump); an image stands in for a device imgmap cannot build. Repeatable; each must be used.",
        valueName: "NAME=PATH"))
    var devices: [String] = []

    @Option(name: .customLong("dmsetup-ls"), help: ArgumentHelp(
        "`dmsetup ls` output: binds each listed device number (253:N) to the dump's device of that name.", valueName: "FILE"))
    var dmsetupLs: String?

    @Option(help: "Which device of a `dmsetup table` dump to use (default: the one no other device uses).")
    var top: String?

    @Option(name: .customLong("key"), help: ArgumentHelp(
        "The key of device NAME's crypt lines: FILE holds the raw key bytes (a dump shows keys as zeros). Without NAME=, for every device. Repeatable.",
        valueName: "[NAME=]FILE"))
    var keys: [String] = []

    @Option(name: .customLong("luks"), help: ArgumentHelp(
        "Device NAME is the LUKS1/LUKS2 volume on IMAGE, opened with --passphrase-file or --key-file: the crypt line its header describes (as `imgmap luks` prints it), keyed by the unlocked volume key. Replaces a dump's own crypt line for NAME; `--dev 253:N=@NAME` stacks on it. Repeatable; each must be used.",
        valueName: "NAME=IMAGE"))
    var luks: [String] = []

    @Option(name: .customLong("passphrase-file"), help: ArgumentHelp(
        "The passphrase of --luks device NAME (without NAME=, of every one without its own); one trailing newline is not part of it.",
        valueName: "[NAME=]FILE"))
    var passphraseFiles: [String] = []

    @Option(name: .customLong("key-file"), help: ArgumentHelp(
        "A key file for --luks device NAME: every byte is the passphrase, as cryptsetup's --key-file (at most 8 MiB).",
        valueName: "[NAME=]FILE"))
    var keyFiles: [String] = []

    func bindings(table: String) throws -> Bindings {
        var tables: [Bindings.TableFile] = []
        for spec in lowerTables {
            let (name, path) = try Bindings.splitAssignment(spec, option: "--table")
            tables.append(.init(name: name, path: path))
        }
        tables.append(.init(name: nil, path: table))
        if tables.filter({ $0.path == "-" }).count > 1 {
            throw PlainFailure("only one table can come from stdin (`-`)", .usage)
        }
        var devs: [(token: String, target: String)] = []
        var listed: [(token: String, target: String)] = []
        if let dmsetupLs {
            let bytes = try readWholeFile(dmsetupLs)
            listed = try Bindings.parseDmsetupLs(String(decoding: bytes, as: UTF8.self), path: dmsetupLs)
        }
        for spec in devices {
            let (token, target) = try Bindings.splitAssignment(spec, option: "--dev")
            devs.append((token: token, target: target))
        }
        var bindings = Bindings(tables: tables, devices: devs, top: top, listed: listed, listedFrom: dmsetupLs)
        for spec in keys {
            if spec.contains("=") {
                let (name, path) = try Bindings.splitAssignment(spec, option: "--key")
                bindings.keys.append((device: name, path: path))
            } else {
                bindings.keys.append((device: nil, path: spec))
            }
        }
        for spec in luks {
            let (name, path) = try Bindings.splitAssignment(spec, option: "--luks")
            bindings.luks.append((device: name, image: path))
        }
        // `NAME=` is a prefix only when NAME is a --luks device: a file name may hold `=` itself.
        let luksNames = Set(bindings.luks.map(\.device))
        for (specs, keyFile) in [(passphraseFiles, false), (keyFiles, true)] {
            for spec in specs {
                if let eq = spec.firstIndex(of: "="), luksNames.contains(String(spec[..<eq])) {
                    bindings.luksSecrets.append((device: String(spec[..<eq]), path: String(spec[spec.index(after: eq)...]), keyFile: keyFile))
                } else {
                    bindings.luksSecrets.append((device: nil, path: spec, keyFile: keyFile))
                }
            }
        }
        return bindings
    }

    func load(table: String, _ strictness: TableLoader.Strictness = .openAll, unlocked: [String: SecretBytes] = [:]) throws -> TableLoader.Loaded {
        var loader = TableLoader(bindings: try bindings(table: table), strictness: strictness)
        loader.targets += CLITargets.extra
        loader.unlockedVolumeKeys = unlocked
        return try loader.load()
    }
}
