import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import ImgMapCore

// The `imgmap` executable run as a subprocess: exit statuses (sysexits), messages, outputs that appear
// whole or not at all, and inputs left untouched. Uses the binary the same build made.

/// The `imgmap` built beside this test bundle, so a build with another `--scratch-path` (a sanitizer
/// build, say) tests its own binary; `.build/debug/imgmap` under the package root otherwise.
let imgmapBinary: String = {
    if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        let beside = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("imgmap").path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
    }
    return packageRootURL.appendingPathComponent(".build/debug/imgmap").path
}()

/// What a run of the binary did.
struct Run {
    var status: Int32
    var stdout: [UInt8]
    var stderr: String
    var out: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs `imgmap arguments…` with stdout and stderr collected in files (no pipe can fill up), stdin
/// from `stdin` text or the file `stdinFile` (or /dev/null), in `directory`. With `stdoutTo`, stdout is
/// that existing file instead, opened for writing without truncation (as `>>` would). `environment`
/// entries are added to (or replace) the inherited environment. `wrapper` goes in front of the binary
/// (it must exec it: `prlimit --fsize=N`, `setpriv --reuid=…`).
func imgmap(_ arguments: [String], stdin: String? = nil, stdinFile: String? = nil, stdoutTo: String? = nil,
            environment: [String: String] = [:], wrapper: [String] = [], in directory: TemporaryDirectory) throws -> Run {
    let io = TemporaryDirectory("imgmap-cli-io")
    let outPath = io.file("stdout")
    let errPath = io.file("stderr")
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    let inPath = stdinFile ?? stdin.map { io.write("stdin", $0) } ?? "/dev/null"
    let child = try Child(arguments, wrapper: wrapper, stdin: inPath, stdout: .init(stdoutTo ?? outPath, append: stdoutTo != nil),
                          stderr: .init(errPath), environment: environment, in: directory.path)
    let end = child.wait()
    return Run(status: end.status, stdout: readBytes(outPath), stderr: String(decoding: readBytes(errPath), as: UTF8.self))
}

/// Runs `imgmap arguments…` under GNU time and returns its peak resident set in bytes too, or nil when
/// /usr/bin/time is missing. wait4(2) on a child started from the test process cannot tell: a process
/// spawned with vfork semantics keeps, across exec, the peak of the (large, busy) test process it
/// shared memory with until then. `time` forks the binary from its own small process.
func imgmapPeakRSS(_ arguments: [String], in directory: TemporaryDirectory) throws -> (Run, Int?) {
    let time = "/usr/bin/time"
    guard FileManager.default.isExecutableFile(atPath: time) else { return (try imgmap(arguments, in: directory), nil) }
    let folder = TemporaryDirectory("imgmap-rss")
    let report = folder.file("rss")
    let run = try imgmap(arguments, wrapper: [time, "-f", "%M", "-o", report], in: directory)
    let text = String(decoding: readBytes(report), as: UTF8.self)
    withExtendedLifetime(folder) {}
    let kib = text.split(separator: "\n").last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    return (run, kib.map { $0 * 1024 })
}

/// A child process started with posix_spawn(2) and not waited for: the test can signal it, feed or
/// starve its FIFOs, and collect its status and peak RSS with wait4(2). Its standard streams are opened
/// in the child from paths (files, FIFOs, /dev/null), so no descriptor of the test process — which runs
/// tests in parallel — leaks into it, and none of its own leak into other tests' children.
final class Child: @unchecked Sendable {
    struct Stream {
        var path: String
        var append = false
        init(_ path: String, append: Bool = false) {
            self.path = path
            self.append = append
        }
    }

    let pid: pid_t
    private var ended: (status: Int32, maxRSSBytes: Int)?

    /// Starts `wrapper… imgmap arguments…` in `directory` (through `/bin/sh -c 'cd …; exec …'`, so the pid
    /// stays the binary's). SWIFT_BACKTRACE is off, so a crash ends the child at once with its signal.
    init(_ arguments: [String], wrapper: [String] = [], program: String = imgmapBinary, stdin: String = "/dev/null",
         stdout: Stream, stderr: Stream, environment extra: [String: String] = [:], in directory: String,
         shellPrefix: String = "") throws {
        let script = "cd \"$0\" || exit 127; \(shellPrefix)exec \"$@\""
        let argv = ["/bin/sh", "-c", script, directory] + wrapper + [program] + arguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout.path, O_WRONLY | O_CREAT | (stdout.append ? O_APPEND : 0), 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr.path, O_WRONLY | O_CREAT | (stderr.append ? O_APPEND : 0), 0o644)
        // A clean signal state, as from a shell: the test's worker threads block most signals, and a
        // spawned child inherits the mask of the thread that starts it.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
        environment["SWIFT_BACKTRACE"] = "enable=no"
        let env = environment.map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let rc = withCStrings(argv) { cargv in
            withCStrings(env) { cenv in posix_spawn(&pid, "/bin/sh", &actions, &attributes, cargv, cenv) }
        }
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
        self.pid = pid
    }

    deinit {
        if ended == nil {
            kill(pid, SIGKILL)
            _ = wait()
        }
    }

    /// kill(2).
    func send(_ signal: Int32) { kill(pid, signal) }

    /// Whether the child has not exited yet (a zombie, not yet reaped by `wait()`, has exited).
    var isRunning: Bool {
        guard ended == nil, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[close...].hasPrefix(") Z")
    }

    /// Waits with wait4(2): the exit status (128 + N when killed by signal N) and the peak RSS.
    @discardableResult
    func wait() -> (status: Int32, maxRSSBytes: Int) {
        if let ended { return ended }
        var raw: Int32 = 0
        var usage = rusage()
        while wait4(pid, &raw, 0, &usage) < 0 && errno == EINTR {}
        let signal = raw & 0x7f
        let status = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
        let end = (status, Int(usage.ru_maxrss) * 1024)
        ended = end
        return end
    }
}

/// Calls `body` with a NULL-terminated C array of `strings`.
private func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    return body(pointers)
}

/// A FIFO the test reads: opened before the child starts (so the child's open never blocks), with
/// O_CLOEXEC so no other child inherits it. The test holds a write end of its own until the child's
/// first bytes arrive, so a read before the child has opened the FIFO waits instead of seeing EOF.
final class FifoReader {
    let path: String
    private(set) var fd: Int32
    /// The test's own write end: held until the first bytes arrive, or used to fill the pipe.
    private var filler: Int32 = -1
    private(set) var fillerBytes = 0

    init(_ path: String) {
        self.path = path
        precondition(mkfifo(path, 0o600) == 0, "mkfifo \(path)")
        fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        precondition(fd >= 0)
        filler = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
        precondition(filler >= 0)
        _ = fcntl(fd, F_SETFL, 0)
    }

    deinit {
        closeFiller()
        close()
    }

    /// Closes the read end: the child's next write fails with EPIPE.
    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// Fills the pipe with whole pages, so the child's next write to it blocks: a gate that holds the
    /// child at its first write (its first progress line, say) until `readAll` drains it.
    func fill() {
        let page = [UInt8](repeating: UInt8(ascii: "#"), count: 4096)
        while true {
            let n = page.withUnsafeBytes { write(filler, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EAGAIN { break }
            precondition(n == 4096, "filling \(path): \(n), errno \(errno)")
            fillerBytes += n
        }
    }

    /// Closes the test's own write end (once the child has its own), so EOF comes when the child exits.
    func closeFiller() {
        if filler >= 0 { Glibc.close(filler) }
        filler = -1
    }

    /// Reads exactly `count` bytes (fewer only at end of input). Waits at most 60 s for the first byte.
    func read(_ count: Int, sourceLocation: SourceLocation = #_sourceLocation) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        if filler >= 0 {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 60_000) <= 0 {
                Issue.record("no output from the child in 60 s", sourceLocation: sourceLocation)
                return []
            }
            closeFiller()
        }
        while done < count {
            let n = out.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, count - done) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            done += n
        }
        return Array(out[0..<done])
    }

    /// Reads to end of input (every writer closed), dropping the filler bytes.
    func readAll() -> [UInt8] {
        closeFiller()
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return Array(out.dropFirst(fillerBytes))
    }

    func readAllText() -> String { String(decoding: readAll(), as: UTF8.self) }
}

/// Waits until `condition` holds, checking every 2 ms, for at most 60 s: synchronises on something the
/// child did (a file appeared), never on elapsed time; the limit only turns a hang into a failure.
func waitUntil(_ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ condition: () -> Bool) {
    for _ in 0..<30_000 {
        if condition() { return }
        usleep(2000)
    }
    Issue.record("timed out waiting until \(what)", sourceLocation: sourceLocation)
}

/// Runs `command` with /bin/sh in `directory` (for pipelines), stdout and stderr collected in files.
/// `$IMGMAP` in the command is the binary under test.
func shell(_ command: String, in directory: TemporaryDirectory) throws -> Run {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    process.currentDirectoryURL = directory.url
    process.environment = ProcessInfo.processInfo.environment.merging(["IMGMAP": imgmapBinary]) { $1 }
    let io = TemporaryDirectory("imgmap-cli-io")
    let outPath = io.file("stdout")
    let errPath = io.file("stderr")
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
    try process.run()
    process.waitUntilExit()
    return Run(status: process.terminationStatus, stdout: readBytes(outPath), stderr: String(decoding: readBytes(errPath), as: UTF8.self))
}

/// Runs `body` and checks that none of `paths` changed (SHA-256 before and after).
func expectUnchanged(_ paths: [String], sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) rethrows {
    let before = paths.map { sha256(file: $0) }
    try body()
    let after = paths.map { sha256(file: $0) }
    #expect(before == after, "an input changed", sourceLocation: sourceLocation)
    #expect(!before.contains(nil), "an input is missing", sourceLocation: sourceLocation)
}

/// A folder with images A (256 sectors) and B (128 sectors) and a table over them.
struct CLIFixture {
    let folder = TemporaryDirectory("imgmap-cli")
    let a: String
    let b: String
    /// 0..<64 linear A 8, 64..<80 zero, 80..<96 error, 96..<160 striped over A and B.
    static let mixedTable = "0 64 linear A 8\n64 16 zero\n80 16 error\n96 64 striped 2 8 A 100 B 0\n"
    static let cleanTable = "0 64 linear A 8\n64 16 zero\n80 64 striped 2 8 A 100 B 0\n"

    init() {
        a = folder.file("a.img")
        b = folder.file("b.img")
        try! FileManager.default.copyItem(atPath: GoldenImages.path("A", sectors: 256), toPath: a)
        try! FileManager.default.copyItem(atPath: GoldenImages.path("B", sectors: 128), toPath: b)
    }

    var devs: [String] { ["--dev", "A=\(a)", "--dev", "B=\(b)"] }
    /// For tables that name only `A`: a `--dev` no table uses is a usage error.
    var devA: [String] { ["--dev", "A=\(a)"] }
    var images: [String] { [a, b] }

    /// The bytes the table must compose to, from the in-process engine (errors as zeros).
    func expectedBytes(_ table: String) throws -> [UInt8] {
        try readAll(SectorMap(top: try loadTables(table, devices: ["A": a, "B": b]).top))
    }

    /// Entries of the folder other than the images and tables it was given.
    func leftovers(besides names: [String]) -> [String] {
        folder.entries().filter { !(["a.img", "b.img"] + names).contains($0) }
    }
}

@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: imgmapBinary),
                "imgmap binary not found at .build/debug/imgmap: run `swift build` first"))
struct CLITests {
    // MARK: exit statuses

    @Test func validComposeExitsZeroAndWritesTheDevice() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", table] + f.devs + ["-o", f.folder.file("out.img")], in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stderr == "")
            #expect(readBytes(f.folder.file("out.img")) == (try f.expectedBytes(CLIFixture.cleanTable)))
        }
        #expect(f.leftovers(besides: ["t.table", "out.img"]) == [])
    }

    @Test func unknownOptionExits64() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let run = try imgmap(["compose", table, "--bogus", "-o", "out.img"] + f.devs, in: f.folder)
        #expect(run.status == 64)
        #expect(run.stderr.contains("--bogus"))
        #expect(!fileExists(f.folder.file("out.img")))
    }

    @Test func missingOutputOptionExits64() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        #expect(try imgmap(["compose", table] + f.devs, in: f.folder).status == 64)
    }

    @Test func malformedDevBindingExits64() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let run = try imgmap(["check", table, "--dev", "A"], in: f.folder)
        #expect(run.status == 64)
        #expect(run.stderr == "imgmap: --dev A: expected NAME=VALUE\n")
    }

    @Test func badTableExits65NamingFileAndLine() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 64 linear A 8\n64 16 Bogus\n")
        try expectUnchanged(f.images + [table]) {
            let compose = try imgmap(["compose", table] + f.devA + ["-o", "out.img"], in: f.folder)
            #expect(compose.status == 65)
            #expect(compose.stderr.hasPrefix("imgmap: \(table):2: unknown target type: `Bogus`"), "\(compose.stderr)")
            let check = try imgmap(["check", table] + f.devA, in: f.folder)
            #expect(check.status == 65)
            #expect(check.stderr.contains("\(table):2: "))
        }
        #expect(f.leftovers(besides: ["t.table"]) == [])
    }

    @Test func missingImageExits66() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let missing = f.folder.file("missing.img")
        let run = try imgmap(["compose", table, "--dev", "A=\(missing)", "--dev", "B=\(f.b)", "-o", "out.img"], in: f.folder)
        #expect(run.status == 66)
        #expect(run.stderr.contains("\(missing): No such file or directory"), "\(run.stderr)")
        #expect(f.leftovers(besides: ["t.table"]) == [])
    }

    @Test func missingTableExits66() throws {
        let f = CLIFixture()
        let run = try imgmap(["check", f.folder.file("nothing.table")], in: f.folder)
        #expect(run.status == 66)
        #expect(run.stderr.contains("nothing.table: open: No such file or directory"))
    }

    @Test func outputInAMissingDirectoryExits73() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let out = f.folder.file("no/such/dir/out.img")
        let run = try imgmap(["compose", table] + f.devs + ["-o", out], in: f.folder)
        #expect(run.status == 73)
        #expect(run.stderr.contains("the directory \(f.folder.path)/no/such/dir does not exist"), "\(run.stderr)")
    }

    @Test func errorExtentWithoutOnErrorZeroExits74AndLeavesNoOutput() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", table] + f.devs + ["-o", "out.img", "--errors", "errors.txt"], in: f.folder)
            #expect(run.status == 74)
            #expect(run.stderr.contains("sectors 80+16 (\(table):3 error): Input/output error"), "\(run.stderr)")
        }
        #expect(!fileExists(f.folder.file("out.img")))
        #expect(!f.folder.entries().contains { $0.hasPrefix("out.img.tmp-") })
        // The errors file still lists the ranges, so the failure can be looked into.
        #expect(String(decoding: readBytes(f.folder.file("errors.txt")), as: UTF8.self) == "80 16\n")
    }

    @Test func failedComposeKeepsAnExistingOutput() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        let old = f.folder.write("out.img", "previous contents")
        let run = try imgmap(["compose", table] + f.devs + ["-o", old], in: f.folder)
        #expect(run.status == 74)
        #expect(String(decoding: readBytes(old), as: UTF8.self) == "previous contents")
    }

    // MARK: outputs that are inputs

    @Test func outputThatIsAnImageIsRefused() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", table] + f.devs + ["-o", f.a], in: f.folder)
            #expect(run.status == 64)
            #expect(run.stderr.contains("the output is also an input"), "\(run.stderr)")
        }
        #expect(f.leftovers(besides: ["t.table"]) == [])
    }

    @Test func outputThatIsTheTableIsRefused() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", "t.table"] + f.devs + ["-o", table], in: f.folder)
            #expect(run.status == 64)
        }
    }

    @Test func outputThatIsTheDmsetupLsFileIsRefused() throws {
        let f = CLIFixture()
        let dump = f.folder.write("dump.txt", "lv: 0 8 linear 253:0 0\npool: 0 32 linear 8:16 0\n")
        let ls = f.folder.write("ls.txt", "pool\t(253:0)\n")
        try expectUnchanged(f.images + [dump, ls]) {
            let run = try imgmap(["compose", dump, "--dmsetup-ls", ls, "--dev", "8:16=\(f.a)", "-o", ls], in: f.folder)
            #expect(run.status == 64)
            #expect(run.stderr.contains("the output is also an input"), "\(run.stderr)")
        }
    }

    @Test func outputThatIsAHardLinkToAnImageIsRefused() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let link = f.folder.file("link.img")
        try FileManager.default.linkItem(atPath: f.a, toPath: link)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", table] + f.devs + ["-o", link], in: f.folder)
            #expect(run.status == 64)
        }
    }

    @Test func stdoutThatIsAnImageIsRefused() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", table] + f.devs + ["-o", "-"], stdoutTo: f.b, in: f.folder)
            #expect(run.status == 64)
            #expect(run.stderr.contains("standard output is the input \(f.b)"), "\(run.stderr)")
        }
    }

    // MARK: stdin and stdout

    @Test func tableFromStdinComposesTheSameDevice() throws {
        let f = CLIFixture()
        try expectUnchanged(f.images) {
            let run = try imgmap(["compose", "-"] + f.devs + ["-o", "out.img"], stdin: CLIFixture.cleanTable, in: f.folder)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(readBytes(f.folder.file("out.img")) == (try f.expectedBytes(CLIFixture.cleanTable)))
        }
    }

    @Test func badTableFromStdinIsNamedStdin() throws {
        let f = CLIFixture()
        let run = try imgmap(["check", "-"], stdin: "0 8 zero\n9 8 zero\n", in: f.folder)
        #expect(run.status == 65)
        #expect(run.stderr.hasPrefix("imgmap: <stdin>:2: Gap in table"), "\(run.stderr)")
    }

    @Test func streamingToStdoutGivesTheFilesBytes() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        try expectUnchanged(f.images + [table]) {
            let file = try imgmap(["compose", table] + f.devs + ["-o", "out.img", "--on-error", "zero"], in: f.folder)
            #expect(file.status == 0, "\(file.stderr)")
            let stream = try imgmap(["compose", table] + f.devs + ["-o", "-", "--on-error", "zero"], in: f.folder)
            #expect(stream.status == 0, "\(stream.stderr)")
            #expect(stream.stdout.count == 160 * 512)
            #expect(stream.stdout == readBytes(f.folder.file("out.img")))
            #expect(stream.stdout == (try f.expectedBytes(CLIFixture.mixedTable)))
        }
    }

    // MARK: --errors

    @Test func errorsFileListsMergedRanges() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 8 error\n8 8 error\n16 8 zero\n24 1 error\n25 7 linear A 0\n")
        let run = try imgmap(["compose", table] + f.devA + ["-o", "out.img", "--on-error", "zero", "--errors", "errors.txt"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(String(decoding: readBytes(f.folder.file("errors.txt")), as: UTF8.self) == "0 16\n24 1\n")
    }

    @Test func errorsFileIsEmptyWhenThereAreNone() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.cleanTable)
        let run = try imgmap(["compose", table] + f.devs + ["-o", "out.img", "--on-error", "zero", "--errors", "errors.txt"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(fileExists(f.folder.file("errors.txt")))
        #expect(fileSize(f.folder.file("errors.txt")) == 0)
    }

    @Test func errorsFileIsReplacedOnARerun() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        f.folder.write("errors.txt", "stale\n")
        let run = try imgmap(["compose", table] + f.devs + ["-o", "out.img", "--on-error", "zero", "--errors", "errors.txt"], in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(String(decoding: readBytes(f.folder.file("errors.txt")), as: UTF8.self) == "80 16\n")
    }

    @Test func errorsFileThatIsAnImageIsRefused() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        try expectUnchanged(f.images + [table]) {
            let run = try imgmap(["compose", table] + f.devs + ["-o", "out.img", "--on-error", "zero", "--errors", f.b], in: f.folder)
            #expect(run.status == 64)
        }
        #expect(f.leftovers(besides: ["t.table"]) == [])
    }

    // MARK: map and check

    @Test func mapJSONLinesCarryTheDocumentedKeys() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        let run = try imgmap(["map", table, "--json"] + f.devs, in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        let lines = run.out.split(separator: "\n")
        #expect(lines.count == 11)  // linear, zero, error, then one extent per chunk of the striped segment
        var position = 0
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let keys = Set(object.keys)
            #expect(keys.isSuperset(of: ["start", "length", "target", "device", "file", "offset", "table", "line"]), "\(line)")
            #expect(object["start"] as? Int == position)
            position += object["length"] as? Int ?? 0
            #expect(object["table"] as? String == table)
        }
        #expect(position == 160)
        let first = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(first["target"] as? String == "linear")
        #expect(first["device"] as? String == "A")
        #expect(first["file"] as? String == f.a)
        #expect(first["offset"] as? Int == 8)
        #expect(first["line"] as? Int == 1)
        let error = try #require(try JSONSerialization.jsonObject(with: Data(lines[2].utf8)) as? [String: Any])
        #expect(error["error"] as? Bool == true)
        #expect(error["file"] is NSNull)
        #expect(error["offset"] is NSNull)
    }

    @Test func mapColumnsHaveAHeaderAndOneLinePerExtent() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 64 linear A 8\n64 16 zero\n")
        let run = try imgmap(["map", table] + f.devA, in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        let lines = run.out.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(lines == [
            ["START", "LENGTH", "TARGET", "DEVICE", "OFFSET", "TABLE:LINE", "FILE"],
            ["0", "64", "linear", "A", "8", "\(table):1", f.a],
            ["64", "16", "zero", "-", "-", "\(table):2", "-"],
        ])
    }

    @Test func checkPrintsTheSize() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        let run = try imgmap(["check", table] + f.devs, in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.out == "160 sectors (81920 bytes, 80.0 KiB): 4 segments in 1 table\n")
    }

    @Test func checkJSONPrintsTheSize() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", CLIFixture.mixedTable)
        let run = try imgmap(["check", table, "--json"] + f.devs, in: f.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.out == "{\"device\":\"top\",\"sectors\":160,\"bytes\":81920,\"segments\":4,\"tables\":1}\n")
    }

    @Test func checkOfAMissingNamedImageExits66() throws {
        let f = CLIFixture()
        let table = f.folder.write("t.table", "0 8 linear /nonexistent/imgmap/a.img 0\n")
        let run = try imgmap(["check", table], in: f.folder)
        #expect(run.status == 66)
        #expect(run.stderr.contains("\(table):1: linear: Device lookup failed: /nonexistent/imgmap/a.img: No such file or directory"), "\(run.stderr)")
    }

    @Test func stackedTablesAndDumpBindingsWorkFromTheCommandLine() throws {
        let f = CLIFixture()
        let lower = f.folder.write("pv.table", "0 200 linear A 50\n")
        let dump = f.folder.write("dump.txt", "lv: 0 16 linear 253:0 4\npool: 0 32 linear 8:16 0\n")
        let ls = f.folder.write("ls.txt", "pool\t(253:0)\n")
        let stacked = try imgmap(["check", "-", "--table", "pv=\(lower)", "--dev", "A=\(f.a)"], stdin: "0 100 linear pv 10\n", in: f.folder)
        #expect(stacked.status == 0, "\(stacked.stderr)")
        #expect(stacked.out.hasPrefix("100 sectors"))
        let dumped = try imgmap(["check", dump, "--dmsetup-ls", ls, "--dev", "8:16=\(f.a)"], in: f.folder)
        #expect(dumped.status == 0, "\(dumped.stderr)")
        #expect(dumped.out.hasPrefix("16 sectors"))
    }
}
