import Foundation
import Testing

@testable import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

// Faults injected into real runs of the binary: a full disk, inputs truncated or removed while being
// read, descriptors that fail, signals, readers that go away, scatters that stop part way. Every run
// must end with a sysexits status and one clear line (or quietly, for a closed pipe and a signal),
// leave no OUT and no OUT.tmp-…, and leave its inputs as they were.
//
// A child is paused without timing: its stderr is a FIFO the test has filled with whole pages, so its
// first `--progress json` line blocks (that line comes after the first chunk or extent is written, and
// always before the output is renamed into place); or its output is a FIFO the test stops reading.

/// A folder with its own copy of a 16 MiB golden image (every sector distinct), which a test may
/// truncate or remove.
struct FaultFixture {
    static let sectors: UInt64 = 32768
    let folder = TemporaryDirectory("imgmap-fault")
    let a: String
    let golden = GoldenImages.path("A", sectors: FaultFixture.sectors)

    init() {
        a = folder.file("a.img")
        try! FileManager.default.copyItem(atPath: golden, toPath: a)
    }

    var out: String { folder.file("out.img") }
    /// OUT.tmp-… files in the folder.
    var temporaries: [String] { folder.entries().filter { $0.hasPrefix("out.img.tmp-") } }

    func holdsOutput(_ pid: pid_t) -> Bool { ImgMapCoreTests.holdsOutput(pid, in: folder.path, named: "out.img") }

    /// Three extents (two of A with a zero extent between), so extent-by-extent engines report progress
    /// before the end.
    func splitTable() -> String {
        folder.write("t.table", "0 2048 linear A 0\n2048 8 zero\n2056 \(Self.sectors - 2056) linear A 2056\n")
    }

    func wholeTable() -> String { folder.write("whole.table", "0 \(Self.sectors) linear A 0\n") }

    /// The device of `splitTable()`: A with sectors 2048..<2056 zeroed.
    func splitBytes() -> [UInt8] {
        var bytes = readBytes(golden)
        for i in 2048 * 512..<2056 * 512 { bytes[i] = 0 }
        return bytes
    }
}

/// Runs a system tool to its end, output discarded; its exit status (127 when it is not installed).
@discardableResult
func runQuietly(_ argv: [String]) -> Int32 {
    guard let program = toolPath(argv[0]),
          let child = try? Child(Array(argv.dropFirst()), program: program, stdout: .init("/dev/null"), stderr: .init("/dev/null"), in: "/")
    else { return 127 }
    return child.wait().status
}

@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: imgmapBinary),
                "imgmap binary not found at .build/debug/imgmap: run `swift build` first"))
struct FaultInjectionTests {
    // MARK: output disk full

    static let outputModes: [[String]] = [[], ["--sparse", "never"], ["--sparse", "auto"], ["--digest", "sha256"], ["--compress", "--level", "0"]]

    @Test(arguments: outputModes)
    func outputOverTheFileSizeLimitExits74NamingItAndLeavesNothing(_ mode: [String]) throws {
        guard let prlimit = toolPath("prlimit") else { try Test.cancel("prlimit(1) is not installed") }
        let f = FaultFixture()
        let table = f.wholeTable()
        try expectUnchanged([f.a, table]) {
            let run = try imgmap(["compose", table, "--dev", "A=\(f.a)", "-o", f.out] + mode,
                                 wrapper: [prlimit, "--fsize=65536", "--"], in: f.folder)
            #expect(run.status == 74, "\(run.stderr)")
            #expect(run.stderr.hasPrefix("imgmap: \(f.out): "), "\(run.stderr)")
            #expect(run.stderr.hasSuffix(": File too large\n"), "\(run.stderr)")
            #expect(run.stderr.split(separator: "\n").count == 1)
        }
        #expect(!fileExists(f.out))
        #expect(f.temporaries == [])
    }

    @Test(arguments: outputModes)
    func outputOnAFullFilesystemExits74AndLeavesNothing(_ mode: [String]) throws {
        let f = FaultFixture()
        let small = f.folder.file("small")
        try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: false)
        guard runQuietly(["mount", "-t", "tmpfs", "-o", "size=256k", "imgmap-test", small]) == 0 else {
            try Test.cancel("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
        }
        defer { runQuietly(["umount", small]) }
        let table = f.wholeTable()
        let out = small + "/out.img"
        try expectUnchanged([f.a, table]) {
            let run = try imgmap(["compose", table, "--dev", "A=\(f.a)", "-o", out] + mode, in: f.folder)
            #expect(run.status == 74, "\(run.stderr)")
            #expect(run.stderr.hasPrefix("imgmap: \(out): "), "\(run.stderr)")
            #expect(run.stderr.hasSuffix(": No space left on device\n"), "\(run.stderr)")
        }
        #expect((try? FileManager.default.contentsOfDirectory(atPath: small)) == [])
    }

    // MARK: inputs truncated or removed while composing

    /// Starts `compose … -o OUT --progress json` held at its first progress line, waits until it holds
    /// its output open (the tables are loaded and the images open), runs `meanwhile`, then lets it go on.
    func composeHeld(_ f: FaultFixture, _ arguments: [String], shellPrefix: String = "",
                     meanwhile: (Child) throws -> Void) throws -> Run {
        let gate = FifoReader(f.folder.file("stderr.fifo"))
        gate.fill()
        let child = try Child(["compose"] + arguments + ["-o", f.out, "--progress", "json"],
                              stdout: .init("/dev/null"), stderr: .init(gate.path), in: f.folder.path, shellPrefix: shellPrefix)
        gate.closeFiller()
        waitUntil("compose holds its output") { f.holdsOutput(child.pid) || !child.isRunning }
        try meanwhile(child)
        let stderr = gate.readAllText()
        return Run(status: child.wait().status, stdout: [], stderr: stderr)
    }

    @Test(arguments: ["never", "auto", "always"])
    func inputTruncatedWhileComposingToAFileExits74(_ sparse: String) throws {
        let f = FaultFixture()
        let table = f.splitTable()
        let run = try composeHeld(f, [table, "--dev", "A=\(f.a)", "--sparse", sparse]) { _ in
            #expect(truncate(f.a, 1 << 20) == 0)
        }
        #expect(run.status == 74, "\(run.stderr)")
        #expect(run.stderr.contains("imgmap: \(f.a): "), "\(run.stderr)")
        #expect(run.stderr.contains("ended early"), "\(run.stderr)")
        #expect(!fileExists(f.out))
        #expect(f.temporaries == [])
    }

    @Test func inputRemovedWhileComposingStillComposesItsContent() throws {
        let f = FaultFixture()
        let table = f.splitTable()
        let run = try composeHeld(f, [table, "--dev", "A=\(f.a)"]) { _ in
            #expect(unlink(f.a) == 0)
        }
        // The open descriptor keeps the removed file's data: the output is the device as it was.
        #expect(run.status == 0, "\(run.stderr)")
        #expect(sha256(file: f.out) == sha256(f.splitBytes()))
        #expect(f.temporaries == [])
    }

    @Test(arguments: [[], ["--digest", "sha256"]])
    func inputTruncatedWhileStreamingExits74AfterItsLastByte(_ mode: [String]) throws {
        let f = FaultFixture()
        let table = f.wholeTable()
        let pipe = FifoReader(f.folder.file("out.fifo"))
        let child = try Child(["compose", table, "--dev", "A=\(f.a)", "-o", pipe.path] + mode,
                              stdout: .init("/dev/null"), stderr: .init(f.folder.file("stderr")), in: f.folder.path)
        // The child is at most a pipe (1 MiB) and a buffer (4 MiB) ahead of what the test has read.
        let first = pipe.read(1 << 20)
        #expect(truncate(f.a, 12 << 20) == 0)
        let rest = pipe.readAll()
        let status = child.wait().status
        let stderr = String(decoding: readBytes(f.folder.file("stderr")), as: UTF8.self)
        #expect(status == 74, "\(stderr)")
        #expect(stderr.hasPrefix("imgmap: \(f.a): "), "\(stderr)")
        #expect(stderr.contains("ended early"), "\(stderr)")
        #expect(first + rest == Array(readBytes(f.golden)[0..<12 << 20]))
    }

    // MARK: read errors

    @Test func errorExtentsInVerifyManifestAndScatterAreReportedWithoutChangingAnything() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        let image = f.folder.write("image.img", String(repeating: "x", count: 160 * 512))
        try expectUnchanged(f.images + [table, image]) {
            let verify = try imgmap(["verify", table, image] + f.devs, in: f.folder)
            #expect(verify.status == 1, "\(verify.stderr)")
            #expect(verify.out.contains("80+16"), "\(verify.out)")
            let manifest = try imgmap(["manifest", table, "-o", "-"] + f.devs, in: f.folder)
            #expect([0, 74].contains(manifest.status), "\(manifest.stderr)")
            #expect(manifest.status < 128)
            let scatter = try imgmap(["scatter", table, image] + f.devs, in: f.folder)
            #expect(scatter.status == 74, "\(scatter.stderr)")
            #expect(scatter.stderr.contains("sectors 80+16"), "\(scatter.stderr)")
            #expect(scatter.stderr.contains("refused before anything was written"), "\(scatter.stderr)")
        }
    }

    @Test func readsFromADescriptorThatFailsExit74() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let directory = f.folder.file("dir")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        try expectUnchanged(f.images + [table]) {
            // stdin is a directory: open(2) worked, read(2) fails with EISDIR.
            let verify = try imgmap(["verify", table, "-"] + f.devs, stdinFile: directory, in: f.folder)
            #expect(verify.status == 74, "\(verify.stderr)")
            #expect(verify.stderr == "imgmap: <stdin>: read: Is a directory\n")
            let scatter = try imgmap(["scatter", table, "-"] + f.devs, stdinFile: directory, in: f.folder)
            #expect(scatter.status == 74, "\(scatter.stderr)")
            #expect(scatter.stderr == "imgmap: <stdin>: read: Is a directory; nothing was written\n")
        }
    }

    @Test func inputsThatAreDirectoriesExit66() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let directory = f.folder.file("dir")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        try expectUnchanged(f.images + [table]) {
            let compose = try imgmap(["compose", table, "--dev", "A=\(directory)", "--dev", "B=\(f.b)", "-o", "out.img"], in: f.folder)
            #expect(compose.status == 66, "\(compose.stderr)")
            #expect(compose.stderr.contains(directory), "\(compose.stderr)")
            let verify = try imgmap(["verify", table, directory] + f.devs, in: f.folder)
            #expect(verify.status == 66, "\(verify.stderr)")
            #expect(verify.stderr.contains("\(directory): open: Is a directory"), "\(verify.stderr)")
            let scatter = try imgmap(["scatter", table, directory] + f.devs, in: f.folder)
            #expect(scatter.status == 66, "\(scatter.stderr)")
            #expect(scatter.stderr.contains(directory), "\(scatter.stderr)")
        }
        #expect(f.leftovers(besides: ["t.table", "dir"]) == [])
    }

    // MARK: signals

    /// Every signal whose default action ends the process (but the crash signals, left to the runtime).
    @Test(arguments: [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGXCPU, SIGIO, SIGPWR,
                      40, 64])  // real-time signals (SIGRTMIN is 34 with glibc, SIGRTMAX 64)
    func signalWhileComposingToAFileRemovesTheTemporary(_ signal: Int32) throws {
        let f = FaultFixture()
        let table = f.wholeTable()
        try expectUnchanged([f.a, table]) {
            let run = try composeHeld(f, [table, "--dev", "A=\(f.a)", "--sparse", "never"]) { child in
                // Unnamed until complete: no name in the folder for a signal to leave behind.
                #expect(f.temporaries == [])
                child.send(signal)
            }
            #expect(run.status == 128 + signal, "\(run.stderr)")
            // Nothing but progress: the held progress line may still get out while the signal is being
            // handled on another thread, as the test drains the pipe.
            let lines = run.stderr.split(separator: "\n")
            #expect(lines.allSatisfy { $0.hasPrefix("{\"done\":") }, "\(run.stderr)")
        }
        #expect(!fileExists(f.out))
        #expect(f.temporaries == [])
    }

    @Test(arguments: [SIGINT, SIGTERM])
    func signalWhileBlockedWritingToAPipeExits128PlusIt(_ signal: Int32) throws {
        let f = FaultFixture()
        let table = f.wholeTable()
        let pipe = FifoReader(f.folder.file("out.fifo"))
        try expectUnchanged([f.a, table]) {
            let child = try Child(["compose", table, "--dev", "A=\(f.a)", "-o", pipe.path],
                                  stdout: .init("/dev/null"), stderr: .init(f.folder.file("stderr")), in: f.folder.path)
            #expect(pipe.read(1 << 20) == Array(readBytes(f.golden)[0..<1 << 20]))
            child.send(signal)
            #expect(child.wait().status == 128 + signal)
            #expect(readBytes(f.folder.file("stderr")) == [])
        }
        #expect(f.folder.entries() == ["a.img", "out.fifo", "stderr", "whole.table"])
    }

    @Test func sigkillLeavesNothingBehind() throws {
        let f = FaultFixture()
        let table = f.wholeTable()
        try expectUnchanged([f.a, table]) {
            let run = try composeHeld(f, [table, "--dev", "A=\(f.a)", "--sparse", "never"]) { child in
                child.send(SIGKILL)
            }
            #expect(run.status == 128 + SIGKILL)
            #expect(!fileExists(f.out))
            // The output was an unnamed file: nothing is left for SIGKILL to strand.
            #expect(f.temporaries == [])
        }
    }

    @Test func aStaleTemporaryDoesNotBreakTheNextRun() throws {
        let f = FaultFixture()
        let table = f.wholeTable()
        // What a run killed before O_TMPFILE, or on a filesystem without it, leaves.
        let stale = ["out.img.tmp-1-1"]
        _ = FileManager.default.createFile(atPath: f.folder.file(stale[0]), contents: Data("stale".utf8))
        try expectUnchanged([f.a, table, f.folder.file(stale[0])]) {
            let again = try imgmap(["compose", table, "--dev", "A=\(f.a)", "-o", f.out], in: f.folder)
            #expect(again.status == 0, "\(again.stderr)")
            #expect(sha256(file: f.out) == sha256(file: f.golden))
            // A stale temporary is left alone (it cannot be told from another run's, live one) and
            // never renamed into place.
            #expect(f.temporaries == stale)
        }
    }

    @Test func hangupIgnoredByTheCallerStaysIgnored() throws {
        let f = FaultFixture()
        let table = f.wholeTable()
        // As under `nohup`: the compose goes on and completes.
        let run = try composeHeld(f, [table, "--dev", "A=\(f.a)", "--sparse", "never"], shellPrefix: "trap '' HUP; ") { child in
            child.send(SIGHUP)
        }
        #expect(run.status == 0, "\(run.stderr)")
        #expect(sha256(file: f.out) == sha256(file: f.golden))
        #expect(f.temporaries == [])
    }

    // MARK: stdout closed early

    @Test(arguments: [[], ["--digest", "sha256"], ["--compress", "--level", "0"], ["--compress"]])
    func readerGoingAwayEndsComposeQuietlyWith141(_ mode: [String]) throws {
        let f = FaultFixture()
        // Image data (spliced or copied), then zeros to the kernel's limit: never done before the reader goes.
        let table = f.folder.write("t.table", "0 \(FaultFixture.sectors) linear A 0\n\(FaultFixture.sectors) \(maxDeviceSectors - FaultFixture.sectors) zero\n")
        try expectUnchanged([f.a, table]) {
            let pipe = FifoReader(f.folder.file("out.fifo"))
            let child = try Child(["compose", table, "--dev", "A=\(f.a)", "-o", "-"] + mode,
                                  stdout: .init(pipe.path), stderr: .init(f.folder.file("stderr")), in: f.folder.path)
            let head = pipe.read(1 << 20)
            #expect(head.count == 1 << 20)
            if mode.isEmpty || mode == ["--digest", "sha256"] {
                #expect(head == Array(readBytes(f.golden)[0..<1 << 20]))
            }
            pipe.close()  // as `head -c 1M` exits
            #expect(child.wait().status == 141)
            #expect(String(decoding: readBytes(f.folder.file("stderr")), as: UTF8.self) == "")
        }
    }

    // MARK: scatter interrupted

    @Test func scatterRunningOntoAnErrorExtentListsExactlyTheWrittenRanges() throws {
        let f = FaultFixture()
        let b = f.folder.file("b.img")
        try FileManager.default.copyItem(atPath: GoldenImages.path("B", sectors: 8192), toPath: b)
        let table = f.folder.write("t.table", "0 8192 linear A 0\n8192 16 error\n8208 8192 linear B 0\n")
        let input = GoldenImages.path("C", sectors: 16400)
        let oldA = readBytes(f.a)
        let oldB = readBytes(b)
        try expectUnchanged([input, table]) {
            // A stream: the error extent is found only when the second 4 MiB chunk reaches it.
            let run = try imgmap(["scatter", table, "-", "--dev", "A=\(f.a)", "--dev", "B=\(b)"], stdinFile: input, in: f.folder)
            #expect(run.status == 74, "\(run.stderr)")
            #expect(run.stderr.hasSuffix("; already written before the failure (device sectors start+length): 0+8192\n"), "\(run.stderr)")
            #expect(run.stderr.contains("sectors 8192+16 (\(table):2 error) would fail with EIO"), "\(run.stderr)")
        }
        let newA = readBytes(f.a)
        #expect(newA[0..<8192 * 512] == readBytes(input)[0..<8192 * 512])
        #expect(newA[(8192 * 512)...] == oldA[(8192 * 512)...])
        #expect(readBytes(b) == oldB)
    }

    @Test func scatterStoppedByAMemberItCannotGrowListsExactlyTheWrittenRanges() throws {
        guard let prlimit = toolPath("prlimit") else { try Test.cancel("prlimit(1) is not installed") }
        let f = FaultFixture()
        let b = f.folder.file("b.img")
        try FileManager.default.copyItem(atPath: GoldenImages.path("B", sectors: 8192), toPath: b)
        // A's part lies below the 2 MiB file size limit, B's above it.
        let table = f.folder.write("t.table", "0 2048 linear A 0\n2048 2048 linear B 4096\n")
        let input = GoldenImages.path("C", sectors: 4096)
        let oldA = readBytes(f.a)
        let oldB = readBytes(b)
        try expectUnchanged([input, table]) {
            let run = try imgmap(["scatter", table, input, "--dev", "A=\(f.a)", "--dev", "B=\(b)"],
                                 wrapper: [prlimit, "--fsize=\(2 << 20)", "--"], in: f.folder)
            #expect(run.status == 74, "\(run.stderr)")
            #expect(run.stderr == "imgmap: \(b): pwrite at offset \(2 << 20): File too large; already written before the failure (device sectors start+length): 0+2048\n")
        }
        let newA = readBytes(f.a)
        #expect(newA[0..<2048 * 512] == readBytes(input)[0..<2048 * 512])
        #expect(newA[(2048 * 512)...] == oldA[(2048 * 512)...])
        #expect(readBytes(b) == oldB)
    }
}

/// Whether process `pid` holds an output for `name` in `folder` open: the unnamed (O_TMPFILE) file,
/// which /proc shows as `FOLDER/#INODE (deleted)`, or a named `NAME.tmp-…`.
func holdsOutput(_ pid: pid_t, in folder: String, named name: String) -> Bool {
    let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
    return fds.contains { fd in
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)") else { return false }
        return target.hasPrefix(folder + "/#") || target.hasPrefix(folder + "/\(name).tmp-")
    }
}
