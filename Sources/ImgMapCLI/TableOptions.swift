import ArgumentParser
import ImgMapCore

/// The table and device options every command that reads a table shares.
struct TableOptions: ParsableArguments {
    @Argument(help: "The top device's table, in dmsetup syntax or a `dmsetup table` dump; `-` reads stdin.")
    var table: String

    @OptionGroup var devices: DeviceOptions

    /// Loads and checks the tables; images are opened unless `strictness` says otherwise.
    func load(_ strictness: TableLoader.Strictness = .openAll) throws -> TableLoader.Loaded {
        try devices.load(table: table, strictness)
    }
}

/// Lower tables and device bindings.
struct DeviceOptions: ParsableArguments {
    @Option(name: .customLong("table"), help: ArgumentHelp(
        "A lower device: NAME is usable as a device in later tables. Repeatable, in order.", valueName: "NAME=FILE"))
    var lowerTables: [String] = []

    @Option(name: .customLong("dev"), help: ArgumentHelp(
        "Bind a device name or number in the tables to an image (or to @NAME, a device of a dump). Repeatable.",
        valueName: "NAME=PATH"))
    var devices: [String] = []

    @Option(name: .customLong("dmsetup-ls"), help: ArgumentHelp(
        "`dmsetup ls` output: binds each listed device number (253:N) to the dump's device of that name.", valueName: "FILE"))
    var dmsetupLs: String?

    @Option(help: "Which device of a `dmsetup table` dump to use (default: the one no other device uses).")
    var top: String?

    /// Whether any image binding was given (`check` opens unbound images only when one was).
    var bindsImages: Bool { !devices.isEmpty || dmsetupLs != nil }

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
        if let dmsetupLs {
            let bytes = try readWholeFile(dmsetupLs)
            devs += try Bindings.parseDmsetupLs(String(decoding: bytes, as: UTF8.self), path: dmsetupLs)
        }
        for spec in devices {
            let (token, target) = try Bindings.splitAssignment(spec, option: "--dev")
            devs.append((token: token, target: target))
        }
        return Bindings(tables: tables, devices: devs, top: top)
    }

    func load(table: String, _ strictness: TableLoader.Strictness = .openAll) throws -> TableLoader.Loaded {
        var loader = TableLoader(bindings: try bindings(table: table), strictness: strictness)
        loader.targets += CLITargets.extra
        return try loader.load()
    }
}
