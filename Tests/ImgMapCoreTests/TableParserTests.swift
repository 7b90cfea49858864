import Testing

@testable import ImgMapCore

// dmsetup's line parser (trim, comments, `%llu %llu %s`, `#` cut) and the kernel's `dm_split_args`.

/// The segment lines of a plain (single-device) table.
private func lines(_ text: String) throws -> [TableLine] {
    try lines(Array(text.utf8))
}

private func lines(_ bytes: [UInt8]) throws -> [TableLine] {
    let tables = try TableParser.parse(bytes, path: "t.table", defaultName: "top")
    #expect(tables.count == 1)
    #expect(tables.first?.name == "top")
    return tables.first?.lines ?? []
}

/// The parse error for `text`, as printed.
private func parseError(_ text: String) -> String? {
    do {
        _ = try TableParser.parse(Array(text.utf8), path: "t.table", defaultName: "top")
        return nil
    } catch {
        return error.description
    }
}

struct TableParserTests {
    // MARK: comments and blank lines

    @Test func commentAndBlankLinesAreSkippedButCountedInLineNumbers() throws {
        let parsed = try lines("# header\n\n0 8 zero\n   # indented comment\n\t\n8 8 zero\n# trailer\n")
        #expect(parsed.map(\.number) == [3, 6])
        #expect(parsed.map(\.start) == [0, 8])
    }

    @Test func inlineCommentIsCutFromTheArguments() throws {
        let parsed = try lines("0 8 linear A 5   # the first disk\n")
        #expect(parsed[0].arguments == ["A", "5"])
    }

    @Test func commentGluedToAnArgumentIsCut() throws {
        let parsed = try lines("0 8 linear A 900#x")
        #expect(parsed[0].arguments == ["A", "900"])
    }

    @Test func commentAfterTheTargetNameLeavesNoArguments() throws {
        let parsed = try lines("0 8 zero # nothing here")
        #expect(parsed[0].target == "zero")
        #expect(parsed[0].arguments == [])
    }

    @Test func hashInsideTheTargetNameIsPartOfTheName() throws {
        let parsed = try lines("0 8 zero#c")
        #expect(parsed[0].target == "zero#c")
        #expect(loadError("0 8 zero#c")?.description.hasPrefix("t.table:1: unknown target type: `zero#c`") == true)
    }

    @Test func tableWithOnlyCommentsHasNoTargets() {
        #expect(parseError("# nothing\n\n   \n")
            == "t.table: no targets: the table has no segment lines (a table needs at least one `<start> <length> <target> <args…>` line)")
    }

    @Test func emptyTableHasNoTargets() {
        #expect(parseError("")?.hasPrefix("t.table: no targets") == true)
        #expect(loadError("")?.exitStatus == .dataError)
    }

    // MARK: whitespace

    @Test func tabsSeparateFields() throws {
        let parsed = try lines("0\t8\tlinear\tA\t5")
        #expect(parsed[0] == TableLine(number: 1, start: 0, length: 8, target: "linear", arguments: ["A", "5"]))
    }

    @Test func crlfLineEndingsAreTrimmed() throws {
        let parsed = try lines("0 8 linear A 5\r\n\r\n8 8 zero\r\n")
        #expect(parsed.map(\.arguments) == [["A", "5"], []])
        #expect(parsed.map(\.target) == ["linear", "zero"])
        #expect(parsed.map(\.number) == [1, 3])
    }

    @Test func leadingAndTrailingWhitespaceIsTrimmed() throws {
        let parsed = try lines("   0 8 linear A 5 \t \n\t 8 8 zero   ")
        #expect(parsed.map(\.arguments) == [["A", "5"], []])
    }

    @Test func lastLineNeedsNoNewline() throws {
        #expect(try lines("0 8 zero\n8 8 error").map(\.target) == ["zero", "error"])
    }

    @Test func targetNameNeedsNoSpaceAfterTheLength() throws {
        // `%llu %llu %s`: the length ends at the first non-digit, and `%s` takes the rest of the word.
        let parsed = try lines("0 8zero")
        #expect(parsed[0].length == 8)
        #expect(parsed[0].target == "zero")
    }

    // MARK: numbers (`%llu`)

    @Test func startAndLengthAcceptPlusAndLeadingZeros() throws {
        let parsed = try lines("+0 0100 zero\n0100 +0096 zero")
        #expect(parsed.map(\.start) == [0, 100])
        #expect(parsed.map(\.length) == [100, 96])
    }

    @Test func minusWrapsModulo2To64() throws {
        let parsed = try lines("-1 1 zero\n-18446744073709551608 8 zero")
        #expect(parsed[0].start == UInt64.max)
        #expect(parsed[1].start == 8)
    }

    @Test func wrappedNegativeStartCanStillBeContiguous() throws {
        let loaded = try loadTables("0 8 zero\n-18446744073709551608 8 zero")
        #expect(loaded.top.size == Sector(16))
    }

    @Test func overflowingNumberSaturatesAt2To64Minus1() throws {
        let parsed = try lines("99999999999999999999999 1 zero\n0 -99999999999999999999999 zero")
        #expect(parsed[0].start == UInt64.max)
        #expect(parsed[1].length == UInt64.max)
    }

    @Test func wrappingStartIsATooLargeDevice() {
        #expect(loadError("-1 1 zero")?.description
            == "t.table:1: too large device: the segment would end past sector 18014398509481983 (2^54 − 1), the kernel's limit")
    }

    @Test func negativeLengthIsATooLargeDevice() {
        #expect(loadError("0 -1 zero")?.description.hasPrefix("t.table:1: too large device") == true)
    }

    @Test func saturatedLengthIsATooLargeDevice() {
        let error = loadError("0 99999999999999999999999 zero")
        #expect(error?.description.hasPrefix("t.table:1: too large device") == true)
        #expect(error?.exitStatus == .dataError)
    }

    // MARK: Invalid format

    @Test func lineWithoutTargetIsInvalidFormat() {
        #expect(parseError("0 8 zero\n8 8\n")
            == "t.table:2: Invalid format: no target type (a segment line is `<start> <length> <target> <args…>` in 512-byte sectors)")
    }

    @Test func lineWithoutLengthIsInvalidFormat() {
        #expect(parseError("0")?.hasPrefix("t.table:1: Invalid format: length is not a number") == true)
        #expect(parseError("0 zero")?.hasPrefix("t.table:1: Invalid format: length is not a number") == true)
    }

    @Test func nonNumericStartIsInvalidFormat() {
        #expect(parseError("\n\nx 8 zero")?.hasPrefix("t.table:3: Invalid format: start is not a number") == true)
        #expect(parseError("0x10 8 zero")?.hasPrefix("t.table:1: Invalid format") == true)
        #expect(parseError("- 8 zero")?.hasPrefix("t.table:1: Invalid format: start is not a number") == true)
    }

    @Test func invalidFormatIsADataError() {
        #expect(loadError("zero 0 8")?.exitStatus == .dataError)
    }

    // MARK: arguments (`dm_split_args`)

    // libdevmapper escapes every backslash before the ioctl, so the kernel's unquoting in dm_split_args
    // gives it back: a backslash is an ordinary character. The three rules below are the real kernel's
    // answers (dm-oracle, Linux 6.1, asked on 2026-11-26).

    @Test func backslashIsAnOrdinaryCharacter() throws {
        let parsed = try lines(#"0 8 error a\ b c\\d \x"#)
        #expect(parsed[0].arguments == [#"a\"#, "b", #"c\\d"#, #"\x"#])
    }

    @Test func backslashBeforeACommentStaysLiteral() throws {
        // dmsetup cuts at `#` first.
        let parsed = try lines("0 8 error a\\#b")
        #expect(parsed[0].arguments == [#"a\"#])
    }

    @Test func backslashSpaceIsTwoArgumentsForTheKernel() {
        // `linear A \ 5`: three arguments (`A`, `\`, `5`), "Invalid argument count".
        let error = loadError(#"0 100 linear A \ 5"#, devices: ["A": "/dev/null"])
        #expect(error?.description.hasPrefix("t.table:1: linear: Invalid argument count") == true, "\(String(describing: error))")
    }

    @Test func backslashInAnOffsetIsNotADigit() {
        // `linear A 1\0`: the offset `1\0` is "Invalid device sector" (not 10).
        let error = loadError(#"0 100 linear A 1\0"#, devices: ["A": "/dev/null"])
        #expect(error?.description.hasPrefix("t.table:1: linear: Invalid device sector") == true, "\(String(describing: error))")
    }

    @Test func backslashBeforeASpaceEndsTheDeviceName() {
        // `linear A\ 5`: the device is `A\`, which nothing binds: "Device lookup failed".
        let error = loadError(#"0 100 linear A\ 5"#)
        #expect(error?.description.hasPrefix(#"t.table:1: linear: Device lookup failed: A\: "#) == true, "\(String(describing: error))")
    }

    @Test func noBreakSpaceSeparatesKernelArguments() throws {
        let parsed = try lines(Array("0 8 error a".utf8) + [0xa0] + Array("b".utf8))
        #expect(parsed[0].arguments == ["a", "b"])
    }

    @Test func noBreakSpaceIsNotADmsetupFieldSeparator() {
        // dmsetup's isspace is the C locale's: 0xA0 ends the length's digits but does not separate fields.
        let bytes = Array("0 8".utf8) + [0xa0] + Array("zero".utf8)
        #expect(throws: TableError.self) {
            var loader = TableLoader(bindings: Bindings(tables: [.init(name: nil, path: "t.table")]))
            loader.readTable = { _ in bytes }
            _ = try loader.load()
        }
    }

    @Test func runsOfWhitespaceBetweenArgumentsAreOneSeparator() throws {
        let parsed = try lines("0 8 striped  2 \t 4   A 0\tB\t\t0")
        #expect(parsed[0].arguments == ["2", "4", "A", "0", "B", "0"])
    }

    // MARK: `dmsetup table` dumps

    @Test func dumpLinesAreGroupedByDevice() throws {
        let dump = """
            vg-data: 0 100 linear 8:16 0
            vg-data: 100 50 linear 8:32 2048
            vg-root: 0 200 linear 253:0 0
            vg-data: 150 10 zero
            """
        let tables = try TableParser.parse(Array(dump.utf8), path: "dump.txt", defaultName: "top")
        #expect(tables.map(\.name) == ["vg-data", "vg-root"])
        #expect(tables[0].lines.map(\.number) == [1, 2, 4])
        #expect(tables[0].lines.map(\.arguments) == [["8:16", "0"], ["8:32", "2048"], []])
        #expect(tables[1].lines == [TableLine(number: 3, start: 0, length: 200, target: "linear", arguments: ["253:0", "0"])])
    }

    @Test func dumpLineWithoutDevicePrefixIsInvalidFormat() {
        #expect(parseError("a: 0 8 zero\n8 8 zero")?.hasPrefix("t.table:2: Invalid format: expected `NAME: <start> <length> <target> …`") == true)
    }

    @Test func plainTableLineIsNotMistakenForADumpLine() throws {
        let parsed = try lines("0 8 linear 8:16 0")
        #expect(parsed[0].arguments == ["8:16", "0"])
    }

    // MARK: exact messages through the loader

    @Test func stripedErrorNamesFileLineTargetAndPhrase() {
        let table = "# raid0\n\n0 1000 striped 2 128 A 0 B 0\n"
        #expect(loadError(table)?.description
            == "t.table:3: striped: Target length not divisible by chunk size: each of the 2 stripes holds 500 sectors, not a multiple of 128")
    }

    @Test func unknownTargetCloseToAKnownOneGetsATypoHint() {
        #expect(loadError("0 8 Linear A 0")?.description
            == "t.table:1: unknown target type: `Linear` (did you mean `linear`? target names are case-sensitive)")
    }
}
