import Foundation
import Testing

@testable import ImgMapCore

/// Real `dmsetup table` dumps and the other outputs users paste in their place (issue 11): only the
/// devices the top needs are built, names as dmsetup prints them, devices with no table, `-v` headers,
/// kpartx, `dmsetup status`, bindings nobody uses, invisible characters in messages, bounded reading.
struct DumpTests {
    let dumps = fixturesURL.appendingPathComponent("dumps")

    // MARK: 1. only what the top device needs, built without recursion

    @Test func aDeviceTheTopDoesNotUseMayHaveATargetImgmapCannotBuild() throws {
        let folder = TemporaryDirectory()
        let dump = "cr_home: 0 2093056 crypt aes-xts-plain64 0000 0 253:1 4096\nsystem-root: 0 16 linear 8:2 2048\n"
        let loaded = try loadTables(dump, devices: ["8:2": folder.sparseImage("sda2.img", sectors: 4096)], top: "system-root")
        #expect(loaded.top.name == "system-root")
        #expect(loaded.devices.keys.sorted() == ["system-root"])
        #expect(extents(SectorMap(top: loaded.top)).map(summary) == ["0 16 data sda2.img 2048"])
    }

    @Test func aHundredThousandDeepChainLoadsAndMaps() throws {
        let depth = 100_000
        var text = "d0: 0 8 zero\n"
        for i in 1..<depth { text += "d\(i): 0 8 linear d\(i - 1) 0\n" }
        let loaded = try loadTables(text)
        #expect(loaded.top.name == "d\(depth - 1)")
        let found = extents(SectorMap(top: loaded.top))
        #expect(found.map(summary) == ["0 8 zero"])
        #expect(found.first?.origin.table == "t.table")
    }

    // MARK: 2. names

    @Test func namesMayStartWithDigitsAndHoldSpacesAndHashes() throws {
        let dump = "3600a: 0 8 zero\ncr #1: 0 16 linear 3600a 0\n"
        let tables = try TableParser.parse(Array(dump.utf8), path: "d", defaultName: "top")
        #expect(tables.map(\.name) == ["3600a", "cr #1"])
        // the lower device is too small: the error names it, so both names were read whole
        #expect(loadError(dump)?.description.contains("device 3600a") == true)
        #expect(try loadTables("3600a: 0 8 zero\ncr #1: 0 8 linear 3600a 0\n").top.name == "cr #1")
    }

    // MARK: 3. a device with no table

    @Test func aDeviceWithNoTableDoesNotBlockTheOthers() throws {
        let loaded = try loadTables("test:\nroot: 0 8 zero\n", top: "root")
        #expect(loaded.top.size == Sector(8))
        let error = loadError("test: \nroot: 0 8 zero\n", topName: "test")
        #expect(error?.description.contains("device `test` has no table") == true)
        #expect(error?.exitStatus == .dataError)
    }

    @Test func aLowerDeviceWithNoTableReadsAsErrorsAsTheKernelsDoes() throws {
        let loaded = try loadTables("test:\nroot: 0 8 linear test 0\n")
        #expect(extents(SectorMap(top: loaded.top)).map(summary) == ["0 8 error"])
    }

    // MARK: 4. other outputs

    @Test func dmsetupTableVerboseIsReadWithItsHeaders() throws {
        let folder = TemporaryDirectory()
        let path = dumps.appendingPathComponent("ventoy-table-v.txt").path
        let bindings = Bindings(tables: [.init(name: nil, path: path)],
                                devices: [(token: "259:0", target: folder.sparseImage("nvme.img", sectors: 97386496 + 4470272))])
        let loaded = try TableLoader(bindings: bindings).load()
        #expect(loaded.top.name == "ventoy")
        #expect(loaded.top.size == Sector(97386496))
    }

    @Test func verboseHeadersGiveDeviceNumbers() throws {
        let text = """
            Name:              vg-lv
            Major, minor:      253, 1

            0 8 linear 253:0 0

            Name:              vg-pool
            State:             ACTIVE
            Major, minor:      253, 0
            Number of targets: 1

            0 8 zero

            """
        let loaded = try loadTables(text)
        #expect(loaded.top.name == "vg-lv")
        #expect(extents(SectorMap(top: loaded.top)).map(summary) == ["0 8 zero"])
    }

    @Test func kpartxListingIsReadAsLinearMappings() throws {
        let folder = TemporaryDirectory()
        let text = "loop0p1 : 0 262144 /dev/loop0 4096\nloop0p2 : 0 8 /dev/loop0 266240\nloop deleted : /dev/loop0\n"
        let loaded = try loadTables(text, devices: ["/dev/loop0": folder.sparseImage("disk.img", sectors: 266248)], top: "loop0p1")
        #expect(extents(SectorMap(top: loaded.top)).map(summary) == ["0 262144 data disk.img 4096"])
    }

    @Test func kpartxVerboseAddIsReadWithItsDeviceNumber() throws {
        let folder = TemporaryDirectory()
        let text = "add map loop0p1 (254:1): 0 64 linear 7:0 4096\ntop: 0 8 linear 254:1 8\n"
        let loaded = try loadTables(text, devices: ["7:0": folder.sparseImage("disk.img", sectors: 8192)])
        #expect(loaded.top.name == "top")
        #expect(extents(SectorMap(top: loaded.top)).map(summary) == ["0 8 data disk.img 4104"])
    }

    @Test func dmsetupStatusIsRefusedWithAHint() throws {
        let path = dumps.appendingPathComponent("ventoy-status.txt").path
        let folder = TemporaryDirectory()
        let bindings = Bindings(tables: [.init(name: nil, path: path)])
        let error = failure { _ = try TableLoader(bindings: bindings).load() }
        #expect(error?.description.contains("is what `dmsetup status` prints, not a table line") == true)
        #expect(error?.exitStatus == .dataError)
        withExtendedLifetime(folder) {}
        let striped = loadError("s: 0 16 striped 2 8:0 8:16 1 AA\n")
        #expect(striped?.description.contains("`dmsetup status`") == true)
        let pool = loadError("p: 0 16 thin-pool 0 193/4096 0/8192 - rw discard_passdown queue_if_no_space - 1024\n")
        #expect(pool?.description.contains("`dmsetup status`") == true)
    }

    @Test func aThinStatusLineIsBadDataNotAMissingPool() throws {
        // insights-status.txt (insights-core's `dmsetup status` of a docker host): `thin 1922048 20971519`
        // once opened `1922048` as the pool and exited 66 (no input); it is status output, 65.
        let error = loadError("docker-253:10-1234567-0df13579: 0 20971520 thin 1922048 20971519\n")
        #expect(error?.exitStatus == .dataError)
        #expect(error?.description.contains("`thin` with mapped sectors is what `dmsetup status` prints") == true)
    }

    @Test func noDevicesFoundIsRefusedAndExplained() {
        let error = loadError("No devices found\n")
        #expect(error?.description.contains("no device-mapper devices") == true)
        #expect(error?.exitStatus == .dataError)
    }

    // MARK: 5. dmsetup ls copied from a page; invisible characters in messages

    @Test func dmsetupLsAcceptsUnicodeSpaces() throws {
        let parsed = try Bindings.parseDmsetupLs("ventoy\u{A0}(253:0)\nventoy1\u{2003}\u{A0}(253:1)\n", path: "ls.txt")
        #expect(parsed.map(\.target) == ["@ventoy", "@ventoy1"])
        #expect(parsed.map(\.token) == ["253:0", "253:1"])
    }

    @Test func messagesEscapeInvisibleCharacters() {
        #expect(escapedForMessage("ventoy\u{A0}") == "ventoy\\u{A0}")
        #expect(escapedForMessage("a\u{200B}b\tc") == "a\\u{200B}b\\u{9}c")
        #expect(escapedForMessage("plain name-1") == "plain name-1")
        let error = loadError("0 8 zero", topName: "ventoy\u{A0}")
        #expect(error?.description.contains("--top ventoy\\u{A0}:") == true)
    }

    // MARK: 6. targets imgmap does not implement

    @Test func aKernelTargetImgmapDoesNotImplementSaysSoAndHowAnImageStandsIn() {
        let error = loadError("0 2093056 frobnicated-crypt x\n")
        #expect(error?.description.contains("imgmap does not implement") == true)
        let names = KernelTargets.names.filter { name in !TargetRegistry.all.contains { $0.name == name } }
        for name in names.prefix(3) {
            let e = loadError("cr: 0 8 \(name) a b c\n")
            #expect(e?.description.contains("imgmap does not implement the kernel's `\(name)` target") == true, "\(name)")
            #expect(e?.description.contains("can stand in for it") == true)
            #expect(e?.description.contains("--dev MAJOR:MINOR=that.img") == true)
        }
    }

    @Test func theStandInHintNamesTheDevicesNumberWhenKnown() {
        guard let name = KernelTargets.names.first(where: { name in !TargetRegistry.all.contains { $0.name == name } }) else { return }
        let e = loadError("cr: 0 8 \(name) a b c\ntop: 0 8 linear 254:3 0\n", devices: ["254:3": "@cr"])
        #expect(e?.description.contains("--dev 254:3=that.img") == true)
    }

    @Test func aTypoHintOnlyWhenTheNameIsClose() {
        #expect(loadError("0 8 Linear A 0")?.description.contains("did you mean `linear`?") == true)
        #expect(loadError("0 8 stripped 1 8 A 0")?.description.contains("did you mean `striped`?") == true)
        let far = loadError("0 8 frobnicate A 0")?.description ?? ""
        #expect(far.hasPrefix("t.table:1: unknown target type: `frobnicate`: imgmap does not implement a target of that name"))
        #expect(!far.contains("did you mean"))
    }

    // MARK: 7. bindings nobody uses, names bound twice

    @Test func aDevBindingNoTableUsesIsAUsageError() {
        let error = loadError("0 8 linear a.img 0", devices: ["m0": "disk0.img"], exactBindings: true)
        #expect(error?.exitStatus == .usage)
        #expect(error?.description.hasPrefix("--dev m0=disk0.img: no table that is loaded uses `m0`") == true)
    }

    @Test func theUnusedBindingMessageNeverShowsAKey() {
        let key = String(repeating: "0123456789abcdef", count: 4)
        let error = loadError("0 8 crypt aes-xts-plain64 \(key) 0 A 0\n8 8 crypt aes-xts-plain64 :32:logon:cr 0 A 0",
                              devices: ["m0": "disk0.img"], exactBindings: true)
        let message = error?.description ?? ""
        #expect(message.hasSuffix("(the tables for device top name: aes-xts-plain64, A)"), "\(message)")
        #expect(!message.contains(key) && !message.contains("logon"), "\(message)")
    }

    @Test func aLowerTableNoTableUsesIsAUsageError() {
        let error = loadError("0 8 zero", lower: [("L", "0 8 zero")], exactBindings: true)
        #expect(error?.exitStatus == .usage)
        #expect(error?.description == "--table L=L.table: no table that is loaded uses device L")
    }

    @Test func aNameBoundTwiceIsAUsageError() {
        let folder = TemporaryDirectory()
        let error = loadError("0 8 linear SP 0", lower: [("SP", "0 8 zero")], devices: ["SP": folder.sparseImage("a.img", sectors: 8)])
        #expect(error?.exitStatus == .usage)
        #expect(error?.description.hasPrefix("`SP` is bound twice") == true)
        let twice = failure {
            var loader = TableLoader(bindings: Bindings(tables: [.init(name: nil, path: "t")],
                                                        devices: [(token: "A", target: "a.img"), (token: "A", target: "b.img")]))
            loader.readTable = { _ in Array("0 8 linear A 0".utf8) }
            _ = try loader.load()
        }
        #expect(twice?.description == "--dev A is bound twice (=a.img and =b.img)")
    }

    @Test func aDmsetupLsFileNoTableUsesIsAUsageError() throws {
        var loader = TableLoader(bindings: Bindings(tables: [.init(name: nil, path: "t")], listed: [(token: "253:9", target: "@x")], listedFrom: "ls.txt"))
        loader.readTable = { _ in Array("0 8 zero".utf8) }
        let error = failure { _ = try loader.load() }
        #expect(error?.exitStatus == .usage)
        #expect(error?.description.hasPrefix("--dmsetup-ls ls.txt: no table that is loaded uses any device it lists") == true)
    }

    @Test func unusedBindingsAreRefusedBeforeAnyImageIsOpened() {
        // a.img does not exist: the usage error comes first, not "cannot open".
        let error = loadError("0 8 linear /nonexistent/a.img 0", devices: ["m0": "/nonexistent/disk0.img"], exactBindings: true)
        #expect(error?.exitStatus == .usage)
    }

    // MARK: 9. bounded reading

    @Test func aNulByteIsRefusedAtOnce() throws {
        let error = failure { _ = try readTableFile("/dev/zero") }
        #expect(error?.description == "/dev/zero:1: Invalid format: a NUL byte at byte 0: this is a binary file, not table text")
    }

    @Test func aOneMebibyteTargetLineIsAcceptedAsTheKernelDoes() throws {
        // dm-oracle, kernel 6.1.0-57: `0 8 error x x …` with 1 MiB of arguments was accepted and read
        // back as `0 8 error` (the error target ignores its arguments).
        let line = "0 8 error " + String(repeating: "x ", count: 512 * 1024)
        let loaded = try loadTables(line + "\n")
        #expect(extents(SectorMap(top: loaded.top)).map(summary) == ["0 8 error"])
    }

    @Test func oneSegmentMoreThanDMMaxTargetsIsRefused() throws {
        var text: [UInt8] = []
        text.reserveCapacity(15 << 20)
        for i in 0...TableParser.maxTargetsPerTable { text += Array("\(i) 1 zero\n".utf8) }
        let error = failure { _ = try TableParser.parse(text, path: "big.table", defaultName: "top") }
        #expect(error?.description.hasPrefix("big.table:1048577: too many targets: more than 1048576 segment lines (DM_MAX_TARGETS)") == true,
                "\(error?.description ?? "")")
        #expect(error?.exitStatus == .dataError)
    }

    @Test func anOverlongLineIsRefusedWhileReading() throws {
        let folder = TemporaryDirectory()
        let path = folder.file("long.table")
        let fd = open(path, O_CREAT | O_WRONLY, 0o644)
        let chunk = [UInt8](repeating: UInt8(ascii: "7"), count: 1 << 20)
        for _ in 0...(maxTableLineBytes >> 20) { _ = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
        close(fd)
        let error = failure { _ = try readTableFile(path) }
        #expect(error?.description.contains("longer than 16 MiB") == true)
    }

    // MARK: the corpus: every device of every dump through check and map

    @Test(arguments: ["crypt-centos.txt", "multipath-rhel.txt", "ventoy-table.txt", "ventoy-table-v.txt"])
    func everyDeviceOfARealDumpLoadsOrSaysWhyNot(_ file: String) throws {
        let path = dumps.appendingPathComponent(file).path
        let bytes = try readTableFile(path)
        var facts = TableParser.DumpFacts()
        let tables = try TableParser.parse(bytes, path: path, defaultName: "top", facts: &facts)
        let folder = TemporaryDirectory()
        // every disk number the dump names, bound to a sparse image large enough for it
        var disks: [String: UInt64] = [:]
        for table in tables {
            table.forEachLine { line in
                for argument in line.arguments where isDeviceNumber(argument) && !argument.hasPrefix("253:") && !argument.hasPrefix("254:") {
                    disks[argument] = max(disks[argument] ?? 0, 1 << 28)
                }
            }
        }
        for table in tables where table.hasTable {
            var devices: [(token: String, target: String)] = []
            // the tokens of this device and of every dm device below it (253:N is the dump's N-th device)
            var used = Set<String>()
            var queue = [table]
            var seen = Set([table.name])
            while let next = queue.popLast() {
                next.forEachLine { line in used.formUnion(line.arguments) }
                for (index, other) in tables.enumerated() where used.contains("253:\(index)") && seen.insert(other.name).inserted {
                    queue.append(other)
                }
            }
            for (disk, size) in disks where used.contains(disk) {
                devices.append((token: disk, target: folder.sparseImage(disk.replacingOccurrences(of: ":", with: "_") + ".img", sectors: size)))
            }
            // dm numbers: 253:N / 254:N are the dump's devices in order (as the fixtures are written)
            for (index, other) in tables.enumerated() where used.contains("253:\(index)") {
                devices.append((token: "253:\(index)", target: "@" + other.name))
            }
            var loader = TableLoader(bindings: Bindings(tables: [.init(name: nil, path: path)], devices: devices, top: table.name))
            loader.readTable = { _ in bytes }
            do {
                let loaded = try loader.load()
                #expect(loaded.top.size.value > 0)
                #expect(!extents(SectorMap(top: loaded.top)).isEmpty)
            } catch let error as TableError {
                // Only a target imgmap does not build may stop a device (others land as they are written).
                if error.message == "target not implemented" {
                    #expect(error.description.contains("can stand in for it"))
                } else {
                    #expect(!["linear", "striped", "zero", "error"].contains(error.target ?? "linear"), "\(file) \(table.name): \(error)")
                }
            }
        }
    }
}

/// The same through the binary: exit statuses and what is said.
struct DumpCLITests {
    @Test func checkFailsWhenANamedImageDoesNotExist() throws {
        let folder = TemporaryDirectory()
        let table = folder.write("t.table", "0 8 linear missing.img 0\n")
        let run = try imgmap(["check", table], in: folder)
        #expect(run.status == 66)
        #expect(run.stderr.contains("missing.img"))
    }

    @Test func checkOfADumpWithBareDeviceNumbersChecksTheRulesAndSaysSizesWereNot() throws {
        let folder = TemporaryDirectory()
        let dump = folder.write("dump.txt", "cr_home: 0 8 crypt aes-xts-plain64 00 0 253:1 0\nsystem-root: 0 19253248 linear 8:2 2048\n")
        let run = try imgmap(["check", dump, "--top", "system-root"], in: folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.out.hasPrefix("19253248 sectors"))
        #expect(run.stderr.contains("8:2: a device number with no image bound"))
    }

    @Test func theReadmesRaid0ExampleWithUnusedBindingsIsAUsageError() throws {
        let folder = TemporaryDirectory()
        let table = packageRootURL.appendingPathComponent("Samples/raid0.table").path
        let run = try imgmap(["compose", table, "--dev", "m0=disk0.img", "--dev", "m1=disk1.img", "--dev", "m2=disk2.img",
                              "-o", folder.file("v.img")], in: folder)
        #expect(run.status == 64)
        #expect(run.stderr.contains("--dev m0=disk0.img: no table that is loaded uses `m0`"))
        #expect(!FileManager.default.fileExists(atPath: folder.file("v.img")))
    }

    @Test func scatterRefusesATableAndInputBothFromStdin() throws {
        let folder = TemporaryDirectory()
        let run = try imgmap(["scatter", "-", "-", "--dry-run"], stdin: "0 8 zero\n", in: folder)
        #expect(run.status == 64)
        #expect(run.stderr.contains("cannot both come from stdin"))
    }

    @Test func devZeroAsATableFailsFast() throws {
        let folder = TemporaryDirectory()
        let (run, peak) = try imgmapPeakRSS(["check", "/dev/zero"], in: folder)
        #expect(run.status == 65)
        #expect(run.stderr.contains("NUL byte"))
        if let peak { #expect(peak < 200 << 20) }
    }

    @Test func aHundredThousandDeepChainThroughCheckMapAndCompose() throws {
        let folder = TemporaryDirectory()
        var text = "d0: 0 8 linear 8:0 0\n"
        for i in 1..<100_000 { text += "d\(i): 0 8 linear d\(i - 1) 0\n" }
        let dump = folder.write("chain.txt", text)
        let disk = folder.sparseImage("disk.img", sectors: 8)
        for command in [["check"], ["map"], ["compose", "-o", folder.file("out.img")]] {
            let run = try imgmap([command[0], dump, "--dev", "8:0=\(disk)"] + command.dropFirst(), in: folder)
            #expect(run.status == 0, "\(command[0]): \(run.status) \(run.stderr)")
        }
    }
}
