// Each connection is owned by its one thread: @unchecked Sendable only to hand it to that thread.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a server exports: the mapped device, read-only or through the write path.
public final class NBDExport: @unchecked Sendable {
    public let map: SectorMap
    public let name: String
    /// Each member opened read-write (nil: read-only export). Shared by every connection: pwrite on one
    /// descriptor from several threads is safe, and each request writes whole sectors.
    public let writers: [ObjectIdentifier: ImageFile]?

    public init(map: SectorMap, name: String = "", writers: [ObjectIdentifier: ImageFile]? = nil) {
        self.map = map
        self.name = name
        self.writers = writers
    }

    public var size: UInt64 { map.size.bytes }
    public var writable: Bool { writers != nil }

    /// The transmission flags, stated truthfully: read-only unless writable; FLUSH and FUA always (they
    /// fsync the members); CACHE (a no-op hint); multi-conn only when read-only, since writes from
    /// several connections to overlapping partial sectors read-modify-write and could interleave.
    public var transmissionFlags: UInt16 {
        var flags = NBD.hasFlags | NBD.sendFlush | NBD.sendFUA | NBD.sendCache | NBD.sendDF
        if writable { } else { flags |= NBD.readOnly | NBD.canMultiConn }
        return flags
    }
}

/// The end of a connection: the peer went away, or sent something the protocol cannot recover from.
struct ConnectionClosed: Error {}

/// One client: the handshake, then requests served in order until NBD_CMD_DISC or the socket closes.
/// Memory is bounded by one request buffer of at most `NBD.maxPayload` plus a sector each side.
final class NBDConnection: @unchecked Sendable {
    let fd: Int32
    let export: NBDExport
    let reader: MapReader
    var structured = false
    var metaContext = false
    var noZeroes = false
    var buffer: IOBuffer?

    init(fd: Int32, export: NBDExport) {
        self.fd = fd
        self.export = export
        reader = MapReader(map: export.map, onError: .fail)
    }

    /// Serves the client until it leaves; never throws (a broken client only ends its own connection).
    func serve(handshakeTimeout: Int) {
        defer { close(fd) }
        do {
            setReceiveTimeout(seconds: handshakeTimeout)
            guard try handshake() else { return }
            setReceiveTimeout(seconds: 0)
            try transmission()
        } catch {}
    }

    func setReceiveTimeout(seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    // MARK: Socket I/O

    func receive(into p: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < p.count {
            let n = recv(fd, p.baseAddress! + done, p.count - done, 0)
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw ConnectionClosed() }
            done += n
        }
    }

    func receive(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        if count > 0 { try bytes.withUnsafeMutableBytes { try receive(into: $0) } }
        return bytes
    }

    func send(_ p: UnsafeRawBufferPointer, more: Bool = false) throws {
        var done = 0
        while done < p.count {
            let n = Glibc.send(fd, p.baseAddress! + done, p.count - done, Int32(MSG_NOSIGNAL) | (more ? Int32(MSG_MORE) : 0))
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw ConnectionClosed() }
            done += n
        }
    }

    func send(_ bytes: [UInt8], more: Bool = false) throws {
        try bytes.withUnsafeBytes { try send($0, more: more) }
    }

    // MARK: Handshake

    /// The fixed newstyle handshake. Returns false when the client aborted.
    func handshake() throws -> Bool {
        var w = BigEndianWriter()
        w.u64(NBD.initMagic); w.u64(NBD.optionMagic); w.u16(NBD.flagFixedNewstyle | NBD.flagNoZeroes)
        try send(w.bytes)
        var r = BigEndianReader(try receive(4))
        let clientFlags = r.u32()!
        guard clientFlags & NBD.clientFixedNewstyle != 0 else { throw ConnectionClosed() }
        noZeroes = clientFlags & NBD.clientNoZeroes != 0
        while true {
            var h = BigEndianReader(try receive(16))
            guard h.u64() == NBD.optionMagic, let option = h.u32(), let length = h.u32() else { throw ConnectionClosed() }
            guard length <= NBD.maxOptionLength else {
                // Skip nothing: a client sending this much option data is not one we can talk to.
                throw ConnectionClosed()
            }
            let data = try receive(Int(length))
            switch option {
            case NBD.optExportName:
                guard String(decoding: data, as: UTF8.self) == export.name || data.isEmpty else { throw ConnectionClosed() }
                var e = BigEndianWriter()
                e.u64(export.size); e.u16(export.transmissionFlags)
                if !noZeroes { e.append([UInt8](repeating: 0, count: 124)) }
                try send(e.bytes)
                return true
            case NBD.optAbort:
                try? send(NBD.optionReply(option: option, type: NBD.repAck))
                return false
            case NBD.optList:
                guard data.isEmpty else { try send(NBD.optionReply(option: option, type: NBD.repErrInvalid)); continue }
                var p = BigEndianWriter()
                p.u32(UInt32(export.name.utf8.count)); p.string(export.name)
                try send(NBD.optionReply(option: option, type: NBD.repServer, payload: p.bytes))
                try send(NBD.optionReply(option: option, type: NBD.repAck))
            case NBD.optStructuredReply:
                guard data.isEmpty else { try send(NBD.optionReply(option: option, type: NBD.repErrInvalid)); continue }
                structured = true
                try send(NBD.optionReply(option: option, type: NBD.repAck))
            case NBD.optInfo, NBD.optGo:
                guard let request = NBDInfoRequest.parse(data) else {
                    try send(NBD.optionReply(option: option, type: NBD.repErrInvalid)); continue
                }
                guard request.name == export.name || request.name.isEmpty else {
                    try send(NBD.optionReply(option: option, type: NBD.repErrUnknown)); continue
                }
                var info = BigEndianWriter()
                info.u16(NBD.infoExport); info.u64(export.size); info.u16(export.transmissionFlags)
                try send(NBD.optionReply(option: option, type: NBD.repInfo, payload: info.bytes))
                if request.infos.contains(NBD.infoBlockSize) {
                    // Any byte alignment works (partial sectors are read-modify-written); 4 KiB preferred.
                    var b = BigEndianWriter()
                    b.u16(NBD.infoBlockSize); b.u32(1); b.u32(4096); b.u32(NBD.maxPayload)
                    try send(NBD.optionReply(option: option, type: NBD.repInfo, payload: b.bytes))
                }
                if request.infos.contains(NBD.infoName) {
                    var n = BigEndianWriter()
                    n.u16(NBD.infoName); n.string(export.name)
                    try send(NBD.optionReply(option: option, type: NBD.repInfo, payload: n.bytes))
                }
                try send(NBD.optionReply(option: option, type: NBD.repAck))
                if option == NBD.optGo { return true }
            case NBD.optListMetaContext, NBD.optSetMetaContext:
                let setting = option == NBD.optSetMetaContext
                guard let request = NBDMetaContextRequest.parse(data) else {
                    try send(NBD.optionReply(option: option, type: NBD.repErrInvalid)); continue
                }
                guard !setting || structured else {
                    try send(NBD.optionReply(option: option, type: NBD.repErrInvalid)); continue
                }
                guard request.name == export.name || request.name.isEmpty else {
                    try send(NBD.optionReply(option: option, type: NBD.repErrUnknown)); continue
                }
                let chosen = request.queries.isEmpty ? !setting
                    : request.queries.contains { NBDMetaContextRequest.selectsBaseAllocation($0, listing: !setting) }
                if setting { metaContext = chosen }
                if chosen {
                    var p = BigEndianWriter()
                    p.u32(setting ? NBD.baseAllocationID : 0); p.string(NBD.baseAllocation)
                    try send(NBD.optionReply(option: option, type: NBD.repMetaContext, payload: p.bytes))
                }
                try send(NBD.optionReply(option: option, type: NBD.repAck))
            default:
                // STARTTLS included: TLS is not offered (only loopback and Unix sockets are meant).
                try send(NBD.optionReply(option: option, type: NBD.repErrUnsup))
            }
        }
    }

    // MARK: Transmission

    func transmission() throws {
        let header = IOBuffer(size: NBD.requestHeaderSize)
        while true {
            try receive(into: header.bytes)
            guard let request = NBDRequest.parse(UnsafeRawBufferPointer(header.bytes)) else { throw ConnectionClosed() }
            if request.type == NBD.cmdDisc { return }
            if request.type == NBD.cmdWrite {
                // The payload follows the header whatever the answer; a length over the cap cannot be
                // skipped safely within bounded memory, so such a client is disconnected after the error.
                if let error = request.check(exportSize: export.size, writable: export.writable, structured: structured) {
                    try sendError(error, cookie: request.cookie, message: "write refused")
                    if request.length > NBD.maxPayload { throw ConnectionClosed() }
                    try discard(Int(request.length))
                    continue
                }
            } else if let error = request.check(exportSize: export.size, writable: export.writable, structured: structured) {
                try sendError(error, cookie: request.cookie, message: error == NBD.EINVAL ? "offset or length out of range" : "refused")
                continue
            }
            switch request.type {
            case NBD.cmdRead: try read(request)
            case NBD.cmdWrite: try write(request)
            case NBD.cmdFlush: try flush(request)
            case NBD.cmdCache: try sendOK(request.cookie)
            case NBD.cmdBlockStatus: try blockStatus(request)
            default: try sendError(NBD.EINVAL, cookie: request.cookie, message: "command not supported")
            }
        }
    }

    func discard(_ count: Int) throws {
        let scratch = requestBuffer(min(count, 1 << 20))
        var left = count
        while left > 0 {
            let n = min(left, scratch.count)
            try receive(into: UnsafeMutableRawBufferPointer(rebasing: scratch.bytes[0..<n]))
            left -= n
        }
    }

    /// The connection's buffer, grown on demand up to one maximal request plus a sector each side.
    func requestBuffer(_ bytes: Int) -> IOBuffer {
        if let buffer, buffer.count >= bytes { return buffer }
        let size = max(bytes, 1 << 20)
        let fresh = IOBuffer(size: size)
        buffer = fresh
        return fresh
    }

    func sendOK(_ cookie: UInt64) throws {
        if structured {
            try send(NBD.chunkHeader(flags: NBD.replyFlagDone, type: NBD.chunkNone, cookie: cookie, length: 0))
        } else {
            try send(NBD.simpleReply(error: 0, cookie: cookie))
        }
    }

    func sendError(_ error: UInt32, cookie: UInt64, message: String) throws {
        if structured {
            try send(NBD.errorChunk(error: error, cookie: cookie, message: message))
        } else {
            try send(NBD.simpleReply(error: error, cookie: cookie))
        }
    }

    /// Reads the whole sectors covering [offset, offset+length) into the buffer; returns where the
    /// requested bytes start in it.
    func readCovering(offset: UInt64, length: UInt32) throws -> (IOBuffer, Int) {
        let first = offset / sectorSize
        let last = (offset + UInt64(length) + sectorSize - 1) / sectorSize
        let buffer = requestBuffer(Int((last - first) * sectorSize))
        if last > first {
            try reader.read(into: buffer.prefix(Int((last - first) * sectorSize)), at: Sector(first))
        }
        return (buffer, Int(offset - first * sectorSize))
    }

    func read(_ request: NBDRequest) throws {
        let buffer: IOBuffer
        let at: Int
        do {
            (buffer, at) = try readCovering(offset: request.offset, length: request.length)
        } catch let error as MappedReadError {
            return try sendError(NBD.EIO, cookie: request.cookie, message: error.description)
        } catch let error as ImgMapFailure {
            return try sendError(NBD.EIO, cookie: request.cookie, message: error.description)
        }
        let data = UnsafeRawBufferPointer(rebasing: buffer.bytes[at..<at + Int(request.length)])
        if structured {
            if request.length == 0 { return try sendOK(request.cookie) }
            var offset = BigEndianWriter()
            offset.u64(request.offset)
            try send(NBD.chunkHeader(flags: NBD.replyFlagDone, type: NBD.chunkOffsetData, cookie: request.cookie,
                                     length: request.length + 8) + offset.bytes, more: true)
        } else {
            try send(NBD.simpleReply(error: 0, cookie: request.cookie), more: request.length > 0)
        }
        try send(data)
    }

    func write(_ request: NBDRequest) throws {
        guard let writers = export.writers else { return try sendError(NBD.EPERM, cookie: request.cookie, message: "read-only") }
        // Receive first: the payload must be drained whatever happens next.
        let first = request.offset / sectorSize
        let last = (request.offset + UInt64(request.length) + sectorSize - 1) / sectorSize
        let span = Int((last - first) * sectorSize)
        let buffer = requestBuffer(span)
        let at = Int(request.offset - first * sectorSize)
        try receive(into: UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[at..<at + Int(request.length)]))
        guard request.length > 0 else { return try sendOK(request.cookie) }
        do {
            let scatter = Scatter(map: export.map, options: Scatter.Options())
            try scatter.refuseReadOnly(in: first..<last)
            try scatter.refuseErrors(in: first..<last, upFront: true)
            // A partial first or last sector keeps the rest of its bytes, as a buffered write to a
            // block device does.
            let scratch = IOBuffer(size: Int(sectorSize))
            if at > 0 {
                try reader.read(into: scratch.bytes, at: Sector(first))
                buffer.bytes.baseAddress!.copyMemory(from: scratch.bytes.baseAddress!, byteCount: at)
            }
            let end = at + Int(request.length)
            if end < span {
                try reader.read(into: scratch.bytes, at: Sector(last - 1))
                let inSector = end - (span - Int(sectorSize))
                (buffer.bytes.baseAddress! + end).copyMemory(from: scratch.bytes.baseAddress! + inSector, byteCount: Int(sectorSize) - inSector)
            }
            var report = Scatter.Report(bytes: 0, written: SectorRangeList(), skipped: SectorRangeList(), dropped: SectorRangeList())
            try scatter.write(buffer.prefix(span), at: Sector(first), writers: writers, report: &report)
            if request.flags & NBD.cmdFlagFUA != 0 {
                for leaf in scatter.leavesWritten(in: first..<last) { try writers[ObjectIdentifier(leaf)]?.sync() }
            }
        } catch let error as ImgMapFailure {
            return try sendError(NBD.EIO, cookie: request.cookie, message: error.description)
        }
        try sendOK(request.cookie)
    }

    func flush(_ request: NBDRequest) throws {
        do {
            for file in export.writers?.values ?? [:].values { try file.sync() }
        } catch {
            return try sendError(NBD.EIO, cookie: request.cookie, message: error.description)
        }
        try sendOK(request.cookie)
    }

    /// base:allocation from the sector map: zero extents are holes that read as zeros, image data is
    /// split by SEEK_DATA/SEEK_HOLE into data and holes (a raw image's hole reads as zeros), error and
    /// computed extents are data. Covers at least one byte of the request; at most 4096 descriptors.
    func blockStatus(_ request: NBDRequest) throws {
        guard metaContext else { return try sendError(NBD.EINVAL, cookie: request.cookie, message: "no meta context negotiated") }
        var descriptors: [(UInt32, UInt32)] = []
        let start = request.offset
        let end = start + UInt64(max(request.length, 1))
        let limit = request.flags & NBD.cmdFlagReqOne != 0 ? 1 : 4096
        var pos = start
        func add(_ until: UInt64, _ flags: UInt32) {
            let upper = min(until, end)
            guard upper > pos, descriptors.count < limit else { return }
            if let lastFlags = descriptors.last?.1, lastFlags == flags, UInt64(descriptors[descriptors.count - 1].0) + (upper - pos) <= UInt64(UInt32.max) {
                descriptors[descriptors.count - 1].0 += UInt32(upper - pos)
            } else {
                descriptors.append((UInt32(min(upper - pos, UInt64(UInt32.max))), flags))
            }
            pos = upper
        }
        struct Enough: Error {}
        do {
            try export.map.forEachExtent(from: Sector(start / sectorSize), to: Sector((end + sectorSize - 1) / sectorSize)) { extent in
                if descriptors.count >= limit { throw Enough() }
                let extentEnd = extent.end.bytes
                switch extent.source {
                case .zero:
                    add(extentEnd, NBD.stateHole | NBD.stateZero)
                case .data(let leaf, let offset) where leaf.backing.isRaw:
                    // Image bytes at file offset = device byte - delta.
                    let delta = extent.start.bytes &- offset.bytes
                    while pos < min(extentEnd, end), descriptors.count < limit {
                        let file = pos &- delta
                        if let data = leaf.image.nextData(from: file) {
                            if data > file { add(data &+ delta, NBD.stateHole | NBD.stateZero); continue }
                            let hole = leaf.image.nextHole(from: file)
                            add(max(hole &+ delta, pos + 1), 0)
                        } else {
                            add(extentEnd, NBD.stateHole | NBD.stateZero)
                        }
                    }
                default:
                    add(extentEnd, 0)
                }
            }
        } catch is Enough {}
        var p = BigEndianWriter()
        p.u32(NBD.baseAllocationID)
        for (length, flags) in descriptors { p.u32(length); p.u32(flags) }
        try send(NBD.chunkHeader(flags: NBD.replyFlagDone, type: NBD.chunkBlockStatus, cookie: request.cookie,
                                 length: UInt32(p.bytes.count)) + p.bytes)
    }
}
