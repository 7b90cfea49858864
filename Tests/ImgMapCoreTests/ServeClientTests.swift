import Foundation
import Testing

@testable import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

// `imgmap serve` with the NBD clients people use, each run by the binary's captive mode
// (`--run CMD`: the server lives exactly as long as CMD, so nothing is left behind and nothing waits on
// a clock). Each test is skipped, with the tool named, when the tool is not installed (.ci/run installs
// libnbd-bin, python3-libnbd, qemu-utils and nbdkit).

/// Whether `tool` is on PATH.
func installed(_ tool: String) -> Bool {
    (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").contains {
        FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)")
    }
}

/// Debian's python3 with the libnbd binding (the pyenv one first in PATH lacks it).
let pythonWithNBD: Bool = {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else { return false }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    p.arguments = ["-c", "import nbd"]
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return false }
    p.waitUntilExit()
    return p.terminationStatus == 0
}()

@Suite(.serialized, .enabled(if: FileManager.default.isExecutableFile(atPath: imgmapBinary), "imgmap binary not found: run `swift build` first"))
struct ServeClientTests {
    /// The ServeTests table written to files: linear data, zero, error, a striped pair; plus a sparse
    /// tail so block status has an image hole to report.
    final class Files {
        let folder = TemporaryDirectory("imgmap-serve-clients")
        let images: [String: [UInt8]] = ["A": servePattern(64 * 512, seed: 1), "M0": servePattern(32 * 512, seed: 2),
                                         "M1": servePattern(32 * 512, seed: 3)]
        let devs: String

        init(table: String = ServeTests.table) {
            for (name, bytes) in images { try! Data(bytes).write(to: URL(fileURLWithPath: folder.file(name + ".img"))) }
            folder.write("t.table", table)
            devs = images.keys.sorted().map { "--dev \($0)=\($0).img" }.joined(separator: " ")
        }

        func serve(_ options: String = "", _ command: String) throws -> Run {
            let quoted = "'" + command.replacingOccurrences(of: "'", with: "'\\''") + "'"
            return try shell("\"$IMGMAP\" serve t.table \(devs) \(options) --run \(quoted)", in: folder)
        }

        func loaded() throws -> SectorMap {
            SectorMap(top: try loadTables(readText("t.table"), devices: images.keys.reduce(into: [:]) { $0[$1] = folder.file($1 + ".img") }).top)
        }

        func readText(_ name: String) -> String { String(decoding: readBytes(folder.file(name)), as: UTF8.self) }
    }

    @Test(.enabled(if: installed("nbdinfo"), "nbdinfo (libnbd-bin) is not installed"))
    func nbdinfoSeesTheSizeFlagsAndTheMapOfTheTable() throws {
        let files = Files(table: ServeTests.table.replacingOccurrences(of: "96 8 error", with: "96 8 zero"))
        let info = try files.serve("", #"nbdinfo --json "$uri""#)
        #expect(info.status == 0, "\(info.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(info.stdout)) as? [String: Any])
        let export = try #require((json["exports"] as? [[String: Any]])?.first)
        #expect(export["export-size"] as? Int == ServeTests.size)
        #expect(export["is_read_only"] as? Bool == true)
        #expect(export["can_multi_conn"] as? Bool == true)
        #expect(export["can_flush"] as? Bool == true)
        #expect(json["protocol"] as? String == "newstyle-fixed")
        let writable = try files.serve("--writable", #"nbdinfo --json "$uri""#)
        let wexport = try #require(((try JSONSerialization.jsonObject(with: Data(writable.stdout)) as? [String: Any])?["exports"] as? [[String: Any]])?.first)
        #expect(wexport["is_read_only"] as? Bool == false && wexport["can_trim"] as? Bool == true && wexport["can_zero"] as? Bool == true)

        let map = try files.serve("", #"nbdinfo --map "$uri""#)
        #expect(map.status == 0, "\(map.stderr)")
        var got: [[UInt64]] = []
        for line in map.out.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 3, let o = UInt64(f[0]), let l = UInt64(f[1]), let t = UInt64(f[2]) else { continue }
            if let last = got.last, last[2] == t, last[0] + last[1] == o { got[got.count - 1][1] += l } else { got.append([o, l, t]) }
        }
        // The zero segments (64+32 and the one in place of the error) are holes reading as zeros; the
        // rest is data (the images are dense).
        let expected: [[UInt64]] = [[0, 32768, 0], [32768, 20480, 3], [53248, 32768, 0]]
        #expect(got == expected, "\(map.out)")
    }

    @Test(.enabled(if: installed("nbdcopy"), "nbdcopy (libnbd-bin) is not installed"))
    func nbdcopyToAFileEqualsCompose() throws {
        let files = Files(table: "0 64 linear A 0\n64 32 zero\n96 64 striped 2 8 M0 0 M1 0\n")
        let copy = try files.serve("", #"nbdcopy "$uri" copy.img"#)
        #expect(copy.status == 0, "\(copy.stderr)")
        let compose = try shell("\"$IMGMAP\" compose t.table \(files.devs) -o composed.img", in: files.folder)
        #expect(compose.status == 0, "\(compose.stderr)")
        #expect(readBytes(files.folder.file("copy.img")) == readBytes(files.folder.file("composed.img")))
    }

    @Test(.enabled(if: installed("qemu-img"), "qemu-img (qemu-utils) is not installed"))
    func qemuImgComparesEqualAndMapsTheZeroSegmentAsZero() throws {
        let files = Files(table: "0 64 linear A 0\n64 32 zero\n96 64 striped 2 8 M0 0 M1 0\n")
        _ = try shell("\"$IMGMAP\" compose t.table \(files.devs) -o composed.img", in: files.folder)
        let compare = try files.serve("", #"qemu-img compare -f raw -F raw composed.img "$uri""#)
        #expect(compare.status == 0, "\(compare.out) \(compare.stderr)")
        let map = try files.serve("", #"qemu-img map -f raw --output=json "$uri""#)
        #expect(map.status == 0, "\(map.stderr)")
        let entries = try #require(try JSONSerialization.jsonObject(with: Data(map.stdout)) as? [[String: Any]])
        let zero = entries.filter { $0["zero"] as? Bool == true }.map { [$0["start"] as? Int ?? -1, $0["length"] as? Int ?? -1] }
        #expect(zero == [[64 * 512, 32 * 512]], "\(map.out)")
    }

    @Test(.enabled(if: installed("qemu-io"), "qemu-io (qemu-utils) is not installed"))
    func qemuIoWritesEqualWhatScatterWrites() throws {
        let files = Files()
        let run = try files.serve("--writable", #"qemu-io -f raw -c 'write -P 0xab 1000 5000' -c 'write -P 0x5c 53760 20000' -c 'write -z 57344 4096' -c flush "$uri""#)
        #expect(run.status == 0, "\(run.out) \(run.stderr)")
        var device = try readAll(try Files().loaded())
        for (offset, length, byte) in [(1000, 5000, UInt8(0xab)), (53760, 20000, 0x5c), (57344, 4096, 0)] {
            for k in offset..<offset + length where !(64 * 512..<96 * 512).contains(k) { device[k] = byte }
        }
        let expected = try ServeTests.scattered(device, images: files.images)
        for name in ["A", "M0", "M1"] { #expect(readBytes(files.folder.file(name + ".img")) == expected[name], "\(name).img") }
    }

    @Test(.enabled(if: pythonWithNBD, "python3-libnbd (nbd module for /usr/bin/python3) is not installed"))
    func nbdshEdgeCasesGetTheProtocolsAnswers() throws {
        let files = Files()
        files.folder.write("edge.py", """
            import errno, sys, nbd
            def expect_errno(code, f, *a):
                try:
                    f(*a)
                except nbd.Error as e:
                    assert e.errnum == code, (f, a, e.errnum, e)
                    return
                raise AssertionError("no error from %r %r" % (f, a))
            for structured in (True, False):
                h = nbd.NBD()
                h.set_request_structured_replies(structured)
                h.connect_uri(sys.argv[1])
                assert h.get_structured_replies_negotiated() == structured
                h.set_strict_mode(0)  # let the requests below reach the server
                size = h.get_size()
                assert size == \(ServeTests.size)
                assert h.pread(0, 0) == b""
                a = open("A.img", "rb").read()
                assert h.pread(511, 3) == a[3:514]
                assert h.pread(1024, 63 * 512) == a[63 * 512:] + bytes(512)
                expect_errno(errno.EINVAL, h.pread, 1, size)
                expect_errno(errno.EINVAL, h.pread, 1, 1 << 62)
                expect_errno(errno.EIO, h.pread, 512, 96 * 512)
                expect_errno(errno.EPERM, h.pwrite, b"x", 0)
                h.flush()
                assert h.pread(4096, 0) == a[:4096]
                h.shutdown()
            h = nbd.NBD()
            h.set_opt_mode(True)
            h.connect_uri(sys.argv[1])
            assert h.opt_list_meta_context(lambda name: None) == 1
            h.opt_abort()
            print("ok")
            """)
        let run = try files.serve("", #"/usr/bin/python3 edge.py "$uri""#)
        #expect(run.status == 0 && run.out.contains("ok"), "\(run.out) \(run.stderr)")
    }

    @Test func captiveModeExitsWithTheCommandsStatusAndLeavesNoSocket() throws {
        let files = Files()
        let run = try files.serve("", #"test -S "$unixsocket" && echo "$uri" > uri.txt && exit 3"#)
        #expect(run.status == 3, "\(run.stderr)")
        let uri = files.readText("uri.txt").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(uri.hasPrefix("nbd+unix:///?socket="))
        let socket = String(uri.dropFirst("nbd+unix:///?socket=".count))
        #expect(!fileExists(socket))
    }

    @Test(.enabled(if: installed("nbdinfo"), "nbdinfo (libnbd-bin) is not installed"))
    func sigtermStopsTheServerCleanly() throws {
        let files = Files()
        let socket = files.folder.file("s.sock")
        let out = files.folder.file("out"), err = files.folder.file("err")
        let child = try Child(["serve", "t.table"] + files.devs.split(separator: " ").map(String.init) + ["--socket", socket],
                              stdout: .init(out), stderr: .init(err), in: files.folder.path)
        waitUntil("the server prints its URI") { String(decoding: readBytes(out), as: UTF8.self).contains("\n") }
        let size = try shell("nbdinfo --size 'nbd+unix:///?socket=\(socket)'", in: files.folder)
        #expect(size.out.trimmingCharacters(in: .whitespacesAndNewlines) == "\(ServeTests.size)")
        child.send(SIGTERM)
        #expect(child.wait().status == 0, "\(String(decoding: readBytes(err), as: UTF8.self))")
        #expect(!fileExists(socket))
        #expect(String(decoding: readBytes(out), as: UTF8.self) == "nbd+unix:///?socket=\(socket)\n")
    }
}
