import ArgumentParser
import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

/// imgmap's command line, as a library: `imgmap` itself is `IMGMap.main()`, and a package that adds
/// its own targets gets the same commands with `IMGMap.main(extraTargets: [MyTarget.self])`.
public struct IMGMap: ParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "imgmap",
        abstract: "Linux device-mapper tables over image files, offline and without root.",
        discussion: """
            A table is what `dmsetup create` accepts: `<start> <length> <target> <args…>` in 512-byte \
            sectors, one segment per line. Targets: linear, striped, zero, error, compress (a BGZF \
            image), crypt (dm-crypt; keys by --key or from a LUKS header), raid (raid0/1/4/5/6/10 with \
            their parity), mdraid (imgmap's own: md arrays in layouts dm-raid lacks), mirror, multipath, snapshot-origin, snapshot, snapshot-merge (LVM snapshots: the COW's exception store is \
            read), thin-pool and thin (thin pools: the metadata's btrees are read), cache (dm-cache: the \
            metadata's mapping array is read; writes are refused), verity (each data block checked against \
            its hash tree; read-only). Devices are image files: write their paths, or bind names with --dev NAME=PATH; \
            stacked devices come from --table NAME=FILE. What compose writes is byte-identical to what \
            the kernel presents as /dev/mapper/NAME.

            A table file may also be what a machine printed: `dmsetup table` (NAME: lines; `NAME:` alone \
            is a device with no table), `dmsetup table -v`, `kpartx -l` or `kpartx -av`. Only the devices \
            the top device uses are loaded. Bind disk numbers with --dev 8:2=disk.img and dm devices with \
            --dev 253:1=@NAME or --dmsetup-ls FILE; an image copied from /dev/mapper/NAME stands in for a \
            device imgmap cannot build: --dev 253:3=that.img. A binding no loaded table uses, or a name \
            bound twice, is a usage error.

            EXAMPLES:
              imgmap compose disk.table -o disk.img
              imgmap compose raid.table --dev m0=a.img -o - | zstd > raid.zst
              imgmap map lv.table --table pv=pv.table --dev sda=sda.img --json
              imgmap verify disk.table disk.img && imgmap manifest disk.table -o disk.bmap
              dmsetup table | imgmap check - --dev 8:16=disk.img
              imgmap compose vm.table --table pool=pool.table --dev meta=tmeta.img --dev data=tdata.img -o vm.img
              imgmap probe nas*.img > layout.txt && imgmap compose layout.txt --top vg0-data -o data.img
              imgmap compose dump.txt --top vg-home --dev 8:2=sda2.img --dev 253:3=home.img -o home.img

            EXIT STATUS:
              0        success
              1        a "no" answer: verify found differences
              64       usage error
              65       invalid table or data
              66       an input cannot be opened
              73       the output cannot be created
              74       I/O error, including reading an error target
              130, 143 interrupted by SIGINT, SIGTERM (partial output removed)
              141      stdout closed early (e.g. `| head`)
            """,
        version: "0.1.0",
        subcommands: [ComposeCommand.self, MapCommand.self, CheckCommand.self, VerifyCommand.self, ManifestCommand.self, ScatterCommand.self, ServeCommand.self, ProbeCommand.self, LuksCommand.self, CompressCommand.self, DecompressCommand.self]
    )

    /// Parses the command line and runs the command; never returns. `extraTargets` are usable in every
    /// table the commands read, after imgmap's own.
    public static func main(extraTargets: [any Target.Type]) -> Never {
        CLITargets.$extra.withValue(extraTargets) { main() }
        Glibc.exit(0)
    }

    public static func main() {
        // A write to a closed pipe returns EPIPE instead of killing the process; a file over
        // RLIMIT_FSIZE returns EFBIG instead of SIGXFSZ. Both become clean errors.
        signal(SIGPIPE, SIG_IGN)
        signal(SIGXFSZ, SIG_IGN)
        // argv as bytes: CommandLine.arguments would replace a file name's non-UTF-8 bytes with U+FFFD.
        let arguments = (1..<Int(CommandLine.argc)).map { PathBytes.string(cString: CommandLine.unsafeArgv[$0]!) }
        if let usage = FrontDoor.precheck(arguments) {
            writeStderr(usage + "\n")
            Glibc.exit(ExitStatus.usage.rawValue)
        }
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            flushStandardOutput()
        } catch {
            exit(withFailure: error)
        }
    }

    /// Flushes what `print` buffered: a stdout that cannot take it (`> /dev/full`) is exit 74, never a
    /// silent 0 (141 for a reader gone away, as for the image writes).
    static func flushStandardOutput() {
        guard fflush(nil) != 0 else { return }
        let code = errno
        if code == EPIPE { Glibc.exit(141) }
        writeStderr("imgmap: <stdout>: write: \(errnoDescription(code))\n")
        Glibc.exit(ExitStatus.ioError.rawValue)
    }

    /// Reports `error` on stderr and exits with its sysexits status.
    static func exit(withFailure error: Error) -> Never {
        if let code = error as? ExitCode {
            // A command's own "no" answer (verify: different), already reported on stdout.
            flushStandardOutput()
            Glibc.exit(code.rawValue)
        }
        if let failure = error as? ImgMapFailure {
            if let io = failure as? IOFailure, io.errno == EPIPE, io.path == "<stdout>" {
                // The reader went away (`| head`): stop quietly, as a pipeline stage does.
                Glibc.exit(141)
            }
            writeStderr("imgmap: \(failure.description)\n")
            Glibc.exit(failure.exitStatus.rawValue)
        }
        let code = exitCode(for: error)
        if code == .success || code.rawValue == 0 {
            let text = fullMessage(for: error)
            if !text.isEmpty { print(text) }
            Glibc.exit(0)
        }
        writeStderr(FrontDoor.reworded(fullMessage(for: error)) + "\n")
        // ArgumentParser's validation and parse errors are usage errors.
        Glibc.exit(code.rawValue == 1 ? ExitStatus.usage.rawValue : code.rawValue)
    }
}

/// The target types the commands' tables may use beyond imgmap's own, set by `IMGMap.main(extraTargets:)`
/// for the run (a task-local value: no global state).
enum CLITargets {
    @TaskLocal static var extra: [any Target.Type] = []
}
