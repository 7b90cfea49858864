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

    @Option(help: "Hash the composed image while writing it and print `DIGEST  OUT` (stderr when OUT is stdout).")
    var digest: DigestAlgorithm?

    @Option(help: ArgumentHelp("Also write the digest line to FILE (sha256sum -c format).", valueName: "FILE"))
    var digestFile: String?

    @OptionGroup var compression: CompressionOptions

    @Flag(help: "Write BGZF (gzip-compatible, seekable) instead of the raw image.")
    var compress = false

    @Option(help: "Progress on stderr: auto (a line on a terminal), never, or json lines.")
    var progress: ProgressMode = .auto

    func validate() throws {
        if digestFile != nil && digest == nil {
            throw ValidationError("--digest-file needs --digest sha256 (or sha512)")
        }
        if !compress && compression.isSet {
            throw ValidationError("--level, --threads and --index need --compress")
        }
    }

    func run() throws {
        let loaded = try tables.load()
        let map = SectorMap(top: loaded.top)
        let inputs = try inputFiles(loaded, extra: [tables.devices.dmsetupLs])
        let out = try OutputFile(path: output, inputs: inputs)
        var options = Compose.Options(
            onError: onError, sparse: sparse, digest: digest,
            progress: Progress(mode: progress, total: map.size.bytes, label: "compose"))
        if compress { options.compress = compression.writerOptions }
        do {
            let report = try Compose(map: map, options: options).run(to: out)
            if let errors { try writeTextFile(errors, report.errors.text, inputs: inputs) }
            if let index = report.index, let path = compression.index {
                try writeBinaryFile(path, index.gziBytes(), inputs: inputs)
            }
            try out.commit()
            if let hex = report.digest {
                let line = "\(hex)  \(output == "-" ? "-" : output)\n"
                if output == "-" { writeStderr(line) } else { print(line, terminator: "") }
                if let digestFile { try writeTextFile(digestFile, line, inputs: inputs) }
            }
        } catch {
            out.discard()
            if let errors, let failure = error as? MappedReadError {
                try? writeTextFile(errors, map.errorRanges().text, inputs: inputs)
                throw failure
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
    try writeBinaryFile(path, Array(text.utf8), inputs: inputs)
}

/// Writes a small file through a temporary beside it (`-`: stdout).
func writeBinaryFile(_ path: String, _ bytes: [UInt8], inputs: [ImageFile]) throws {
    let out = try OutputFile(path: path, inputs: inputs)
    var bytes = bytes
    if out.isStream {
        try bytes.withUnsafeBytes { try out.file.append($0) }
    } else {
        try bytes.withUnsafeMutableBytes { try out.file.write(UnsafeRawBufferPointer($0), at: 0) }
    }
    try out.commit()
}
