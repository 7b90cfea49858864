import ArgumentParser
import Foundation
import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

/// BGZF writer settings shared by `compose --compress` and `compress`.
struct CompressionOptions: ParsableArguments {
    @Option(name: [.customShort("l"), .long], help: "Deflate level, 0 (store) to 9 (default: 6).")
    var level: Int?

    @Option(help: "Compression threads (default: the number of cores).")
    var threads: Int?

    @Option(help: ArgumentHelp("Also write the member index (bgzip's .gzi) to FILE.", valueName: "FILE"))
    var index: String?

    var isSet: Bool { level != nil || threads != nil || index != nil }

    var writerOptions: BGZFWriter.Options {
        var options = BGZFWriter.Options()
        if let level { options.level = level }
        if let threads { options.threads = threads }
        options.recordIndex = index != nil
        return options
    }

    func validate() throws {
        if let level, !(0...9).contains(level) { throw ValidationError("--level \(level): give 0 to 9") }
        if let threads {
            do { try Limits.checkThreads(threads) } catch { throw ValidationError(error.message) }
        }
    }
}

struct CompressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compress",
        abstract: "Compress an image to BGZF: gzip-compatible, seekable, usable by the compress target.",
        discussion: """
            BGZF (SAMv1 §4.1) is a series of gzip members of at most 64 KiB of input each; `gzip -dc` reads it, \
            `bgzip` reads and seeks it, and imgmap tables read it with `compress` segments:
              0 2048 compress disk.img.gz 0
            Members are compressed in parallel on all cores; blocks of zeros cost nothing. Deflate comes from \
            libdeflate when libdeflate.so.0 is installed, else zlib (IMGMAP_DEFLATE=zlib|libdeflate chooses).

            EXAMPLES:
              imgmap compress disk.img -o disk.img.gz --index disk.img.gz.gzi
              dd if=/dev/sdb bs=1M | imgmap compress - -o sdb.img.gz
            """)

    @Argument(help: "The image to compress, or `-` for stdin.")
    var input: String

    @Option(name: .shortAndLong, help: ArgumentHelp("The BGZF file to write, or `-` for stdout.", valueName: "OUT"))
    var output: String

    @OptionGroup var compression: CompressionOptions

    @OptionGroup var force: ForceOption

    @OptionGroup var progress: ProgressOptions

    func run() throws {
        try OutputFile.refuseSameFile([("-o", output)] + (compression.index.map { [("--index", $0)] } ?? []))
        try force.refuseTerminal(output)
        let (source, isStream) = try openImage(input)
        let out = try OutputFile(path: output, inputs: [source])
        let indexOut = try compression.index.map { try OutputFile(path: $0, inputs: [source]) }
        do {
            let writer = try BGZFWriter(output: out.file, options: compression.writerOptions)
            writer.progress = progress.make(total: isStream ? nil : try source.byteSize(), label: "compress")
            let kind = try source.status().st_mode & S_IFMT
            let read = try writer.write(from: source, sequential: kind != S_IFREG && kind != S_IFBLK)
            let index = try writer.finish()
            writer.progress?.finish(read)
            if let index, let indexOut { try writeBytes(index.gziBytes(), to: indexOut) }
            try out.commit()
        } catch {
            out.discard()
            throw error
        }
    }
}

struct DecompressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decompress",
        abstract: "Decompress a BGZF image, whole or a byte range of it.",
        discussion: """
            Uses IN.gzi when present, else walks the member headers; only the members the range needs are \
            inflated, on all cores, and each member's CRC32 and size are checked.

            EXAMPLES:
              imgmap decompress disk.img.gz -o disk.img
              imgmap decompress disk.img.gz -o - --offset 1048576 --length 4096 | xxd | head
            """)

    @Argument(help: "The BGZF file, or `-` for stdin.")
    var input: String

    @Option(name: .shortAndLong, help: ArgumentHelp("The file to write, or `-` for stdout.", valueName: "OUT"))
    var output: String

    @Option(help: "First uncompressed byte to write.")
    var offset: UInt64 = 0

    @Option(help: "How many bytes to write (default: to the end).")
    var length: UInt64?

    @Option(help: "Inflate threads (default: the number of cores).")
    var threads: Int?

    @OptionGroup var force: ForceOption

    @OptionGroup var progress: ProgressOptions

    func run() throws {
        if let threads { try Limits.checkThreads(threads) }
        try force.refuseTerminal(output)
        let source = try input == "-" ? seekableStdin() : seekable(try ImageFile(openForReading: input))
        // IN.gzi is read too: writing over it would leave IN with an index that disagrees.
        let index = input == "-" ? nil : try? ImageFile(openRegularFile: input + ".gzi")
        let out = try OutputFile(path: output, inputs: [source] + (index.map { [$0] } ?? []))
        do {
            var cores = 1
            if let threads { cores = max(1, threads) } else { cores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
            try decompressImage(input: source, output: out.file, offset: offset, length: length, threads: cores,
                                progress: { progress.make(total: $0, label: "decompress") })
            try out.commit()
        } catch {
            out.discard()
            throw error
        }
    }
}

/// Standard input as a file that can be read by offset (see ``seekable(_:)``).
func seekableStdin() throws -> ImageFile {
    try seekable(ImageFile(descriptor: 0, path: "<stdin>", writable: false, owned: false))
}

/// `file` itself when it can be read by offset (a regular file or a block device, `< x.gz`), else (a
/// pipe, a FIFO such as `<(cat x.gz)`, a character device) copied first into an unlinked temporary file
/// in $TMPDIR, which costs disk space for the compressed bytes but lets the members be inflated in
/// parallel as from any file.
func seekable(_ file: ImageFile) throws -> ImageFile {
    var st = stat()
    if fstat(file.fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG || st.st_mode & S_IFMT == S_IFBLK {
        return file
    }
    let directory = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
    var template = Array("\(directory)/imgmap-stdin-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else {
        throw IOFailure(path: directory, operation: "create a temporary file for stdin", errno: errno, exitStatus: .cannotCreate)
    }
    unlink(String(cString: template))  // gone when the process ends, however it ends
    let spool = ImageFile(descriptor: fd, path: file.path, writable: true)
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
    defer { buffer.deallocate() }
    while true {
        let count = try file.readSequential(into: buffer)
        if count == 0 { break }
        try spool.append(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
    }
    return spool
}
