import Foundation
import Testing

@testable import ImgMapCore
import CSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// `imgmap serve`: the NBD protocol's edge cases against an in-process server on a Unix socket (a
// hand-written client speaking the bytes of proto.md), the pure parsers, and real clients (nbdinfo,
// nbdcopy, nbdsh, qemu-img, qemu-io) against the binary in captive --run mode, skipped when missing.
// No test waits on a clock: a server's socket listens before its constructor returns, and captive mode
// ends when its command does.

/// A server on a Unix socket in a temporary folder, over a table whose images are made here.
final class ServeFixture: @unchecked Sendable {
    let folder = TemporaryDirectory("imgmap-serve")
    let map: SectorMap
    let export: NBDExport
    let server: NBDServer
    let socketPath: String

    /// `images`: name → bytes, written to the folder and bound as `--dev name=…`.
    init(table: String, images: [String: [UInt8]], writable: Bool = false, exportName: String = "",
         handshakeTimeout: Int = 30, maxConnections: Int = NBD.defaultMaxConnections) throws {
        var devices: [String: String] = [:]
        for (name, bytes) in images {
            let path = folder.file(name + ".img")
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            devices[name] = path
        }
        let loaded = try loadTables(table, devices: devices)
        map = SectorMap(top: loaded.top)
        var writers: [ObjectIdentifier: ImageFile]?
        if writable {
            var opened: [ObjectIdentifier: ImageFile] = [:]
            for leaf in loaded.leaves { opened[ObjectIdentifier(leaf)] = try ImageFile(openForReading: leaf.path, writable: true) }
            writers = opened
        }
        export = NBDExport(map: map, name: exportName, writers: writers)
        socketPath = folder.file("nbd.sock")
        server = try NBDServer(export: export, address: .unix(path: socketPath), maxConnections: maxConnections)
        server.handshakeTimeout = handshakeTimeout
        let server = server
        startDetachedThread { server.run() }
    }

    deinit {
        server.stop(grace: 5)
        server.removeSocket()
    }

    func connect() throws -> TestNBDClient { try TestNBDClient(path: socketPath) }

    func image(_ name: String) -> [UInt8] { readBytes(folder.file(name + ".img")) }
}

/// A blocking NBD client for tests: raw bytes, no library in between.
final class TestNBDClient {
    let fd: Int32
    var structured = false

    struct OptionReply: Equatable {
        var type: UInt32
        var payload: [UInt8]
    }

    struct Reply {
        var error: UInt32
        var data: [UInt8]
        var chunks: [UInt16] = []
        var descriptors: [(UInt32, UInt32)] = []
        var message = ""
    }

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in path.utf8.enumerated() { p[i] = b } }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            done += n
        }
    }

    /// Exactly `count` bytes, or nil when the server closed first.
    func receive(_ count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + done, count - done, 0) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { return nil }
            done += n
        }
        return bytes
    }

    /// Whether bytes (or the end of the stream) are waiting to be read now, without blocking.
    var hasSomethingToRead: Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_DONTWAIT) | Int32(MSG_PEEK))
        return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)
    }

    /// Whether the server has closed the connection (reads the end of the stream).
    var isClosedByServer: Bool { receive(1) == nil }

    static func u32(_ b: ArraySlice<UInt8>) -> UInt32 { b.reduce(0) { $0 << 8 | UInt32($1) } }
    static func u64(_ b: ArraySlice<UInt8>) -> UInt64 { b.reduce(0) { $0 << 8 | UInt64($1) } }

    /// Reads the greeting and sends the client flags; returns the greeting.
    @discardableResult
    func start(flags: UInt32 = NBD.clientFixedNewstyle | NBD.clientNoZeroes) -> [UInt8]? {
        let greeting = receive(18)
        var w = BigEndianWriter()
        w.u32(flags)
        send(w.bytes)
        return greeting
    }

    /// Sends an option and reads replies until a final one (ACK or an error).
    func option(_ option: UInt32, _ data: [UInt8] = []) -> [OptionReply]? {
        var w = BigEndianWriter()
        w.u64(NBD.optionMagic); w.u32(option); w.u32(UInt32(data.count)); w.append(data)
        send(w.bytes)
        var replies: [OptionReply] = []
        while true {
            guard let header = receive(20) else { return nil }
            let length = Int(Self.u32(header[16..<20]))
            guard let payload = receive(length) else { return nil }
            let reply = OptionReply(type: Self.u32(header[12..<16]), payload: payload)
            replies.append(reply)
            if reply.type == NBD.repAck || reply.type & 0x8000_0000 != 0 { return replies }
        }
    }

    static func goData(_ name: String = "", infos: [UInt16] = []) -> [UInt8] {
        var w = BigEndianWriter()
        w.u32(UInt32(name.utf8.count)); w.string(name); w.u16(UInt16(infos.count))
        for i in infos { w.u16(i) }
        return w.bytes
    }

    static func metaData(_ name: String = "", queries: [String]) -> [UInt8] {
        var w = BigEndianWriter()
        w.u32(UInt32(name.utf8.count)); w.string(name); w.u32(UInt32(queries.count))
        for q in queries { w.u32(UInt32(q.utf8.count)); w.string(q) }
        return w.bytes
    }

    /// Handshake up to transmission; returns the transmission flags.
    @discardableResult
    func open(structured: Bool = true, metaContext: Bool = true, name: String = "") -> UInt16? {
        guard start() != nil else { return nil }
        if structured {
            guard option(NBD.optStructuredReply)?.last?.type == NBD.repAck else { return nil }
            self.structured = true
            if metaContext {
                guard option(NBD.optSetMetaContext, Self.metaData(queries: [NBD.baseAllocation]))?.last?.type == NBD.repAck else { return nil }
            }
        }
        guard let replies = option(NBD.optGo, Self.goData(name)), replies.last?.type == NBD.repAck,
              let info = replies.first(where: { $0.type == NBD.repInfo && $0.payload.prefix(2) == [0, 0] }) else { return nil }
        return UInt16(Self.u32([0, 0] + info.payload[10..<12]))
    }

    /// Sends one request (with its payload for WRITE) and reads its whole reply.
    func request(_ type: UInt16, offset: UInt64, length: UInt32, flags: UInt16 = 0, payload: [UInt8] = [], cookie: UInt64 = 7) -> Reply? {
        send(NBDRequest(flags: flags, type: type, cookie: cookie, offset: offset, length: length).bytes + payload)
        return reply(readLength: type == NBD.cmdRead ? Int(length) : 0, offset: offset)
    }

    func reply(readLength: Int, offset: UInt64) -> Reply? {
        guard let magic = receive(4) else { return nil }
        if Self.u32(magic[...]) == NBD.simpleReplyMagic {
            guard let rest = receive(12) else { return nil }
            let error = Self.u32(rest[0..<4])
            if error != 0 || readLength == 0 { return Reply(error: error, data: []) }
            guard let data = receive(readLength) else { return nil }
            return Reply(error: 0, data: data)
        }
        var reply = Reply(error: 0, data: [UInt8](repeating: 0xee, count: readLength))
        var first = true
        while true {
            // Every chunk starts with the structured reply magic (the first one's was read above).
            if !first { guard let magic = receive(4), Self.u32(magic[...]) == NBD.structuredReplyMagic else { return nil } }
            first = false
            guard let rest = receive(16) else { return nil }
            let flags = UInt16(Self.u32([0, 0] + rest[0..<2]))
            let type = UInt16(Self.u32([0, 0] + rest[2..<4]))
            guard let payload = receive(Int(Self.u32(rest[12..<16]))) else { return nil }
            reply.chunks.append(type)
            switch type {
            case NBD.chunkOffsetData:
                let at = Int(Self.u64(payload[0..<8]) - offset)
                reply.data.withUnsafeMutableBytes { out in
                    payload.withUnsafeBytes { (out.baseAddress! + at).copyMemory(from: $0.baseAddress! + 8, byteCount: $0.count - 8) }
                }
            case NBD.chunkBlockStatus:
                var i = 4
                while i + 8 <= payload.count {
                    reply.descriptors.append((Self.u32(payload[i..<i + 4]), Self.u32(payload[i + 4..<i + 8])))
                    i += 8
                }
            case NBD.chunkError, NBD.chunkErrorOffset:
                reply.error = Self.u32(payload[0..<4])
                let length = Int(Self.u32([0, 0] + payload[4..<6]))
                reply.message = String(decoding: payload[6..<6 + length], as: UTF8.self)
            default: break
            }
            if flags & NBD.replyFlagDone != 0 { break }
        }
        if reply.error != 0 { reply.data = [] }
        return reply
    }
}

/// A deterministic pattern: different in every sector, never all zero.
func servePattern(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<count).map { _ in
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
        return UInt8(truncatingIfNeeded: rng | 1)
    }
}

@Suite(.serialized) struct ServeTests {
    /// 64 sectors of data, a 32-sector zero segment, 8 sectors of error, 64 striped over two members.
    static let table = "0 64 linear A 0\n64 32 zero\n96 8 error\n104 64 striped 2 8 M0 0 M1 0\n"
    static let size = 168 * 512

    static func fixture(writable: Bool = false, exportName: String = "", handshakeTimeout: Int = 30,
                        maxConnections: Int = NBD.defaultMaxConnections) throws -> ServeFixture {
        try ServeFixture(table: table, images: ["A": servePattern(64 * 512, seed: 1), "M0": servePattern(32 * 512, seed: 2),
                                                "M1": servePattern(32 * 512, seed: 3)],
                         writable: writable, exportName: exportName, handshakeTimeout: handshakeTimeout,
                         maxConnections: maxConnections)
    }

    // MARK: The pure parsers

    @Test func requestHeadersRoundTripAndRefuseWrongMagic() {
        let request = NBDRequest(flags: 1, type: NBD.cmdWrite, cookie: 0x0102_0304_0506_0708, offset: 4096, length: 512)
        #expect(request.bytes.count == NBD.requestHeaderSize)
        #expect(NBDRequest.parse(request.bytes) == request)
        #expect(NBDRequest.parse([0x25, 0x60, 0x95, 0x14] + request.bytes.dropFirst(4)) == nil)
        #expect(NBDRequest.parse(request.bytes.dropLast()) == nil)
    }

    @Test func requestChecksFollowTheErrorValuesOfTheProtocol() {
        let ro = NBDSession(exportSize: 4096, writable: false, structured: true, metaContext: true)
        let rw = NBDSession(exportSize: 4096, writable: true, structured: false, metaContext: false)
        func error(_ r: NBDRequest, _ s: NBDSession) -> UInt32? { r.refusal(in: s)?.error }
        #expect(error(NBDRequest(type: NBD.cmdRead, cookie: 1, offset: 0, length: 4096), ro) == nil)
        #expect(error(NBDRequest(type: NBD.cmdRead, cookie: 1, offset: 4095, length: 2), ro) == NBD.EINVAL)
        #expect(error(NBDRequest(type: NBD.cmdRead, cookie: 1, offset: UInt64.max, length: 2), ro) == NBD.EINVAL)
        #expect(error(NBDRequest(type: NBD.cmdWrite, cookie: 1, offset: 0, length: 1), ro) == NBD.EPERM)
        #expect(error(NBDRequest(type: NBD.cmdTrim, cookie: 1, offset: 0, length: 1), ro) == NBD.EPERM)
        #expect(error(NBDRequest(type: NBD.cmdWrite, cookie: 1, offset: 4000, length: 100), rw) == NBD.ENOSPC)
        #expect(error(NBDRequest(type: NBD.cmdWriteZeroes, cookie: 1, offset: 4097, length: 0), rw) == NBD.ENOSPC)
        #expect(error(NBDRequest(type: NBD.cmdTrim, cookie: 1, offset: 4000, length: 100), rw) == NBD.EINVAL)
        #expect(error(NBDRequest(type: 42, cookie: 1, offset: 0, length: 0), ro) == NBD.EINVAL)
        #expect(error(NBDRequest(flags: NBD.cmdFlagReqOne, type: NBD.cmdRead, cookie: 1, offset: 0, length: 1), ro) == NBD.EINVAL)
        #expect(error(NBDRequest(flags: NBD.cmdFlagDF, type: NBD.cmdRead, cookie: 1, offset: 0, length: 1), ro) == nil)
        #expect(error(NBDRequest(flags: NBD.cmdFlagDF, type: NBD.cmdRead, cookie: 1, offset: 0, length: 1), rw) == NBD.EINVAL)
        #expect(error(NBDRequest(flags: NBD.cmdFlagFastZero, type: NBD.cmdWriteZeroes, cookie: 1, offset: 0, length: 1), rw) == NBD.EINVAL)
        #expect(error(NBDRequest(flags: NBD.cmdFlagFUA, type: NBD.cmdFlush, cookie: 1, offset: 0, length: 0), rw) == nil)
        #expect(error(NBDRequest(type: NBD.cmdBlockStatus, cookie: 1, offset: 0, length: 0), ro) == NBD.EINVAL)
        #expect(error(NBDRequest(type: NBD.cmdBlockStatus, cookie: 1, offset: 0, length: 1), rw) == NBD.EINVAL)
        let big = NBDSession(exportSize: 1 << 40, writable: true, structured: true, metaContext: false)
        #expect(error(NBDRequest(type: NBD.cmdRead, cookie: 1, offset: 0, length: NBD.maxPayload + 1), big) == NBD.EINVAL)
        #expect(error(NBDRequest(flags: NBD.cmdFlagDF, type: NBD.cmdRead, cookie: 1, offset: 0, length: NBD.maxPayload + 1), big) == NBD.EOVERFLOW)
        #expect(error(NBDRequest(type: NBD.cmdWriteZeroes, cookie: 1, offset: 0, length: UInt32.max), big) == nil)
    }

    @Test func transmissionFlagsAreTruthful() {
        let ro = NBDSession(exportSize: 1, writable: false, structured: false, metaContext: false).transmissionFlags
        #expect(ro & NBD.readOnly != 0 && ro & (NBD.sendTrim | NBD.sendWriteZeroes | NBD.sendDF) == 0)
        #expect(ro & NBD.canMultiConn != 0 && ro & NBD.sendFlush != 0)
        let rw = NBDSession(exportSize: 1, writable: true, structured: true, metaContext: false).transmissionFlags
        #expect(rw & NBD.readOnly == 0 && rw & NBD.sendTrim != 0 && rw & NBD.sendWriteZeroes != 0 && rw & NBD.sendDF != 0)
    }

    @Test func negotiationRefusesUnknownClientFlagsAndOldNewstyle() {
        var n = NBDNegotiation(exportName: "", exportSize: 512, writable: false)
        let unknown = n.clientFlags(1 << 5 | 1), none = n.clientFlags(0), both = n.clientFlags(3)
        #expect(!unknown && !none && both && n.noZeroes)
    }

    @Test func negotiationAnswersOptionsAsTheProtocolSays() {
        var n = NBDNegotiation(exportName: "disk", exportSize: 512, writable: false)
        let fixed = n.clientFlags(1)
        #expect(fixed)
        func type(_ step: NBDNegotiation.Step) -> UInt32? {
            guard case .reply(let bytes) = step, bytes.count >= 20 else { return nil }
            return TestNBDClient.u32(bytes[12..<16])
        }
        func ask(_ option: UInt32, _ data: [UInt8]) -> UInt32? { type(n.option(option, data: data)) }
        func step(_ option: UInt32, _ data: [UInt8]) -> NBDNegotiation.Step { n.option(option, data: data) }
        #expect(ask(99, [1, 2, 3]) == NBD.repErrUnsup)
        #expect(ask(NBD.optStartTLS, []) == NBD.repErrUnsup)
        #expect(ask(NBD.optList, [0]) == NBD.repErrInvalid)
        #expect(ask(NBD.optSetMetaContext, TestNBDClient.metaData(queries: ["base:allocation"])) == NBD.repErrInvalid)
        #expect(ask(NBD.optInfo, TestNBDClient.goData("other")) == NBD.repErrUnknown)
        #expect(ask(NBD.optInfo, [0, 0, 0, 9]) == NBD.repErrInvalid)
        #expect(step(NBD.optExportName, Array("other".utf8)) == .close)
        if case .abort = step(NBD.optAbort, []) {} else { Issue.record("NBD_OPT_ABORT must be acknowledged") }
        #expect(ask(NBD.optStructuredReply, []) == NBD.repAck && n.structured)
        #expect(ask(NBD.optSetMetaContext, TestNBDClient.metaData("disk", queries: ["qemu:dirty-bitmap:x"])) == NBD.repAck)
        #expect(!n.metaContext)
        #expect(ask(NBD.optSetMetaContext, TestNBDClient.metaData("disk", queries: ["base:allocation"])) == NBD.repMetaContext)
        #expect(n.metaContext)
        if case .transmission(let bytes) = step(NBD.optExportName, Array("disk".utf8)) {
            #expect(bytes.count == 10 + 124)  // no NO_ZEROES from this client
        } else { Issue.record("EXPORT_NAME of the export's name must enter transmission") }
    }

    // MARK: Handshake over a socket

    @Test func greetingIsFixedNewstyleAndUnknownOptionsGetErrUnsup() throws {
        let f = try Self.fixture()
        let c = try f.connect()
        let greeting = try #require(c.start())
        #expect(Array(greeting[0..<16]) == Array("NBDMAGICIHAVEOPT".utf8))
        #expect(greeting[17] == UInt8(NBD.flagFixedNewstyle | NBD.flagNoZeroes))
        #expect(c.option(77, [1, 2, 3])?.map(\.type) == [NBD.repErrUnsup])
        #expect(c.option(NBD.optStartTLS)?.map(\.type) == [NBD.repErrUnsup])
        let list = try #require(c.option(NBD.optList))
        #expect(list.map(\.type) == [NBD.repServer, NBD.repAck])
        // Still negotiating after all that: GO works.
        let go = try #require(c.option(NBD.optGo, TestNBDClient.goData(infos: [NBD.infoBlockSize])))
        #expect(go.last?.type == NBD.repAck)
        let size = try #require(go.first { $0.payload.prefix(2) == [0, 0] })
        #expect(TestNBDClient.u64(size.payload[2..<10]) == UInt64(Self.size))
        #expect(go.contains { $0.payload.prefix(2) == [0, 3] })
        #expect(c.request(NBD.cmdRead, offset: 0, length: 512)?.data == Array(f.image("A")[0..<512]))
    }

    @Test func namedExportRefusesOtherNamesAndExportNameClosesSilently() throws {
        let f = try Self.fixture(exportName: "disk")
        let c = try f.connect()
        c.start()
        #expect(c.option(NBD.optInfo, TestNBDClient.goData("nope"))?.map(\.type) == [NBD.repErrUnknown])
        #expect(c.option(NBD.optInfo, TestNBDClient.goData("disk"))?.last?.type == NBD.repAck)
        var w = BigEndianWriter()
        w.u64(NBD.optionMagic); w.u32(NBD.optExportName); w.u32(4); w.string("nope")
        c.send(w.bytes)
        #expect(c.isClosedByServer)
    }

    @Test func exportNameSendsSizeFlagsAndZeroesUnlessNoZeroes() throws {
        let f = try Self.fixture()
        for noZeroes in [false, true] {
            let c = try f.connect()
            c.start(flags: NBD.clientFixedNewstyle | (noZeroes ? NBD.clientNoZeroes : 0))
            var w = BigEndianWriter()
            w.u64(NBD.optionMagic); w.u32(NBD.optExportName); w.u32(0)
            c.send(w.bytes)
            let answer = try #require(c.receive(noZeroes ? 10 : 134))
            #expect(TestNBDClient.u64(answer[0..<8]) == UInt64(Self.size))
            #expect(UInt16(TestNBDClient.u32([0, 0] + answer[8..<10])) & NBD.readOnly != 0)
            #expect(c.request(NBD.cmdRead, offset: 512 * 64, length: 1024)?.data == [UInt8](repeating: 0, count: 1024))
        }
    }

    @Test func badClientFlagsAndGarbageCloseOnlyThatConnection() throws {
        let f = try Self.fixture()
        let bad = try f.connect()
        bad.start(flags: 0x8000_0001)
        #expect(bad.isClosedByServer)
        let garbage = try f.connect()
        #expect(garbage.open() != nil)
        garbage.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8) + [UInt8](repeating: 0xff, count: 64))
        #expect(garbage.isClosedByServer)
        let good = try f.connect()
        #expect(good.open() != nil)
        #expect(good.request(NBD.cmdRead, offset: 0, length: 4096)?.data == Array(f.image("A")[0..<4096]))
    }

    @Test func idleHandshakeIsDropped() throws {
        let f = try Self.fixture(handshakeTimeout: 1)
        let c = try f.connect()
        #expect(c.receive(18) != nil)
        // Nothing sent: the server gives up after a second and closes.
        #expect(c.isClosedByServer)
    }

    @Test func metaContextsAreListedAndSetOnlyWithStructuredReplies() throws {
        let f = try Self.fixture()
        let c = try f.connect()
        c.start()
        #expect(c.option(NBD.optListMetaContext, TestNBDClient.metaData(queries: []))?.map(\.type) == [NBD.repErrInvalid])
        #expect(c.option(NBD.optStructuredReply)?.map(\.type) == [NBD.repAck])
        let listed = try #require(c.option(NBD.optListMetaContext, TestNBDClient.metaData(queries: ["base:"])))
        #expect(listed.map(\.type) == [NBD.repMetaContext, NBD.repAck])
        #expect(String(decoding: listed[0].payload.dropFirst(4), as: UTF8.self) == "base:allocation")
        #expect(c.option(NBD.optSetMetaContext, TestNBDClient.metaData(queries: ["nbd-server:x"]))?.map(\.type) == [NBD.repAck])
        #expect(c.option(NBD.optGo, TestNBDClient.goData())?.last?.type == NBD.repAck)
        // No context selected: BLOCK_STATUS is refused, the connection goes on.
        #expect(c.request(NBD.cmdBlockStatus, offset: 0, length: 512)?.error == NBD.EINVAL)
        #expect(c.request(NBD.cmdRead, offset: 0, length: 512)?.error == 0)
    }

    // MARK: Reads

    @Test(arguments: [true, false])
    func readsEqualTheMappedDevice(structured: Bool) throws {
        let f = try Self.fixture()
        let device = try readAll(f.map)
        let c = try f.connect()
        #expect(c.open(structured: structured) != nil)
        for (offset, length) in [(0, 512), (1, 511), (511, 2), (100, 32768), (104 * 512 + 7, 64 * 512 - 7), (Self.size - 1, 1), (Self.size, 0)] {
            let reply = try #require(c.request(NBD.cmdRead, offset: UInt64(offset), length: UInt32(length)))
            #expect(reply.error == 0)
            #expect(reply.data == Array(device[offset..<offset + length]), "bytes \(offset)+\(length)")
        }
    }

    @Test(arguments: [true, false])
    func readsOfAnErrorSegmentFailWithEIOAndTheConnectionGoesOn(structured: Bool) throws {
        let f = try Self.fixture()
        let c = try f.connect()
        #expect(c.open(structured: structured) != nil)
        let failed = try #require(c.request(NBD.cmdRead, offset: 90 * 512, length: 8 * 512))
        #expect(failed.error == NBD.EIO)
        if structured { #expect(failed.message.contains("sectors 96+2") && failed.message.contains("EIO"), "\(failed.message)") }
        #expect(c.request(NBD.cmdRead, offset: 0, length: 512)?.data == Array(f.image("A")[0..<512]))
    }

    @Test func largeReadsComeInPiecesWithinOneChunk() throws {
        // 40 MiB: image data, then zeros. A 5 MiB read is three pieces of at most 2 MiB in one chunk
        // (so DF is honoured); more than 32 MiB is refused.
        let data = servePattern(3 << 20, seed: 5)
        let f = try ServeFixture(table: "0 6144 linear A 0\n6144 75776 zero\n", images: ["A": data])
        let c = try f.connect()
        #expect(c.open() != nil)
        let reply = try #require(c.request(NBD.cmdRead, offset: 3, length: 5 << 20, flags: NBD.cmdFlagDF))
        #expect(reply.error == 0)
        #expect(reply.data == Array(data[3...]) + [UInt8](repeating: 0, count: (2 << 20) + 3))
        #expect(reply.chunks == [NBD.chunkOffsetData, NBD.chunkNone])
        #expect(c.request(NBD.cmdRead, offset: 0, length: NBD.maxPayload + 1)?.error == NBD.EINVAL)
        #expect(c.request(NBD.cmdRead, offset: 0, length: 512)?.error == 0)
    }

    @Test func aReadOfOnePieceIsOneChunkCarryingDone() throws {
        let f = try Self.fixture()
        let c = try f.connect()
        #expect(c.open() != nil)
        let reply = try #require(c.request(NBD.cmdRead, offset: 512, length: 4096))
        #expect(reply.data == Array(f.image("A")[512..<4608]))
        #expect(reply.chunks == [NBD.chunkOffsetData])
    }

    @Test(arguments: [true, false])
    func anImageThatShrinksFailsReadsWithEIO(structured: Bool) throws {
        // Served over 3 MiB of A, then A is cut to 2 MiB: a read whose first piece fails gets a plain
        // EIO; one that fails in a later piece, once data is on its way, ends with an error chunk
        // (structured) or a dropped connection (simple replies).
        let data = servePattern(3 << 20, seed: 9)
        let f = try ServeFixture(table: "0 6144 linear A 0\n", images: ["A": data])
        let c = try f.connect()
        #expect(c.open(structured: structured) != nil)
        #expect(truncate(f.folder.file("A.img"), 2 << 20) == 0)
        let late = try #require(c.request(NBD.cmdRead, offset: 2 << 20, length: 4096))
        #expect(late.error == NBD.EIO)
        #expect(c.request(NBD.cmdRead, offset: 0, length: 4096)?.data == Array(data[0..<4096]))
        let across = c.request(NBD.cmdRead, offset: 0, length: 3 << 20)
        if structured {
            let reply = try #require(across)
            #expect(reply.error == NBD.EIO)
            #expect(reply.chunks == [NBD.chunkOffsetData, NBD.chunkError])
            #expect(reply.message.contains("READ at byte 2097152"), "\(reply.message)")
            #expect(c.request(NBD.cmdRead, offset: 4096, length: 512)?.data == Array(data[4096..<4608]))
        } else {
            #expect(across == nil)
            #expect(c.isClosedByServer)
        }
    }

    @Test func outOfRangeAndMalformedRequestsAreRefusedNotFatal() throws {
        let f = try Self.fixture(writable: true)
        let c = try f.connect()
        #expect(c.open() != nil)
        let end = UInt64(Self.size)
        #expect(c.request(NBD.cmdRead, offset: end, length: 1)?.error == NBD.EINVAL)
        #expect(c.request(NBD.cmdRead, offset: UInt64.max - 10, length: 100)?.error == NBD.EINVAL)
        #expect(c.request(NBD.cmdWrite, offset: end - 1, length: 2, payload: [1, 2])?.error == NBD.ENOSPC)
        #expect(c.request(NBD.cmdTrim, offset: end, length: 512)?.error == NBD.EINVAL)
        #expect(c.request(NBD.cmdBlockStatus, offset: end, length: 1)?.error == NBD.EINVAL)
        #expect(c.request(NBD.cmdBlockStatus, offset: 0, length: 0)?.error == NBD.EINVAL)
        #expect(c.request(12, offset: 0, length: 0)?.error == NBD.EINVAL)
        #expect(c.request(NBD.cmdRead, offset: 0, length: 512, flags: NBD.cmdFlagReqOne)?.error == NBD.EINVAL)
        // A refused WRITE's payload is drained: the next request is read correctly.
        #expect(c.request(NBD.cmdWrite, offset: 0, length: NBD.maxPayload + 1, payload: [UInt8](repeating: 9, count: Int(NBD.maxPayload) + 1))?.error == NBD.EINVAL)
        #expect(c.request(NBD.cmdWrite, offset: 0, length: 0)?.error == 0)
        #expect(c.request(NBD.cmdRead, offset: 0, length: 0)?.error == 0)
        #expect(c.request(NBD.cmdRead, offset: 0, length: 512)?.data == Array(f.image("A")[0..<512]))
    }

    @Test func blockStatusComesFromTheSectorMap() throws {
        // A sparse image: data in its first and third 4 KiB, holes elsewhere.
        let folder = TemporaryDirectory("imgmap-serve-sparse")
        let path = folder.file("s.img")
        let fd = open(path, O_CREAT | O_RDWR, 0o644)
        _ = ftruncate(fd, 64 * 1024)
        let data = servePattern(4096, seed: 9)
        _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, 0) }
        _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, 8192) }
        close(fd)
        let f = try ServeFixture(table: "0 128 linear S 0\n128 64 zero\n192 8 error\n", images: ["S": readBytes(path)])
        // readBytes gave a dense copy: punch the holes back into the served one.
        let served = f.folder.file("S.img")
        let sfd = open(served, O_RDWR)
        _ = imgmapTestPunch(sfd, 4096, 4096)
        _ = imgmapTestPunch(sfd, 12288, 65536 - 12288)
        close(sfd)
        let c = try f.connect()
        #expect(c.open() != nil)
        let reply = try #require(c.request(NBD.cmdBlockStatus, offset: 0, length: 200 * 512))
        let hz = NBD.stateHole | NBD.stateZero
        let got: [[UInt32]] = reply.descriptors.map { [$0.0, $0.1] }
        let expected: [[UInt32]] = [[4096, 0], [4096, hz], [4096, 0], [65536 - 12288 + 64 * 512, hz], [4096, 0]]
        #expect(got == expected)
        let one = try #require(c.request(NBD.cmdBlockStatus, offset: 100, length: 100_000, flags: NBD.cmdFlagReqOne))
        let first: [[UInt32]] = one.descriptors.map { [$0.0, $0.1] }
        #expect(first == [[3996, 0]])
    }

    // MARK: Writes

    /// What `scatter` writes for `device` (the whole device's new bytes) into fresh copies of the
    /// fixture's members, error sectors skipped.
    static func scattered(_ device: [UInt8], images: [String: [UInt8]]) throws -> [String: [UInt8]] {
        let f = try ServeFixture(table: table, images: images)
        let loaded = try loadTables(table, devices: images.keys.reduce(into: [:]) { $0[$1] = f.folder.file($1 + ".img") })
        var writers: [ObjectIdentifier: ImageFile] = [:]
        for leaf in loaded.leaves { writers[ObjectIdentifier(leaf)] = try ImageFile(openForReading: leaf.path, writable: true) }
        let input = f.folder.file("input")
        try Data(device).write(to: URL(fileURLWithPath: input))
        var options = Scatter.Options()
        options.onError = .skip
        _ = try Scatter(map: SectorMap(top: loaded.top), options: options)
            .run(input: try ImageFile(openForReading: input), inputIsStream: false, inputBytes: UInt64(device.count), writers: writers)
        return images.keys.reduce(into: [:]) { $0[$1] = f.image($1) }
    }

    @Test func writesLandInTheMembersAsScatterWouldWriteThem() throws {
        let f = try Self.fixture(writable: true)
        let before = ["A": f.image("A"), "M0": f.image("M0"), "M1": f.image("M1")]
        var device = try readAll(f.map)
        let c = try f.connect()
        let flags = try #require(c.open())
        #expect(flags & NBD.readOnly == 0 && flags & NBD.canMultiConn != 0)
        // Unaligned, across segments (data → zero), across the striped chunks, with FUA.
        for (i, (offset, length)) in [(3, 1000), (60 * 512 + 11, 8 * 512), (104 * 512 + 100, 30 * 512), (167 * 512 + 500, 12)].enumerated() {
            let bytes = servePattern(length, seed: UInt64(100 + i))
            let reply = try #require(c.request(NBD.cmdWrite, offset: UInt64(offset), length: UInt32(length), flags: i == 1 ? NBD.cmdFlagFUA : 0, payload: bytes))
            #expect(reply.error == 0, "write \(offset)+\(length): \(reply.message)")
            for (k, b) in bytes.enumerated() where !(64 * 512..<96 * 512).contains(offset + k) { device[offset + k] = b }
        }
        #expect(c.request(NBD.cmdFlush, offset: 0, length: 0)?.error == 0)
        // Onto the error segment: refused whole, nothing written.
        #expect(c.request(NBD.cmdWrite, offset: 95 * 512, length: 1024, payload: [UInt8](repeating: 1, count: 1024))?.error == NBD.EIO)
        #expect(c.request(NBD.cmdRead, offset: 0, length: 64 * 512)?.data == Array(device[0..<64 * 512]))
        let expected = try Self.scattered(device, images: before)
        for name in ["A", "M0", "M1"] { #expect(f.image(name) == expected[name], "\(name).img") }
    }

    @Test func writeZeroesAndTrimFollowTheLeafKinds() throws {
        let f = try Self.fixture(writable: true)
        let c = try f.connect()
        #expect(c.open() != nil)
        // WRITE_ZEROES over image data (unaligned ends) and the zero segment: reads back zeros.
        #expect(c.request(NBD.cmdWriteZeroes, offset: 100, length: 40 * 512)?.error == 0)
        #expect(c.request(NBD.cmdWriteZeroes, offset: 50 * 512, length: 40 * 512, flags: NBD.cmdFlagNoHole | NBD.cmdFlagFUA)?.error == 0)
        let a = f.image("A")
        #expect(a[0..<100] == ArraySlice(servePattern(64 * 512, seed: 1)[0..<100]))
        #expect(a[100..<(40 * 512 + 100)].allSatisfy { $0 == 0 } && a[50 * 512..<64 * 512].allSatisfy { $0 == 0 })
        #expect(a[40 * 512 + 100] == servePattern(64 * 512, seed: 1)[40 * 512 + 100])
        // Through the striped set too.
        #expect(c.request(NBD.cmdWriteZeroes, offset: 104 * 512, length: 16 * 512)?.error == 0)
        #expect(f.image("M0")[0..<4096].allSatisfy { $0 == 0 } && f.image("M1")[0..<4096].allSatisfy { $0 == 0 })
        // Onto the error segment: EIO, nothing done.
        #expect(c.request(NBD.cmdWriteZeroes, offset: 60 * 512, length: 40 * 512)?.error == NBD.EIO)
        #expect(c.request(NBD.cmdTrim, offset: 90 * 512, length: 8 * 512)?.error == NBD.EIO)
        // TRIM of image data punches whole sectors (they read as zeros), of the zero segment is dropped.
        #expect(c.request(NBD.cmdTrim, offset: 104 * 512 + 8 * 512, length: 8 * 512 + 100)?.error == 0)
        #expect(f.image("M1")[0..<4096].allSatisfy { $0 == 0 })
        #expect(c.request(NBD.cmdTrim, offset: 64 * 512, length: 32 * 512)?.error == 0)
    }

    @Test func trimThroughACryptPieceIsRefusedAndWriteZeroesIsWrittenThroughIt() throws {
        // The two XTS halves must differ (OpenSSL refuses equal halves).
        let key = servePattern(64, seed: 11).map { String(format: "%02x", $0) }.joined()
        let f = try ServeFixture(table: "0 64 crypt aes-xts-plain64 \(key) 0 A 0\n", images: ["A": servePattern(64 * 512, seed: 4)], writable: true)
        let c = try f.connect()
        #expect(c.open() != nil)
        #expect(c.request(NBD.cmdTrim, offset: 0, length: 4096)?.error == NBD.EINVAL)
        let zeroed = try #require(c.request(NBD.cmdWriteZeroes, offset: 512, length: 8 * 512))
        #expect(zeroed.error == 0, "\(zeroed.message)")
        let plain = try readAll(f.map)
        #expect(plain[512..<9 * 512].allSatisfy { $0 == 0 })
        // The image holds ciphertext of zeros, not zeros.
        #expect(!f.image("A")[512..<1024].allSatisfy { $0 == 0 })
    }

    @Test func readOnlyExportsRefuseWritesWithEPERM() throws {
        let f = try Self.fixture()
        let c = try f.connect()
        let flags = try #require(c.open(structured: false))
        #expect(flags & NBD.readOnly != 0 && flags & NBD.sendDF == 0 && flags & NBD.sendTrim == 0)
        #expect(c.request(NBD.cmdWrite, offset: 0, length: 4, payload: [1, 2, 3, 4])?.error == NBD.EPERM)
        #expect(c.request(NBD.cmdWriteZeroes, offset: 0, length: 4)?.error == NBD.EPERM)
        #expect(c.request(NBD.cmdFlush, offset: 0, length: 0)?.error == 0)
        #expect(f.image("A") == servePattern(64 * 512, seed: 1))
    }

    // MARK: Many clients

    @Test func clientsDyingMidRequestDoNotDisturbOthers() throws {
        let f = try Self.fixture(writable: true)
        let survivor = try f.connect()
        #expect(survivor.open() != nil)
        for _ in 0..<5 {
            let dying = try f.connect()
            #expect(dying.open() != nil)
            // Half a WRITE's payload, then gone.
            dying.send(NBDRequest(type: NBD.cmdWrite, cookie: 1, offset: 0, length: 8192).bytes + [UInt8](repeating: 7, count: 3000))
        }
        // A READ of 4 MiB the client never takes: the server's send fails when it closes.
        let reader = try f.connect()
        #expect(reader.open() != nil)
        reader.send(NBDRequest(type: NBD.cmdRead, cookie: 2, offset: 0, length: UInt32(Self.size)).bytes)
        _ = reader
        #expect(survivor.request(NBD.cmdRead, offset: 0, length: 4096)?.data == Array(f.image("A")[0..<4096]))
        #expect(survivor.request(NBD.cmdWrite, offset: 0, length: 2, payload: [5, 6])?.error == 0)
        #expect(f.image("A")[0..<2] == [5, 6])
    }

    @Test func manyConcurrentConnectionsEachReadTheWholeDevice() throws {
        let f = try Self.fixture()
        let device = try readAll(f.map)
        let ok = Mutex(0)
        let clients = 24
        DispatchQueue.concurrentPerform(iterations: clients) { i in
            guard let c = try? f.connect(), c.open(structured: i % 2 == 0) != nil else { return }
            var same = true
            for offset in stride(from: 0, to: 96 * 512, by: 4096) {
                same = same && c.request(NBD.cmdRead, offset: UInt64(offset), length: 4096, cookie: UInt64(i))?.data == Array(device[offset..<offset + 4096])
            }
            if same { ok.withLock { $0 += 1 } }
        }
        let succeeded = ok.withLock { $0 }
        #expect(succeeded == clients)
    }

    @Test func clientsOverTheConnectionCapWaitWhileTheOthersAreServed() throws {
        let f = try Self.fixture(maxConnections: 3)
        let device = try readAll(f.map)
        var served = try (0..<3).map { _ in try f.connect() }
        for c in served { #expect(c.open() != nil) }
        // Over the cap: connect(2) succeeds (the kernel queues them) but the server has stopped
        // accepting, so no greeting comes, and no thread or buffer is spent on them.
        var waiting: [TestNBDClient?] = try (0..<6).map { _ in try f.connect() }
        for w in waiting { #expect(w?.hasSomethingToRead == false) }
        #expect(f.server.activeConnections == 3)
        // The first 96 sectors (before the error segment), whole, on each served connection.
        let readable = Array(device[0..<96 * 512])
        for (i, c) in served.enumerated() {
            let same = c.request(NBD.cmdRead, offset: 0, length: UInt32(readable.count), cookie: UInt64(i))?.data == readable
            #expect(same, "connection \(i)")
        }
        #expect(waiting.allSatisfy { $0?.hasSomethingToRead == false })
        // Each that leaves lets one waiting client in; every one of them is served in turn.
        served.removeAll()
        for i in waiting.indices {
            #expect(waiting[i]?.open() != nil)
            #expect(waiting[i]?.request(NBD.cmdRead, offset: 4096, length: 8192)?.data == Array(device[4096..<12288]))
            waiting[i] = nil
        }
        #expect(f.server.peakConnections == 3)
    }

    @Test func stopEndsOpenConnectionsAfterTheirRequest() throws {
        let f = try Self.fixture()
        let c = try f.connect()
        #expect(c.open() != nil)
        #expect(c.request(NBD.cmdRead, offset: 0, length: 512)?.error == 0)
        f.server.stop(grace: 30)
        #expect(f.server.activeConnections == 0)
        #expect(c.isClosedByServer)
    }
}

/// fallocate(PUNCH_HOLE) for test fixtures (the library's own C shim).
func imgmapTestPunch(_ fd: Int32, _ offset: Int64, _ length: Int64) -> Int32 {
    imgmap_punch_hole(fd, offset, length)
}
