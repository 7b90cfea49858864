import ArgumentParser
import ImgMapCore

extension ErrorPolicy: ExpressibleByArgument {}
extension ProgressMode: ExpressibleByArgument {}
extension Compose.Sparse: ExpressibleByArgument {}
extension DigestAlgorithm: ExpressibleByArgument {}

struct ComposeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compose",
        abstract: "Write the mapped device to a file or to stdout.",
        discussion: """
            A file is written as OUT.tmp-… beside OUT and renamed only when complete; zero extents and holes in \
            the images stay holes. With `-o -` the bytes stream to stdout, zeros included.

            EXAMPLES:
              imgmap compose disk.table -o disk.img
              imgmap compose raid0.table --dev m0=m0.img --dev m1=m1.img -o - | sha256sum
              imgmap compose bad.table -o out.img --on-error zero --errors bad-sectors.txt
              imgmap compose dump.txt --top vg-root --dev 253:0=@luks-root --luks luks-root=sda2.img --passphrase-file pw -o root.img
            """)

    @OptionGroup var tables: TableOptions

    @Option(name: .shortAndLong, help: ArgumentHelp("The output file, or `-` for stdout.", valueName: "OUT"))
    var output: String

    @Option(help: "What reading an error extent does: fail (exit 74, no output) or zero (zeros, listed in --errors).")
    var onError: ErrorPolicy = .fail

    @Option(help: ArgumentHelp("Write the error ranges (`start length` in sectors, merged) to FILE.", valueName: "FILE"))
    var errors: String?

    @Option(help: "Holes in a file output: always (zero extents, image holes and all-zero 4 KiB blocks), auto (zero extents and image holes only; data copied with copy_file_range, reflinks where possible), never.")
    var sparse: Compose.Sparse = .always

    @Option(help: "Hash the device's bytes while writing them and print `DIGEST  OUT` (stderr when OUT is stdout). With --compress the hash is still of the uncompressed device, so the line names `-`: check it with `imgmap decompress OUT -o - | sha256sum -c FILE`.")
    var digest: DigestAlgorithm?

    @Option(help: ArgumentHelp("Also write the digest line to FILE (sha256sum -c format; see --digest for the name it gives).", valueName: "FILE"))
    var digestFile: String?

    @OptionGroup var compression: CompressionOptions

    @Flag(help: "Write BGZF (gzip-compatible, seekable) instead of the raw image.")
    var compress = false

    @OptionGroup var progress: ProgressOptions

    @OptionGroup var force: ForceOption

    func validate() throws {
        if digestFile != nil && digest == nil {
            throw ValidationError("--digest-file needs --digest sha256 (or sha512)")
        }
        if !compress && compression.isSet {
            throw ValidationError("--level, --threads and --index need --compress")
        }
    }

    func run() throws {
        try force.refuseTerminal(output)
        try OutputFile.refuseSameFile([("-o", output)] + [("--digest-file", digestFile), ("--index", compression.index), ("--errors", errors)]
            .compactMap { option, path in path.map { (option, $0) } })
        let loaded = try tables.load()
        let map = SectorMap(top: loaded.top)
        let inputs = try inputFiles(loaded, extra: [tables.devices.dmsetupLs])
        let out = try OutputFile(path: output, inputs: inputs)
        // Opened now, so a digest or index file that cannot be written is refused before OUT appears.
        let digestOut = try digestFile.map { try OutputFile(path: $0, inputs: inputs) }
        let indexOut = try compression.index.map { try OutputFile(path: $0, inputs: inputs) }
        let errorsOut = try errors.map { try OutputFile(path: $0, inputs: inputs) }
        var options = Compose.Options(
            onError: onError, sparse: sparse, digest: digest,
            progress: progress.make(total: map.size.bytes, label: "compose"))
        if compress { options.compress = compression.writerOptions }
        do {
            let report = try Compose(map: map, options: options).run(to: out)
            if let errorsOut { try writeText(report.errors.text, to: errorsOut) }
            if let index = report.index, let indexOut {
                try writeBytes(index.gziBytes(), to: indexOut)
            }
            try out.commit()
            if let hex = report.digest {
                // The name must be what was hashed, or `sha256sum -c` fails: a BGZF file's bytes are not the
                // device's, so its line names standard input, fed by `imgmap decompress OUT -o -`.
                let line = "\(hex)  \(output == "-" || compress ? "-" : output)\n"
                if output == "-" { writeStderr(line) } else { print(line, terminator: "") }
                if let digestOut { try writeText(line, to: digestOut) }
            }
        } catch {
            out.discard()
            if let errorsOut, error is MappedReadError {
                // The ranges that made compose fail are still worth listing.
                try? writeText(map.errorRanges().text, to: errorsOut)
            }
            throw error
        }
    }
}

/// The inputs an output must not overwrite: images, the `.gzi` beside each compress image, table files
/// and `extra` files read (`--dmsetup-ls`).
func inputFiles(_ loaded: TableLoader.Loaded, extra: [String?] = []) throws -> [ImageFile] {
    var files = loaded.leaves.map(\.image)
    let indexes = loaded.leaves.filter { !$0.backing.isRaw }.map { $0.path + ".gzi" }
    for path in loaded.tablePaths + indexes + extra.compactMap({ $0 }).filter({ $0 != "-" }) {
        if let file = try? ImageFile(openForReading: path) { files.append(file) }
    }
    return files
}

/// Writes a small text file through a temporary beside it.
func writeTextFile(_ path: String, _ text: String, inputs: [ImageFile]) throws {
    try writeBytes(Array(text.utf8), to: OutputFile(path: path, inputs: inputs))
}

/// Writes `text` to an output opened earlier (so that its path was checked before any other work) and
/// commits it.
func writeText(_ text: String, to out: OutputFile) throws {
    try writeBytes(Array(text.utf8), to: out)
}

/// Writes `bytes` to an output opened earlier and commits it.
func writeBytes(_ bytes: [UInt8], to out: OutputFile) throws {
    var bytes = bytes
    if out.isStream {
        try bytes.withUnsafeBytes { try out.file.append($0) }
    } else {
        try bytes.withUnsafeMutableBytes { try out.file.write(UnsafeRawBufferPointer($0), at: 0) }
    }
    try out.commit()
}
