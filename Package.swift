// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "imgmap",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "imgmap", targets: ["imgmap"]),
        .library(name: "ImgMapCore", targets: ["ImgMapCore"]),
        .library(name: "ImgMapCLI", targets: ["ImgMapCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        // `swift package generate-documentation` (DocC for ImgMapCore); a plugin only, not linked.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // Linux calls that Swift's Glibc module hides (_GNU_SOURCE): copy_file_range, SEEK_DATA/HOLE, …
        .target(name: "CSupport", linkerSettings: [.linkedLibrary("dl")]),
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
        // crypt and LUKS: AES-XTS/CBC and PBKDF2 from OpenSSL's libcrypto, Argon2 from libargon2.
        .systemLibrary(name: "CCrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CArgon2", providers: [.apt(["libargon2-dev"])]),
        .target(
            name: "ImgMapCore",
            dependencies: [
                "CSupport", "CZlib", "CCrypto", "CArgon2",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The commands, as a library: a package with its own targets builds imgmap's CLI around them.
        .target(
            name: "ImgMapCLI",
            dependencies: [
                "ImgMapCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "imgmap", dependencies: ["ImgMapCLI"]),
        .testTarget(
            name: "ImgMapCoreTests",
            dependencies: ["ImgMapCore"],
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
