import Foundation
import Testing

@testable import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

// `imgmap serve` as a real process: the connection cap seen from outside (threads and resident memory
// of the server while clients wait), SIGTERM in the middle of a stream of FUA writes, the server and
// its clients run as an unprivileged user, and nbdfuse over FUSE. Nothing waits on a clock: the tests
// synchronise on what the server printed, on acknowledgements received, and on files appearing.

/// `Threads:` and `VmRSS:` (bytes) of a running process, from /proc.
func processStatus(_ pid: pid_t) -> (threads: Int, rssBytes: Int)? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    func field(_ name: String) -> Int? {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return nil }
        return line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first.flatMap { Int($0) }
    }
    guard let threads = field("Threads"), let rss = field("VmRSS") else { return nil }
    return (threads, rss * 1024)
}

/// Whether FUSE can be tried here: /dev/fuse, fusermount3 or fusermount, and nbdfuse. (Whether a mount
/// actually works is found out by mounting.)
let fusePrerequisites: String? = {
    if !FileManager.default.fileExists(atPath: "/dev/fuse") { return "/dev/fuse is missing" }
    if !installed("fusermount3"), !installed("fusermount") { return "neither fusermount3 nor fusermount is in PATH (package fuse3)" }
    if !installed("nbdfuse") { return "nbdfuse (libnbd-bin) is not installed" }
    return nil
}()

@Suite(.serialized, .enabled(if: FileManager.default.isExecutableFile(atPath: imgmapBinary), "imgmap binary not found: run `swift build` first"))
struct ServeProcessTests {
    /// A writable table over three images: 1 MiB linear, then 1 MiB striped over two members in 4 KiB
    /// chunks, so 4 KiB blocks at 4 KiB offsets each land whole in one member.
    static let table = "0 2048 linear A 0\n2048 2048 striped 2 8 M0 0 M1 0\n"
    static let images: [String: [UInt8]] = ["A": servePattern(1 << 20, seed: 11), "M0": servePattern(512 << 10, seed: 12),
                                            "M1": servePattern(512 << 10, seed: 13)]

    final class Server {
        let folder = TemporaryDirectory("imgmap-serve-process")
        let socket: String
        let child: Child
        let out: String, err: String

        init(_ options: [String]) throws {
            for (name, bytes) in ServeProcessTests.images { try Data(bytes).write(to: URL(fileURLWithPath: folder.file(name + ".img"))) }
            folder.write("t.table", ServeProcessTests.table)
            socket = folder.file("s.sock")
            out = folder.file("out")
            err = folder.file("err")
            let devs = ServeProcessTests.images.keys.sorted().flatMap { ["--dev", "\($0)=\($0).img"] }
            child = try Child(["serve", "t.table"] + devs + ["--socket", socket] + options,
                              stdout: .init(out), stderr: .init(err), in: folder.path)
            let out = out
            waitUntil("the server prints its URI") { String(decoding: readBytes(out), as: UTF8.self).contains("\n") }
        }

        var stderr: String { String(decoding: readBytes(err), as: UTF8.self) }

        /// The device as the members now hold it.
        func device() throws -> [UInt8] {
            let devices = ServeProcessTests.images.keys.reduce(into: [String: String]()) { $0[$1] = folder.file($1 + ".img") }
            return try readAll(SectorMap(top: try loadTables(ServeProcessTests.table, devices: devices).top))
        }
    }

    @Test func overTheCapClientsWaitAndCostTheServerNoThreadsOrMemory() throws {
        let server = try Server(["--max-connections", "2"])
        let before = try #require(processStatus(server.child.pid))
        let device = try server.device()
        let served = try (0..<2).map { _ in try TestNBDClient(path: server.socket) }
        for (i, c) in served.enumerated() {
            #expect(c.open() != nil)
            // A whole-device read: the connection's piece buffer is in use.
            let same = c.request(NBD.cmdRead, offset: 0, length: UInt32(device.count), cookie: UInt64(i))?.data == device
            #expect(same, "connection \(i): whole-device read")
        }
        let waiting = try (0..<40).map { _ in try TestNBDClient(path: server.socket) }
        for (i, c) in served.enumerated() {
            let same = c.request(NBD.cmdRead, offset: 1 << 20, length: 1 << 20, cookie: UInt64(i))?.data == Array(device[(1 << 20)...])
            #expect(same, "connection \(i): read while 40 clients wait")
        }
        let during = try #require(processStatus(server.child.pid))
        // One thread per connection served, none for the 40 waiting; memory grows by the two
        // connections' buffers (2 MiB each) and stacks, not by 42 of them.
        #expect(during.threads == before.threads + 2, "threads \(before.threads) → \(during.threads)")
        #expect(during.rssBytes - before.rssBytes < 16 << 20, "RSS \(before.rssBytes) → \(during.rssBytes)")
        #expect(waiting.allSatisfy { !$0.hasSomethingToRead })
        server.child.send(SIGTERM)
        #expect(server.child.wait().status == 0, "\(server.stderr)")
    }

    /// The reply to a request, simple replies: (error, cookie), or nil when the connection ended.
    static func simpleReply(_ client: TestNBDClient) -> (error: UInt32, cookie: UInt64)? {
        guard let r = client.receive(16), TestNBDClient.u32(r[0..<4]) == NBD.simpleReplyMagic else { return nil }
        return (TestNBDClient.u32(r[4..<8]), TestNBDClient.u64(r[8..<16]))
    }

    @Test func sigtermDuringFUAWritesKeepsEveryAcknowledgedWrite() throws {
        let server = try Server(["--writable"])
        let original = try server.device()
        let block = 4096
        let blocks = original.count / block
        func payload(_ i: Int) -> [UInt8] { servePattern(block, seed: UInt64(1000 + i)) }
        let client = try TestNBDClient(path: server.socket)
        #expect(client.open(structured: false) != nil)
        // Eight requests in flight at a time, each WRITE with FUA and a FLUSH after every 16th; SIGTERM
        // once 64 writes are acknowledged, and the client goes on sending until the server is gone.
        let window = 8, signalAfter = 64
        let flushCookie: UInt64 = 1 << 40
        var next = 0
        var inFlight: [UInt64: Int] = [:]
        var sent = Set<Int>(), acknowledged = Set<Int>()
        var signalled = false
        while true {
            while inFlight.count < window, next < blocks {
                client.send(NBDRequest(flags: NBD.cmdFlagFUA, type: NBD.cmdWrite, cookie: UInt64(next), offset: UInt64(next * block),
                                       length: UInt32(block)).bytes + payload(next))
                inFlight[UInt64(next)] = next
                sent.insert(next)
                if next % 16 == 15 {
                    client.send(NBDRequest(type: NBD.cmdFlush, cookie: flushCookie + UInt64(next), offset: 0, length: 0).bytes)
                    inFlight[flushCookie + UInt64(next)] = -1
                }
                next += 1
            }
            guard !inFlight.isEmpty, let (error, cookie) = Self.simpleReply(client) else { break }
            if let i = inFlight.removeValue(forKey: cookie), i >= 0, error == 0 { acknowledged.insert(i) }
            if acknowledged.count >= signalAfter, !signalled {
                server.child.send(SIGTERM)
                signalled = true
            }
        }
        #expect(signalled)
        #expect(server.child.wait().status == 0, "\(server.stderr)")
        #expect(!fileExists(server.socket))
        #expect(server.folder.entries() == ["A.img", "M0.img", "M1.img", "err", "out", "t.table"])
        let device = try server.device()
        for i in 0..<blocks {
            let now = Array(device[i * block..<(i + 1) * block])
            let before = Array(original[i * block..<(i + 1) * block])
            if acknowledged.contains(i) {
                let landed = now == payload(i)
                #expect(landed, "block \(i) was acknowledged but is not in the members")
            } else if sent.contains(i) {
                let whole = now == payload(i) || now == before
                #expect(whole, "block \(i) (sent, not acknowledged) is torn")
            } else {
                let unchanged = now == before
                #expect(unchanged, "block \(i) was never sent but changed")
            }
        }
    }

    @Test(.enabled(if: installed("nbdcopy") && installed("qemu-io"), "nbdcopy (libnbd-bin) or qemu-io (qemu-utils) is not installed"))
    func servesAndWritesAsAnUnprivilegedUser() throws {
        var wrapper: [String] = []
        var expectedUID = getuid()
        if getuid() == 0 {
            guard let nobody = asNobody else { try Test.cancel("running as root without setpriv: cannot run serve as nobody") }
            wrapper = nobody
            expectedUID = 65534
        }
        let files = ServeClientTests.Files(table: "0 64 linear A 0\n64 32 zero\n96 64 striped 2 8 M0 0 M1 0\n")
        chmod(files.folder.path, 0o777)
        for name in files.images.keys { chmod(files.folder.file(name + ".img"), 0o666) }
        chmod(files.folder.file("t.table"), 0o644)
        let compose = try shell("\"$IMGMAP\" compose t.table \(files.devs) -o composed.img", in: files.folder)
        #expect(compose.status == 0, "\(compose.stderr)")
        let command = #"id -u > uid.txt && nbdcopy "$uri" copy.img && qemu-io -f raw -c "write -P 0xab 1000 5000" -c flush "$uri""#
        let quoted = "'" + command.replacingOccurrences(of: "'", with: "'\\''") + "'"
        // The captive server makes its socket in a private folder under TMPDIR, as that user.
        let run = try shell("TMPDIR=/tmp \(wrapper.joined(separator: " ")) \"$IMGMAP\" serve t.table \(files.devs) --writable --run \(quoted)",
                            in: files.folder)
        #expect(run.status == 0, "\(run.out) \(run.stderr)")
        #expect(files.readText("uid.txt").trimmingCharacters(in: .whitespacesAndNewlines) == "\(expectedUID)")
        let copied = readBytes(files.folder.file("copy.img")) == readBytes(files.folder.file("composed.img"))
        #expect(copied, "nbdcopy as that user equals compose")
        var a = files.images["A"]!
        for k in 1000..<6000 { a[k] = 0xab }
        let written = readBytes(files.folder.file("A.img")) == a
        let untouched = readBytes(files.folder.file("M0.img")) == files.images["M0"]! && readBytes(files.folder.file("M1.img")) == files.images["M1"]!
        #expect(written && untouched, "qemu-io's write as that user lands in A.img only")
    }

    @Test func nbdfuseExposesTheDeviceAsAFileAndWritesReachTheMembers() throws {
        if let missing = fusePrerequisites {
            print("ServeProcessTests: nbdfuse test skipped: \(missing)")
            try Test.cancel("FUSE not usable: \(missing)")
        }
        let fusermount = installed("fusermount3") ? "fusermount3" : "fusermount"
        let files = ServeClientTests.Files(table: "0 64 linear A 0\n64 32 zero\n96 64 striped 2 8 M0 0 M1 0\n")
        _ = try shell("mkdir mnt && \"$IMGMAP\" compose t.table \(files.devs) -o composed.img", in: files.folder)
        // nbdfuse writes its pid file once the mount is up; until then, or if it fails first, wait. A
        // second file holds the bytes to write, 0x5c over the first striped chunk and beyond.
        try Data(repeating: 0x5c, count: 6000).write(to: URL(fileURLWithPath: files.folder.file("patch")))
        let command = """
            nbdfuse -P pid mnt "$uri" 2> fuse.err & f=$!
            until [ -s pid ] || ! kill -0 $f 2>/dev/null; do sleep 0.05; done
            [ -s pid ] || { wait $f; echo "nbdfuse exited $? before mounting" >> fuse.err; exit 77; }
            cmp mnt/nbd composed.img && dd if=patch of=mnt/nbd bs=1000 seek=50 conv=notrunc,fsync status=none
            rc=$?
            \(fusermount) -u mnt
            wait $f
            exit $rc
            """
        let run = try files.serve("--writable", command)
        if run.status == 77 {
            let why = files.readText("fuse.err")
            // The client never got as far as the server: mounting is what failed (a container without
            // FUSE rights, say). Anything else is a failure of the test.
            if why.contains("fuse") || why.contains("mount") {
                print("ServeProcessTests: nbdfuse test skipped: mounting failed: \(why)")
                try Test.cancel("FUSE mount not possible here: \(why)")
            }
        }
        #expect(run.status == 0, "\(run.out) \(run.stderr) \(files.readText("fuse.err"))")
        // The patch lies in the striped segment: both members take their part.
        var expected = readBytes(files.folder.file("composed.img"))
        for k in 50_000..<56_000 { expected[k] = 0x5c }
        let landed = try readAll(try files.loaded()) == expected
        #expect(landed, "the write through the FUSE file is in the members")
    }
}
