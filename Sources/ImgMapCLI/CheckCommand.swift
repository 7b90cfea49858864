import ArgumentParser
import ImgMapCore

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check tables as the kernel would load them; print the device size.",
        discussion: """
            Runs the kernel's checks (format, contiguity, target arguments, size limit) and, for every image \
            that can be opened, that each device area fits its device. Without any --dev, images that cannot \
            be opened are not size-checked (a note says which). Exit 0 when the kernel would accept the \
            tables, 65 with the first refusal (FILE:LINE: target: reason) otherwise.

            EXAMPLES:
              imgmap check disk.table
              imgmap check - --dev 8:16=disk.img < dump.txt
            """)

    @OptionGroup var tables: TableOptions

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func run() throws {
        let loaded = try tables.load(tables.devices.bindsImages ? .openAll : .lenient)
        let top = loaded.top
        for token in loaded.unopened {
            writeStderr("imgmap: note: \(token): no such image here, so its size was not checked (bind it with --dev \(token)=PATH)\n")
        }
        let segments = loaded.devices.values.reduce(0) { $0 + $1.segments.count }
        if json {
            print("{\"device\":\(jsonString(top.name)),\"sectors\":\(top.size.value),\"bytes\":\(top.size.bytes),"
                + "\"segments\":\(segments),\"tables\":\(loaded.devices.count)}")
        } else {
            print("\(top.size.value) sectors (\(top.size.bytes) bytes, \(formatBytes(top.size.bytes))): \(segments) segment\(segments == 1 ? "" : "s") in \(loaded.devices.count) table\(loaded.devices.count == 1 ? "" : "s")")
        }
    }
}
