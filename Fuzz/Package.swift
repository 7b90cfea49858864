// swift-tools-version: 6.1
// libFuzzer targets for imgmap, kept out of the main package: SwiftPM renames an executable's `main`,
// and the fuzz entry points clash with test builds. Build and run with Fuzz/run (see Fuzz/README.md).
import PackageDescription

let package = Package(
    name: "ImgMapFuzz",
    dependencies: [.package(name: "imgmap", path: "..")],
    targets: [
        .target(name: "CFuzzDriver"),
        .executableTarget(
            name: "ImgMapFuzz",
            dependencies: ["CFuzzDriver", .product(name: "ImgMapCore", package: "imgmap")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
