import ArgumentParser
import ImgMapCore

struct MapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "map",
        abstract: "Print the resolved sector map: where each range of the mapped device comes from.",
        discussion: """
            One line per extent, through every stacked layer down to the images, in 512-byte sectors: \
            START LENGTH TARGET DEVICE OFFSET TABLE:LINE FILE. TARGET and TABLE:LINE name the deepest table line \
            (the one naming the image, or the zero/error line). With --json, one object per line (here on two):
              {"start":0,"length":2048,"target":"linear","device":"A",
               "file":"a.img","offset":0,"table":"t.txt","line":3}
            Zero and error extents have null device, file and offset; error extents have "error":true.

            EXAMPLES:
              imgmap map raid0.table --dev m0=a.img --dev m1=b.img --dev m2=c.img
              imgmap map lv.table --table pv=pv.table --json | jq 'select(.target=="error")'
            """)

    @OptionGroup var tables: TableOptions

    @Flag(help: "JSON lines instead of columns.")
    var json = false

    func run() throws {
        let loaded = try tables.load()
        let sink = TextSink(file: ImageFile(descriptor: 1, path: "<stdout>", writable: true, owned: false))
        try MapListing(map: SectorMap(top: loaded.top), format: json ? .json : .columns).write(to: sink)
        try sink.flush()
    }
}
