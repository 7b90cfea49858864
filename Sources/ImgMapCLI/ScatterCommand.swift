import ArgumentParser
import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

extension WriteErrorPolicy: ExpressibleByArgument {}

struct ScatterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scatter",
        abstract: "Write an image through the table into its member images (the inverse of compose).",
        discussion: """
            Writes INPUT to the mapped device from sector --seek, as writing to /dev/mapper/NAME would: linear and \
            striped segments write into their images, zero segments drop the data, error segments fail. With a \
            regular INPUT everything is checked before the first byte is written: the input fits, no error \
            extent is touched (unless --on-error skip), every member can be opened for writing. A partial last \
            sector is merged with the sector's current content. Members are fsynced at the end; a failure part \
            way reports which device ranges were written.

            EXAMPLES:
              imgmap scatter raid0.table --dev m0=a.img --dev m1=b.img --dev m2=c.img x.img
              imgmap scatter raid0.table --create flat.img   # creates missing members
              imgmap scatter disk.table edited-disk.img --dry-run
              zcat part.img.gz | imgmap scatter disk.table - --seek 2048
              imgmap scatter lv.table --luks pv=luks.img --passphrase-file pw new-lv.img   # encrypted as dm-crypt would
            """)

    @OptionGroup var tables: TableOptions

    @Argument(help: "The image to write, or `-` for stdin.")
    var input: String

    @Option(help: ArgumentHelp("Start writing at this sector of the mapped device.", valueName: "SECTORS"))
    var seek: UInt64 = 0

    @Option(help: "What writing onto an error extent does: fail (refuse before writing) or skip (write the rest).")
    var onError: WriteErrorPolicy = .fail

    @Option(help: ArgumentHelp("Write the skipped error ranges (`start length`, device sectors) to FILE.", valueName: "FILE"))
    var errors: String?

    @Flag(help: "Print what would be written where, and write nothing.")
    var dryRun = false

    @Flag(help: "Create missing member images (sparse) with the size the tables need.")
    var create = false

    @Flag(help: "Skip holes in a regular-file INPUT (only right when the members hold zeros there).")
    var sparse = false

    @OptionGroup var progress: ProgressOptions

    func validate() throws {
        if input == "-" && ([tables.table] + tables.devices.lowerTables.map { $0.split(separator: "=", maxSplits: 1).last.map(String.init) ?? "" }).contains("-") {
            throw ValidationError("the table and INPUT cannot both come from stdin (`-`)")
        }
    }

    func run() throws {
        var loaded = try tables.load(create ? .lenient : .openAll)
        var planned: [String: Sector] = [:]
        if create {
            planned = loaded.requiredSizesOfUnopenedImages()
            loaded = try tables.load(.planned(planned))
        }
        let map = SectorMap(top: loaded.top)

        let inputFile: ImageFile
        var inputBytes: UInt64?
        var isStream = true
        if input == "-" {
            inputFile = ImageFile(descriptor: 0, path: "<stdin>", writable: false, owned: false)
        } else {
            inputFile = try ImageFile(openForReading: input)
            let st = try inputFile.status()
            if (st.st_mode & S_IFMT) == S_IFDIR {
                throw IOFailure(path: input, operation: "open", errno: EISDIR, exitStatus: .noInput)
            }
            if (st.st_mode & S_IFMT) == S_IFREG || (st.st_mode & S_IFMT) == S_IFBLK {
                inputBytes = try inputFile.byteSize()
                isStream = false
            }
        }
        if let st = try? inputFile.status(), (st.st_mode & S_IFMT) == S_IFREG {
            for leaf in loaded.leaves {
                if let s = try? leaf.image.status(), s.st_dev == st.st_dev, s.st_ino == st.st_ino {
                    throw PlainFailure("\(input) is also the member image \(leaf.path): scatter cannot read and write the same file", .usage)
                }
            }
        }

        let options = Scatter.Options(seek: Sector(seek), onError: onError, sparse: sparse,
                                      progress: progress.make(total: inputBytes, label: "scatter"))
        var scatter = Scatter(map: map, options: options)
        let range = try scatter.check(inputBytes: inputBytes)
        if dryRun {
            let sink = TextSink(file: ImageFile(descriptor: 1, path: "<stdout>", writable: true, owned: false))
            for (path, size) in planned.sorted(by: { $0.key < $1.key }) {
                try sink.write("create \(path): \(size.value) sectors (\(size.bytes) bytes, sparse)\n")
            }
            try scatter.plan(range: range, to: sink)
            try sink.flush()
            return
        }

        // The errors file is opened (as a temporary beside it) before any member is created or written,
        // so a path that cannot be written, or that is a member or the input, is refused while nothing
        // has changed.
        let errorsOut = try errors.map {
            try OutputFile(path: $0, inputs: try inputFiles(loaded, extra: [tables.devices.dmsetupLs]) + [inputFile])
        }
        for (path, size) in planned.sorted(by: { $0.key < $1.key }) {
            try createSparseImage(path, size: size)
        }
        if !planned.isEmpty {
            // Load again with the new images open, so the writes go through real descriptors; the
            // LUKS volumes unlocked by the load before are not unlocked again.
            loaded = try tables.load(unlocked: loaded.volumeKeys)
            scatter = Scatter(map: SectorMap(top: loaded.top), options: options)
        }

        // Every member is opened read-write before the first write, so a read-only one is refused up front.
        var writers: [ObjectIdentifier: ImageFile] = [:]
        for leaf in scatter.leavesWritten(in: range) {
            do {
                writers[ObjectIdentifier(leaf)] = try ImageFile(openForReading: leaf.path, writable: true)
            } catch {
                throw IOFailure(path: leaf.path, operation: "open for writing", errno: error.errno, exitStatus: .cannotCreate,
                                hint: "nothing was written")
            }
        }
        let report = try scatter.run(input: inputFile, inputIsStream: isStream, inputBytes: inputBytes, writers: writers)
        if let errorsOut {
            try writeText(report.skipped.text, to: errorsOut)
        }
    }

    /// Creates a member image of `size` sectors: a sparse file, never replacing an existing one.
    func createSparseImage(_ path: String, size: Sector) throws {
        guard size.value <= maxDeviceSectors else {
            throw PlainFailure("\(path): the tables need \(size.value) sectors of it, more than any file can hold", .cannotCreate)
        }
        let fd = PathCalls.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw IOFailure(path: path, operation: "create", errno: errno, exitStatus: .cannotCreate) }
        let file = ImageFile(descriptor: fd, path: path, writable: true)
        do {
            try file.truncate(to: size.bytes)
            try file.close()
        } catch {
            // Too big for this filesystem (EFBIG) or no room: the new, empty member is not left behind.
            PathCalls.unlink(path)
            throw IOFailure(path: path, operation: "create (\(size.bytes) bytes)", errno: error.errno, exitStatus: .cannotCreate)
        }
    }
}
