import Foundation
import Testing
@testable import ImgMapCore

/// Our bmap against bmap-tools' own `bmaptool` (Debian package bmap-tools). Skipped when it is missing.
@Suite struct BmapToolInteropTests {
    static let bmaptool = toolPath("bmaptool")

    @Test(.enabled(if: bmaptool != nil, "bmaptool not installed (apt-get install bmap-tools)"))
    func createMatchesBmaptoolCreateByteForByte() throws {
        let scratch = BmapScratch()
        let imagePath = scratch.file("image.img")
        _ = try makeBmapTestImage(at: imagePath)
        let theirs = try runTool([Self.bmaptool!, "create", imagePath])
        #expect(theirs.status == 0, "bmaptool create failed: \(theirs.error)")
        let ours = try createBmap(image: ImageFile(openForReading: imagePath))
        #expect(ours == theirs.output)
    }
}
