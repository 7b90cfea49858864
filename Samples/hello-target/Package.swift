// swift-tools-version: 6.1
// The kernel tutorial's hello_target as an imgmap target: a package of its own that depends on imgmap
// by path, and an executable that is imgmap's CLI with hello_target added.
import PackageDescription

let package = Package(
    name: "hello-target",
    dependencies: [.package(name: "imgmap", path: "../..")],
    targets: [
        .target(name: "HelloTarget", dependencies: [.product(name: "ImgMapCore", package: "imgmap")]),
        .executableTarget(
            name: "hello-imgmap",
            dependencies: ["HelloTarget", .product(name: "ImgMapCLI", package: "imgmap")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
