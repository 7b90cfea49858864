import ArgumentParser
import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check that an image is what its table says; report every range that differs.",
        discussion: """
            Compares IMAGE with the mapped device without writing anything. Every differing range is reported, \
            merged, with where its expected bytes come from:
              sectors 2048+16 differ — table.txt:3 linear A (a.img) sector 7000
            then a summary line. Ranges that are holes or zeros on both sides are not read. Error extents are \
            reported as unverifiable unless --on-error zero, which expects zeros there.

            With --parity TABLE (no image), every row of each raid4/5/6 segment (raid or mdraid) is read from its members and \
            each row whose P or Q does not match its data is reported with the member and sector. For raid6 a \
            wrong layout, chunk size or member order fails nearly every row (Q weighs each member by its \
            place); raid4/5's P is the XOR of the members, which balances in any order and chunk size, so \
            there it finds a stale or foreign member or a wrong data offset, not the layout. A degraded \
            raid4/5 cannot be checked (exit 1).

            With --check-paths TABLE (no image), each multipath segment is read through every one of its \
            paths (they are the same LUN) and compared with the path reads use, the first of the initial \
            group; each run of differing sectors is reported with both paths' names, the path sectors and \
            the device sectors: path p1 (group 1 path 2) differs from p0 at sectors 2048+8 (device sectors \
            2048+8).

            With --bmap FILE.bmap IMAGE, the image is checked against a bmap 2.0 file instead: its \
            BmapFileChecksum, its size and the SHA-256 of every mapped range.

            EXIT STATUS: 0 identical · 1 different (or unverifiable) · 64/65/66/74 as for every command.

            EXAMPLES:
              imgmap verify disk.table disk.img
              imgmap compose disk.table -o - | gzip | zcat | imgmap verify disk.table -
              imgmap verify raid0.table --dev m0=a.img --dev m1=b.img flat.img --json
              imgmap verify --bmap disk.img.bmap disk.img
              imgmap verify --parity nas.table --dev d0=disk0.img --dev d1=disk1.img --dev d2=disk2.img
              imgmap verify --check-paths lun.table --dev sda=sda.img --dev sdb=sdb.img
            """)

    @Argument(help: ArgumentHelp("The table, then the image to check (`-` for stdin); with --bmap, only the image.",
                                 valueName: "TABLE IMAGE"))
    var paths: [String] = []

    @Option(help: ArgumentHelp("Check IMAGE against this bmap file instead of a table.", valueName: "FILE.bmap"))
    var bmap: String?

    @Flag(help: "Check the parity of the table's raid4/5/6 (and mdraid) segments instead of an image (give only the table).")
    var parity = false

    @Flag(help: "Compare every path of the table's multipath segments with the one reads use (give only the table).")
    var checkPaths = false

    @OptionGroup var devices: DeviceOptions

    @Option(help: "Error extents: fail (report them as unverifiable) or zero (expect zeros there).")
    var onError: ErrorPolicy = .fail

    @Flag(help: "One JSON object per differing range, then a summary object.")
    var json = false

    @OptionGroup var progress: ProgressOptions

    func validate() throws {
        if checkPaths {
            guard paths.count == 1, bmap == nil, !parity else {
                throw ValidationError("with --check-paths, give only the table: imgmap verify --check-paths TABLE --dev …")
            }
            return
        }
        if parity {
            guard paths.count == 1, bmap == nil else {
                throw ValidationError("with --parity, give only the table: imgmap verify --parity TABLE --dev …")
            }
            return
        }
        if bmap != nil {
            guard paths.count == 1, paths[0] != "-" else {
                throw ValidationError("with --bmap, give one image file: imgmap verify --bmap FILE.bmap IMAGE")
            }
            return
        }
        guard paths.count == 2 else {
            throw ValidationError("give the table and the image: imgmap verify TABLE IMAGE")
        }
        if paths[0] == "-" && paths[1] == "-" {
            throw ValidationError("the table and the image cannot both come from stdin")
        }
    }

    func run() throws {
        if let bmap { return try verifyAgainstBmap(bmap) }
        if parity { return try verifyParity() }
        if checkPaths { return try verifyPaths() }
        let loaded = try devices.load(table: paths[0])
        let map = SectorMap(top: loaded.top)
        let (image, isStream) = try openImage(paths[1])
        let sink = TextSink(file: ImageFile(descriptor: 1, path: "<stdout>", writable: true, owned: false))
        let options = Verify.Options(onError: onError, progress: progress.make(total: map.size.bytes, label: "verify"))
        let report = try Verify(map: map, options: options).run(image: image, isStream: isStream) { mismatch in
            try sink.write((json ? mismatch.json : mismatch.description) + "\n")
        }
        try sink.write((json ? report.json : report.summary) + "\n")
        try sink.flush()
        if !report.identical { throw ExitCode(ExitStatus.no.rawValue) }
    }
}

extension VerifyCommand {
    func verifyParity() throws {
        let loaded = try devices.load(table: paths[0])
        let sink = TextSink(file: ImageFile(descriptor: 1, path: "<stdout>", writable: true, owned: false))
        let report = try ParityCheck(top: loaded.top).run { mismatch in
            try sink.write((json ? "{\"row\":\(mismatch.row),\"parity\":\"\(mismatch.kind)\",\"member\":\(mismatch.member),\"sector\":\(mismatch.memberSector)}" : mismatch.description) + "\n")
        }
        try sink.write((json ? "{\"rows\":\(report.rows),\"mismatches\":\(report.mismatches)}" : report.summary) + "\n")
        try sink.flush()
        if report.mismatches > 0 || report.rows == 0 { throw ExitCode(ExitStatus.no.rawValue) }
    }

    func verifyPaths() throws {
        let loaded = try devices.load(table: paths[0])
        let sink = TextSink(file: ImageFile(descriptor: 1, path: "<stdout>", writable: true, owned: false))
        let report = try PathCheck(top: loaded.top).run { m in
            try sink.write((json
                ? "{\"line\":\(m.line),\"path\":\(jsonString(m.path)),\"group\":\(m.group),\"index\":\(m.index),\"reference\":\(jsonString(m.reference)),"
                    + "\"sector\":\(m.pathSector),\"count\":\(m.count),\"device_sector\":\(m.deviceSector)}"
                : m.description) + "\n")
        }
        try sink.write((json
            ? "{\"segments\":\(report.segments),\"paths\":\(report.paths),\"sectors\":\(report.sectors),\"mismatches\":\(report.mismatches),\"differing_sectors\":\(report.differingSectors)}"
            : report.summary) + "\n")
        try sink.flush()
        // Nothing compared is not "the paths agree".
        if report.mismatches > 0 || report.segments == 0 { throw ExitCode(ExitStatus.no.rawValue) }
    }

    func verifyAgainstBmap(_ path: String) throws {
        let manifest = try BmapFile(contentsOf: path)
        let image = try ImageFile(openForReading: paths[0])
        let mismatches = try verifyBmap(bmap: manifest, image: image)
        let sink = TextSink(file: ImageFile(descriptor: 1, path: "<stdout>", writable: true, owned: false))
        for mismatch in mismatches {
            if json {
                switch mismatch {
                case let .imageSize(expected, actual):
                    try sink.write("{\"kind\":\"size\",\"expected\":\(expected),\"actual\":\(actual)}\n")
                case let .range(range, bytes, expected, actual):
                    try sink.write("{\"kind\":\"range\",\"first\":\(range.first),\"last\":\(range.last),\"start_byte\":\(bytes.lowerBound),"
                        + "\"end_byte\":\(bytes.upperBound),\"expected\":\(jsonString(expected)),\"actual\":\(jsonString(actual))}\n")
                }
            } else {
                try sink.write("\(paths[0]): \(mismatch.description)\n")
            }
        }
        // A range without a checksum (bmap 1.0–1.2 may leave them out) was not checked: never say it matched.
        let unchecked = manifest.ranges.filter { $0.checksum == nil }.count
        let summary = mismatches.isEmpty
            ? (unchecked == 0
                ? "identical: \(manifest.ranges.count) ranges (\(manifest.mappedBlocksCount) blocks) match \(path)"
                : "identical as far as checked: \(manifest.ranges.count - unchecked) of \(manifest.ranges.count) ranges match \(path); "
                    + "\(unchecked) carry no checksum and were not checked")
            : "different: \(mismatches.count) mismatch\(mismatches.count == 1 ? "" : "es") against \(path)"
        try sink.write(json ? "{\"identical\":\(mismatches.isEmpty),\"mismatches\":\(mismatches.count)}\n" : summary + "\n")
        try sink.flush()
        if !mismatches.isEmpty { throw ExitCode(ExitStatus.no.rawValue) }
    }
}

/// Opens an image to read: `-` is stdin (a stream); a pipe or character device is read as a stream too.
func openImage(_ path: String) throws -> (ImageFile, isStream: Bool) {
    if path == "-" { return (ImageFile(descriptor: 0, path: "<stdin>", writable: false, owned: false), true) }
    let file = try ImageFile(openForReading: path)
    let mode = try file.status().st_mode & S_IFMT
    if mode == S_IFDIR { throw IOFailure(path: path, operation: "open", errno: EISDIR, exitStatus: .noInput) }
    return (file, !(mode == S_IFREG || mode == S_IFBLK))
}
