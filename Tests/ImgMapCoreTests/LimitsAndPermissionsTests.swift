import Foundation
import Testing

@testable import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

// Resource limits (huge tables, deep stacks, the kernel's largest device, numbers near 2^64) and
// permissions (members that cannot be written, inputs that cannot be read, symlinks planted where the
// output goes), run through the binary. Tests run as root here and in CI: what root can always do is
// taken away with the immutable attribute or by running the child as `nobody` (setpriv).

/// Runs `chattr` on `path`; whether it worked (the filesystem and capabilities allow it).
func chattr(_ flag: String, _ path: String) -> Bool { runQuietly(["chattr", flag, path]) == 0 }

/// `setpriv` arguments that run the child as nobody, or nil when that cannot be arranged here.
let asNobody: [String]? = {
    guard getuid() == 0, let setpriv = toolPath("setpriv") else { return nil }
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
}()

@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: imgmapBinary),
                "imgmap binary not found at .build/debug/imgmap: run `swift build` first"))
struct LimitsAndPermissionsTests {
    // MARK: resource limits

    @Test func aMillionSegmentsCheckInBoundedMemory() throws {
        let f = CLIFixture()
        let count = 1 << 20
        var text = ""
        text.reserveCapacity(count * 24)
        // Offsets two sectors apart, so no two segments merge into one extent. (`map` of it is left to the
        // in-process loader tests: printing a million lines takes ~15 s of CPU in a debug build.)
        for i in 0..<count { text += "\(i) 1 linear A \((i * 2) % 256)\n" }
        let table = f.folder.write("big.table", text)
        let bound = 512 << 20
        try expectUnchanged(f.images + [table]) {
            let (check, rss) = try imgmapPeakRSS(["check", table, "--dev", "A=\(f.a)"], in: f.folder)
            #expect(check.status == 0, "\(check.stderr)")
            #expect(check.out.hasPrefix("1048576 sectors (536870912 bytes, 512.0 MiB): 1048576 segments in 1 table"), "\(check.out)")
            if let rss { #expect(rss < bound, "check peaked at \(rss >> 20) MiB") }
        }
    }

    /// A BGZF file of 100,000 members (zeros: 6.5 GB uncompressed in 4 MB) used by a compress segment:
    /// the member walk, the table and a read at the far end stay in bounded memory.
    @Test func aHundredThousandMemberBGZFFileMapsAndReadsItsLastSector() throws {
        let f = CLIFixture()
        // One member of zeros, as the writer makes it; repeated, then the EOF member.
        let one = f.folder.file("one.gz")
        let fd = open(one, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        try #require(fd >= 0)
        let writer = try BGZFWriter(output: ImageFile(descriptor: fd, path: one, writable: true), options: .init(threads: 1))
        try [UInt8](repeating: 0, count: bgzfMaxInputPerBlock).withUnsafeBytes { try writer.write($0) }
        try writer.finish()
        let member = Array(readBytes(one).dropLast(bgzfEOFMember.count))
        let members = 100_000
        var file: [UInt8] = []
        file.reserveCapacity(member.count * members + bgzfEOFMember.count)
        for _ in 0..<members { file += member }
        file += bgzfEOFMember
        let big = f.folder.file("big.gz")
        try Data(file).write(to: URL(fileURLWithPath: big))
        let sectors = UInt64(members * bgzfMaxInputPerBlock) / 512
        let table = f.folder.write("z.table", "0 \(sectors) compress big.gz 0\n")
        try expectUnchanged([big, table]) {
            let (check, rss) = try imgmapPeakRSS(["check", table], in: f.folder)
            #expect(check.status == 0, "\(check.stderr)")
            #expect(check.out.hasPrefix("\(sectors) sectors"), "\(check.out)")
            if let rss { #expect(rss < 64 << 20, "check peaked at \(rss >> 20) MiB") }
            let tail = try imgmap(["decompress", "big.gz", "-o", "-", "--offset", "\(sectors * 512 - 512)"], in: f.folder)
            #expect(tail.status == 0, "\(tail.stderr)")
            #expect(tail.stdout == [UInt8](repeating: 0, count: 512))
        }
    }

    @Test func aStack32TablesDeepMapsAndComposesToItsImage() throws {
        let f = CLIFixture()
        var lower: [String] = []
        var below = "A"
        // Level k maps sectors 1… of level k−1: the top's sector 0 is A's sector 32.
        for k in 1...32 {
            let path = f.folder.write("l\(k).table", "0 \(200 - k) linear \(below) 1\n")
            if k < 32 { lower += ["--table", "l\(k)=\(path)"] }
            below = "l\(k)"
        }
        let top = f.folder.file("l32.table")
        try expectUnchanged(f.images) {
            let map = try imgmap(["map", top, "--json", "--dev", "A=\(f.a)"] + lower, in: f.folder)
            #expect(map.status == 0, "\(map.stderr)")
            #expect(map.out.contains("\"offset\":32"), "\(map.out)")
            #expect(map.out.split(separator: "\n").count == 1)
            let compose = try imgmap(["compose", top, "-o", "out.img", "--dev", "A=\(f.a)"] + lower, in: f.folder)
            #expect(compose.status == 0, "\(compose.stderr)")
            #expect(readBytes(f.folder.file("out.img")) == Array(readBytes(f.a)[(32 * 512)..<(200 * 512)]))
        }
    }

    @Test func theKernelsLargestZeroDeviceChecksMapsAndStreamsUntilTheReaderStops() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 18014398509481983 zero\n")
        let check = try imgmap(["check", table], in: f.folder)
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.out.hasPrefix("18014398509481983 sectors (9223372036854775296 bytes"), "\(check.out)")
        let map = try imgmap(["map", table], in: f.folder)
        #expect(map.status == 0, "\(map.stderr)")
        #expect(map.out.split(separator: "\n").count == 2)
        let pipe = FifoReader(f.folder.file("out.fifo"))
        let child = try Child(["compose", table, "-o", "-"], stdout: .init(pipe.path), stderr: .init(f.folder.file("stderr")), in: f.folder.path)
        #expect(pipe.read(1 << 20) == [UInt8](repeating: 0, count: 1 << 20))
        pipe.close()
        #expect(child.wait().status == 141)
        #expect(readBytes(f.folder.file("stderr")) == [])
        // A file that large cannot exist: a clear error, nothing left behind.
        let file = try imgmap(["compose", table, "-o", "out.img"], in: f.folder)
        #expect([73, 74].contains(file.status), "\(file.stderr)")
        #expect(file.stderr.hasPrefix("imgmap: out.img: "), "\(file.stderr)")
        #expect(f.leftovers(besides: ["t.table", "out.fifo", "stderr"]) == [])
    }

    @Test(arguments: [
        "0 8 linear A 18446744073709551615\n",
        "0 8 linear A 18446744073709551608\n",
        "0 8 linear A 9223372036854775807\n",
        "0 18446744073709551615 zero\n",
        "0 9223372036854775808 zero\n",
        "0 8 zero\n8 18446744073709551608 zero\n",
        "0 18014398509481983 zero\n18014398509481983 1 zero\n",
        "0 16 striped 2 9223372036854775808 A 0 B 0\n",
        "0 16 striped 2 8 A 18446744073709551615 B 0\n",
        "0 16 linear A 0\n",
    ])
    func tableNumbersNearTwoToThe64AreRefusedWithoutATrap(_ text: String) throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", text)
        for command in [["check"], ["map"], ["compose", "-o", "-"]] {
            // Only the devices the line names are bound: an unused --dev is a usage error.
            let run = try imgmap(command + [table] + (text.contains(" B ") ? f.devs : text.contains(" A ") ? ["--dev", "A=\(f.a)"] : []), in: f.folder)
            if text == "0 16 linear A 0\n" {
                #expect(run.status == 0, "\(run.stderr)")
            } else {
                #expect(run.status == 65, "\(command[0]) \(text): \(run.status) \(run.stderr)")
                #expect(run.stderr.hasPrefix("imgmap: \(table):"), "\(run.stderr)")
            }
        }
    }

    @Test(arguments: ["0 8 linear new.img 18014398509481983\n", "0 18014398509481983 linear new.img 0\n"])
    func scatterCreateNeedingAnImpossibleSizeExits73AndCreatesNothing(_ text: String) throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", text)
        let input = f.folder.write("in.img", String(repeating: "x", count: 4096))
        try expectUnchanged([table, input]) {
            let run = try imgmap(["scatter", table, input, "--create"], in: f.folder)
            #expect(run.status == 73, "\(run.stderr)")
            #expect(run.stderr.contains("new.img"), "\(run.stderr)")
        }
        #expect(!fileExists(f.folder.file("new.img")))
    }

    // MARK: permissions

    @Test func aMemberThatCannotBeWrittenIsRefusedBeforeAnythingIsWritten() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let input = f.folder.write("in.img", String(repeating: "y", count: 144 * 512))
        var wrapper: [String] = []
        if chattr("+i", f.b) {
            // Immutable: not even root may open it for writing.
        } else if let nobody = asNobody {
            wrapper = nobody
            chmod(f.a, 0o666)
            chmod(f.b, 0o444)
            chmod(f.folder.path, 0o755)
        } else {
            try Test.cancel("cannot make a file root cannot write (no chattr +i, no setpriv)")
        }
        defer { _ = chattr("-i", f.b) }
        try expectUnchanged(f.images + [table, input]) {
            let run = try imgmap(["scatter", table, input] + f.devs, wrapper: wrapper, in: f.folder)
            #expect(run.status == 73, "\(run.stderr)")
            #expect(run.stderr.hasPrefix("imgmap: \(f.b): open for writing: "), "\(run.stderr)")
            #expect(run.stderr.hasSuffix(" (nothing was written)\n"), "\(run.stderr)")
        }
    }

    @Test func anUnreadableInputExits66() throws {
        guard let nobody = asNobody else { try Test.cancel("cannot run a child as nobody here (needs root and setpriv)") }
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        chmod(f.folder.path, 0o777)
        chmod(table, 0o644)
        chmod(f.b, 0o644)
        chmod(f.a, 0o000)
        try expectUnchanged(f.images + [table]) {
            let compose = try imgmap(["compose", table, "-o", "out.img"] + f.devs, wrapper: nobody, in: f.folder)
            #expect(compose.status == 66, "\(compose.stderr)")
            #expect(compose.stderr.contains("\(f.a): Permission denied"), "\(compose.stderr)")
            // f.a as the image to check or write from, through a table over B only.
            let small = f.folder.write("b.table", "0 64 linear B 0\n")
            chmod(small, 0o644)
            let verify = try imgmap(["verify", small, f.a, "--dev", "B=\(f.b)"], wrapper: nobody, in: f.folder)
            #expect(verify.status == 66, "\(verify.stderr)")
            #expect(verify.stderr == "imgmap: \(f.a): open: Permission denied\n")
            let scatter = try imgmap(["scatter", small, f.a, "--dev", "B=\(f.b)"], wrapper: nobody, in: f.folder)
            #expect(scatter.status == 66, "\(scatter.stderr)")
            #expect(scatter.stderr == "imgmap: \(f.a): open: Permission denied\n")
        }
        #expect(f.leftovers(besides: ["t.table", "b.table"]) == [])
    }

    @Test func aSymlinkAtOutIsReplacedAndItsTargetLeftAlone() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let victim = f.folder.write("victim", "someone else's file")
        try FileManager.default.createSymbolicLink(atPath: f.folder.file("out.img"), withDestinationPath: victim)
        try expectUnchanged(f.images + [table, victim]) {
            let run = try imgmap(["compose", table, "-o", "out.img"] + f.devs, in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
        }
        var st = stat()
        #expect(lstat(f.folder.file("out.img"), &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG)
        #expect(readBytes(f.folder.file("out.img")) == (try f.expectedBytes(CLIFixture.cleanTable)))
    }

    @Test(arguments: [false, true])
    func somethingPlantedAtTheTemporaryNameIsNeitherFollowedNorInTheWay(_ symlink: Bool) throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let victim = f.folder.write("victim", "someone else's file")
        // The child waits at a FIFO until the test has planted OUT.tmp-PID-1 for its known pid.
        let gate = f.folder.file("gate")
        #expect(mkfifo(gate, 0o600) == 0)
        let child = try Child(["compose", table, "-o", "out.img"] + f.devs, stdout: .init(f.folder.file("stdout")),
                              stderr: .init(f.folder.file("stderr")), in: f.folder.path, shellPrefix: "read x < gate; ")
        let planted = f.folder.file("out.img.tmp-\(child.pid)-1")
        if symlink {
            try FileManager.default.createSymbolicLink(atPath: planted, withDestinationPath: victim)
        } else {
            f.folder.write("out.img.tmp-\(child.pid)-1", "a stale temporary")
        }
        expectUnchanged(f.images + [table, victim]) {
            let fd = open(gate, O_WRONLY | O_CLOEXEC)
            #expect(write(fd, "\n", 1) == 1)
            close(fd)
            let status = child.wait().status
            let stderr = String(decoding: readBytes(f.folder.file("stderr")), as: UTF8.self)
            #expect(status == 0, "\(stderr)")
        }
        #expect(readBytes(f.folder.file("out.img")) == (try f.expectedBytes(CLIFixture.cleanTable)))
        if !symlink { #expect(String(decoding: readBytes(planted), as: UTF8.self) == "a stale temporary") }
        #expect(f.leftovers(besides: ["t.table", "victim", "gate", "stdout", "stderr", "out.img", "out.img.tmp-\(child.pid)-1"]) == [])
    }
}
