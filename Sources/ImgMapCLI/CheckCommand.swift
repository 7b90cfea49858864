import ArgumentParser
import ImgMapCore

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check tables as the kernel would load them; print the device size.",
        discussion: """
            Runs the kernel's checks (format, contiguity, target arguments, size limit) and that each device \
            area fits its device. An image a table names that does not exist is an error (66); a bare device \
            number of a `dmsetup table` dump (8:16) with no image bound is checked by the kernel's rules with \
            its sizes unchecked (a note says which). Exit 0 when the kernel would accept the \
            tables, 65 with the first refusal (FILE:LINE: target: reason) otherwise.

            EXAMPLES:
              imgmap check disk.table
              imgmap check - --dev 8:16=disk.img < dump.txt
            """)

    @OptionGroup var tables: TableOptions

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func run() throws {
        let loaded = try tables.load(.deviceNumbersUnchecked)
        let top = loaded.top
        for token in loaded.unopened {
            writeStderr("imgmap: note: \(token): a device number with no image bound, so the kernel's rules were checked but not the sizes on it (bind it with --dev \(token)=IMAGE)\n")
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
