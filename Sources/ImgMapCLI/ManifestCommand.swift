import ArgumentParser
import ImgMapCore

struct ManifestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manifest",
        abstract: "Write a bmap 2.0 file (bmaptool's block map with SHA-256 checksums) for a table's device or an image.",
        discussion: """
            For a table, the mapped blocks are the device's data: image data through linear/striped extents. \
            Zero extents and holes in the images are unmapped; blocks of written zeros stay mapped unless \
            --zeros-as-holes. For --image, data is found with SEEK_DATA/SEEK_HOLE, as `bmaptool create` does, \
            and the output matches bmaptool's byte for byte. The result is accepted by `bmaptool copy --bmap` \
            and by `imgmap verify --bmap`.

            EXAMPLES:
              imgmap manifest disk.table -o disk.img.bmap
              imgmap compose disk.table -o disk.img
              bmaptool copy --bmap disk.img.bmap disk.img /dev/sdX
              imgmap manifest --image disk.img -o disk.img.bmap
            """)

    @Argument(help: "The top device's table (or give --image).")
    var table: String?

    @OptionGroup var devices: DeviceOptions

    @Option(help: ArgumentHelp("Make the bmap of this image file instead of a table's device.", valueName: "IMAGE"))
    var image: String?

    @Option(name: .shortAndLong, help: ArgumentHelp("The bmap file to write, or `-` for stdout.", valueName: "OUT"))
    var output: String

    @Flag(help: "Leave all-zero 4 KiB blocks of data unmapped too.")
    var zerosAsHoles = false

    @Option(help: "Error extents: fail (exit 74) or zero (hashed as zeros).")
    var onError: ErrorPolicy = .fail

    @OptionGroup var progress: ProgressOptions

    func validate() throws {
        if (table == nil) == (image == nil) {
            throw ValidationError("give either a TABLE or --image IMAGE")
        }
    }

    func run() throws {
        let text: String
        var inputs: [ImageFile] = []
        if let image {
            let file = try ImageFile(openForReading: image)
            inputs = [file]
            text = try createBmap(image: file, zerosAsHoles: zerosAsHoles,
                                  progress: progress.make(total: try file.byteSize(), label: "manifest"))
        } else {
            let loaded = try devices.load(table: table!)
            inputs = try inputFiles(loaded, extra: [devices.dmsetupLs])
            let map = SectorMap(top: loaded.top)
            text = try Manifest(map: map, onError: onError, zerosAsHoles: zerosAsHoles)
                .bmap(path: table!, progress: progress.make(total: map.size.bytes, label: "manifest"))
        }
        try writeTextFile(output, text, inputs: inputs)
    }
}
