import ArgumentParser
import ImgMapCore

@main
struct IMGMap: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "imgmap", abstract: "Device-mapper tables, offline.")
}
