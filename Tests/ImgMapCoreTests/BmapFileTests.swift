import Foundation
import Testing
@testable import ImgMapCore

@Suite struct BmapFileTests {
    /// A bmap of a 20-block image (the last block 4000 bytes) with ranges 0, 2-4 and 10-19 on lines
    /// 48, 49 and 50; `<BlockMap>` is on line 47, `<BmapFileChecksum>` on 42.
    static let image = bmapTestBytes(count: 19 * 4096 + 4000, seed: 11)
    static let text: String = {
        var builder = try! BmapBuilder(imageSize: UInt64(image.count))
        for (first, last) in [(0, 0), (2, 4), (10, 19)] {
            try! builder.beginRange(first: UInt64(first))
            image[first * 4096..<min((last + 1) * 4096, image.count)].withUnsafeBytes { builder.update($0) }
            try! builder.endRange(last: UInt64(last))
        }
        return try! builder.finish()
    }()

    /// Parses `text` and returns the error's text, or "parsed" when there was none.
    func parseError(_ text: String) -> String {
        do {
            _ = try BmapFile(text: text, path: "t.bmap")
            return "parsed"
        } catch {
            #expect(error.exitStatus == .dataError)
            return error.description
        }
    }

    @Test func rangesKeepTheirLinesAndChecksums() throws {
        let bmap = try BmapFile(text: Self.text, path: "t.bmap")
        #expect(bmap.ranges.map(\.line) == [48, 49, 50])
        #expect(bmap.ranges[1].checksum == sha256Hex(Array(Self.image[8192..<20480])))
        #expect(bmap.byteRange(of: bmap.ranges[2]) == 40960..<81824)
    }

    @Test func unclosedElementIsRefusedWithItsLine() {
        let text = Self.text.replacingOccurrences(of: "    </BlockMap>\n", with: "")
        #expect(parseError(text) == "t.bmap:51: end tag </bmap> does not match <BlockMap> of line 47")
    }

    @Test func textThatIsNotXMLIsRefused() {
        #expect(parseError("hello") == "t.bmap:1: not an XML file: text before the root element")
        #expect(parseError("<bmap version=\"2.0\">") == "t.bmap:1: <bmap> is not closed before the end of the file")
        #expect(parseError("<bmap version=2.0></bmap>") == "t.bmap:1: <bmap>: the value of attribute 'version' is not quoted")
    }

    @Test func wrongBmapFileChecksumIsRefused() {
        // An edit without recomputing the file's checksum.
        let message = parseError(Self.text.replacingOccurrences(of: "> 2-4 <", with: "> 2-3 <"))
        #expect(message.hasPrefix("t.bmap:42: <BmapFileChecksum>: checksum mismatch: the file hashes to "))
        let declared = try! BmapFile(text: Self.text).fileChecksum!
        #expect(message.hasSuffix(", it says \(declared)"))
    }

    @Test func rangePastBlocksCountIsRefused() {
        let text = resealBmap(Self.text.replacingOccurrences(of: "> 10-19 <", with: "> 10-20 <"))
        #expect(parseError(text) == "t.bmap:50: <Range>: range 10-20 goes past the last block 19 (BlocksCount 20)")
    }

    @Test func overlappingRangesAreRefused() {
        let text = resealBmap(Self.text.replacingOccurrences(of: "> 2-4 <", with: "> 2-10 <"))
        #expect(parseError(text) == "t.bmap:50: <Range>: range 10-19 overlaps or comes before range 2-10 of line 49")
    }

    @Test func reversedRangeIsRefused() {
        let text = resealBmap(Self.text.replacingOccurrences(of: "> 2-4 <", with: "> 4-2 <"))
        #expect(parseError(text) == "t.bmap:49: <Range>: range 4-2 is reversed")
    }

    @Test func mappedBlocksCountMustMatchTheRanges() {
        let text = resealBmap(Self.text.replacingOccurrences(of: "> 2-4 <", with: "> 2-3 <"))
        #expect(parseError(text) == "t.bmap:35: <MappedBlocksCount>: says 14 blocks, the ranges hold 13")
    }

    @Test func numbersMustBeDecimal() {
        let text = resealBmap(Self.text.replacingOccurrences(of: "<BlockSize> 4096 <", with: "<BlockSize> 0x1000 <"))
        #expect(parseError(text) == "t.bmap:29: <BlockSize>: '0x1000' is not a decimal number")
    }

    @Test func blocksCountMustFitImageSize() {
        let text = resealBmap(Self.text.replacingOccurrences(of: "<BlocksCount> 20 <", with: "<BlocksCount> 21 <"))
        #expect(parseError(text) == "t.bmap:32: <BlocksCount>: image size does not match blocks count (81824 bytes != 21 blocks * 4096 bytes)")
    }

    @Test func majorVersionThreeIsRefusedAndOnePointFourAccepted() {
        let v3 = resealBmap(Self.text.replacingOccurrences(of: "<bmap version=\"2.0\">", with: "<bmap version=\"3.0\">"))
        #expect(parseError(v3) == "t.bmap:24: <bmap>: bmap format version 3.0 is not supported (only 1.x and 2.x)")
        let v14 = resealBmap(Self.text.replacingOccurrences(of: "<bmap version=\"2.0\">", with: "<bmap version=\"1.4\">"))
        #expect(parseError(v14) == "parsed")
    }

    @Test func missingElementIsNamed() {
        let text = resealBmap(Self.text.replacingOccurrences(of: "    <ChecksumType> sha256 </ChecksumType>\n", with: ""))
        #expect(parseError(text) == "t.bmap:24: <bmap>: no <ChecksumType> element")
    }

    @Test func unknownChecksumTypeIsRefused() {
        let text = resealBmap(Self.text.replacingOccurrences(of: "> sha256 <", with: "> md5 <"))
        #expect(parseError(text) == "t.bmap:38: <ChecksumType>: checksum type 'md5' is not supported (sha1, sha256, sha512)")
    }

    @Test func format13UsesSha1Names() throws {
        let image = bmapTestBytes(count: 8192, seed: 2)
        let rangeSHA1 = { () -> String in
            var h = BmapHasher(.sha1)
            image[4096...].withUnsafeBytes { h.update($0) }
            return h.finalizeHex()
        }()
        let zeros = String(repeating: "0", count: 40)
        let template = """
            <?xml version="1.0" ?>
            <bmap version="1.3">
                <ImageSize> 8192 </ImageSize>
                <BlockSize> 4096 </BlockSize>
                <BlocksCount> 2 </BlocksCount>
                <MappedBlocksCount> 1 </MappedBlocksCount>
                <BmapFileSHA1> \(zeros) </BmapFileSHA1>
                <BlockMap>
                    <Range sha1="\(rangeSHA1)"> 1 </Range>
                </BlockMap>
            </bmap>

            """
        var h = BmapHasher(.sha1)
        Array(template.utf8).withUnsafeBytes { h.update($0) }
        let text = template.replacingOccurrences(of: zeros, with: h.finalizeHex())
        let bmap = try BmapFile(text: text)
        #expect(bmap.checksumType == .sha1)
        #expect(bmap.ranges == [BmapRange(first: 1, last: 1, checksum: rangeSHA1, line: 9)])
    }

    @Test func commentsEntitiesCDATAAndSingleQuotesAreRead() throws {
        let zeros = String(repeating: "0", count: 64)
        let template = """
            <?xml version='1.0' encoding='utf-8'?>
            <!-- hand-written -->
            <bmap version='2.1'>
                <ImageSize><!-- bytes -->8192</ImageSize>
                <BlockSize>4096</BlockSize><BlocksCount><![CDATA[2]]></BlocksCount>
                <MappedBlocksCount> &#49; </MappedBlocksCount>
                <ChecksumType>sha256</ChecksumType>
                <Future note="a &amp; b"/>
                <BmapFileChecksum>\(zeros)</BmapFileChecksum>
                <BlockMap>
                    <!-- one range -->
                    <Range>1</Range>
                </BlockMap>
            </bmap>
            """
        var h = BmapHasher(.sha256)
        Array(template.utf8).withUnsafeBytes { h.update($0) }
        let bmap = try BmapFile(text: template.replacingOccurrences(of: zeros, with: h.finalizeHex()))
        #expect(bmap.versionMinor == 1)
        #expect(bmap.blocksCount == 2)
        #expect(bmap.ranges == [BmapRange(first: 1, last: 1, checksum: nil, line: 12)])
    }

    @Test func everyTruncationOfAValidFileIsRefusedWithoutCrashing() {
        let bytes = Array(Self.text.utf8)
        for length in 0..<bytes.count - 1 {
            #expect(throws: BmapError.self) { try BmapFile(bytes: Array(bytes[0..<length])) }
        }
    }
}
