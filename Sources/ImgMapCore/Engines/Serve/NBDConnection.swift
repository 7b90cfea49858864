// One NBD client served on its own thread: the handshake (NBDNegotiation), then requests one at a time
// until NBD_CMD_DISC or the socket closes. @unchecked Sendable: a connection is used by its one thread;
// the export is shared and guarded by its lock.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSupport

/// What a server exports: the mapped device, read-only or through the write path.
public final class NBDExport: @unchecked Sendable {
    /// The mapped device the export serves.
    public let map: SectorMap
    /// The export's name (what a client asks for with NBD_OPT_GO; "" is the default export).
    public let name: String
    /// Each member opened read-write (nil: read-only export). Shared by every connection: pwrite on one
    /// descriptor from several threads is safe.
    public let writers: [ObjectIdentifier: ImageFile]?
    /// Reads take it shared, writes exclusive: a write's read-modify-write (a partial sector, a RAID
    /// stripe's parity, a snapshot's exception store) is never interleaved with another connection's
    /// write, and no read sees a target's mapping half changed. Never held across socket I/O.
    let lock: UnsafeMutablePointer<pthread_rwlock_t>

    /// An export of `map` named `name`, writable when `writers` (each member's image opened read-write,
    /// by the identity of its leaf, as scatter opens them) is given.
    public init(map: SectorMap, name: String = "", writers: [ObjectIdentifier: ImageFile]? = nil) {
        self.map = map
        self.name = name
        self.writers = writers
        lock = .allocate(capacity: 1)
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    /// The export's size in bytes.
    public var size: UInt64 { map.size.bytes }
    /// Whether clients may write (the export was made with `writers`).
    public var writable: Bool { writers != nil }

    func reading<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    func writing<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    /// fsyncs every member opened for writing.
    public func syncAll() throws {
        for file in writers?.values ?? [:].values { try file.sync() }
    }
}

/// The end of a connection: the peer went away, timed out, or sent something the protocol cannot
/// recover from.
package struct ConnectionClosed: Error {}

/// Where a connection's bytes come from and go to: a socket, or memory for tests and the fuzz target.
package protocol NBDTransport: AnyObject {
    /// Fills `buffer` completely, or throws `ConnectionClosed`.
    func receive(into buffer: UnsafeMutableRawBufferPointer) throws
    /// Sends all of `bytes`, or throws `ConnectionClosed`. `more`: more of the same reply follows soon.
    func send(_ bytes: UnsafeRawBufferPointer, more: Bool) throws
    /// Sends `header` then `data` as one write where the transport can (a reply's header and its data
    /// wake the client once, not twice), or throws `ConnectionClosed`.
    func send(_ header: UnsafeRawBufferPointer, _ data: UnsafeRawBufferPointer, more: Bool) throws
    /// From now on `receive` gives up at this CLOCK_MONOTONIC time (nil: waits forever).
    func setDeadline(_ deadline: timespec?)
    func close()
}

extension NBDTransport {
    package func send(_ header: UnsafeRawBufferPointer, _ data: UnsafeRawBufferPointer, more: Bool) throws {
        try send(header, more: true)
        try send(data, more: more)
    }
}

/// A connected stream socket. recv/send with EINTR retried; a deadline is kept with poll(2).
package final class SocketTransport: NBDTransport {
    package let fd: Int32
    var deadline: timespec?

    package init(fd: Int32) { self.fd = fd }

    package func setDeadline(_ deadline: timespec?) { self.deadline = deadline }

    /// Milliseconds left before the deadline (0 when past it).
    func millisecondsLeft(_ deadline: timespec) -> Int32 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let left = (Int64(deadline.tv_sec) - Int64(now.tv_sec)) * 1000 + (Int64(deadline.tv_nsec) - Int64(now.tv_nsec)) / 1_000_000
        return Int32(max(0, min(left, Int64(Int32.max))))
    }

    package func receive(into p: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < p.count {
            if let deadline {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&pfd, 1, millisecondsLeft(deadline))
                if ready < 0, errno == EINTR { continue }
                guard ready > 0 else { throw ConnectionClosed() }
            }
            let n = recv(fd, p.baseAddress! + done, p.count - done, 0)
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw ConnectionClosed() }
            done += n
        }
    }

    package func send(_ p: UnsafeRawBufferPointer, more: Bool) throws {
        var done = 0
        while done < p.count {
            let n = Glibc.send(fd, p.baseAddress! + done, p.count - done, Int32(MSG_NOSIGNAL) | (more ? Int32(MSG_MORE) : 0))
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw ConnectionClosed() }
            done += n
        }
    }

    package func close() { _ = Glibc.close(fd) }

    package func send(_ header: UnsafeRawBufferPointer, _ data: UnsafeRawBufferPointer, more: Bool) throws {
        var parts = [iovec(iov_base: UnsafeMutableRawPointer(mutating: header.baseAddress), iov_len: header.count),
                     iovec(iov_base: UnsafeMutableRawPointer(mutating: data.baseAddress), iov_len: data.count)]
        let total = header.count + data.count
        var done = 0
        while done < total {
            let n = parts.withUnsafeMutableBufferPointer { iov -> Int in
                var message = msghdr()
                message.msg_iov = iov.baseAddress
                message.msg_iovlen = iov.count
                return sendmsg(fd, &message, Int32(MSG_NOSIGNAL) | (more ? Int32(MSG_MORE) : 0))
            }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw ConnectionClosed() }
            done += n
            // A partial send: drop what went out from the front of the two parts.
            var sent = n
            for i in parts.indices where sent > 0 {
                let k = min(sent, parts[i].iov_len)
                parts[i].iov_base = parts[i].iov_base.map { $0 + k }
                parts[i].iov_len -= k
                sent -= k
            }
        }
    }
}

/// One client. Memory is bounded by one buffer of `NBD.pieceSize` plus a sector, whatever is asked.
package final class NBDConnection: @unchecked Sendable {
    let transport: any NBDTransport
    let export: NBDExport
    let reader: MapReader
    let scatter: Scatter
    let handshakeTimeout: Int
    var negotiation: NBDNegotiation
    var session: NBDSession
    var pieceBuffer: IOBuffer?

    package init(transport: any NBDTransport, export: NBDExport, handshakeTimeout: Int = NBD.defaultHandshakeTimeout) {
        self.transport = transport
        self.export = export
        self.handshakeTimeout = handshakeTimeout
        reader = MapReader(map: export.map, onError: .fail)
        scatter = Scatter(map: export.map, options: Scatter.Options())
        negotiation = NBDNegotiation(exportName: export.name, exportSize: export.size, writable: export.writable)
        session = negotiation.session
    }

    /// Serves the client until it leaves, then closes the transport. Never throws: a broken client
    /// only ends its own connection.
    package func serve() {
        defer { transport.close() }
        do {
            var deadline = timespec()
            clock_gettime(CLOCK_MONOTONIC, &deadline)
            deadline.tv_sec += handshakeTimeout
            transport.setDeadline(deadline)
            guard try handshake() else { return }
            transport.setDeadline(nil)
            session = negotiation.session
            try transmission()
        } catch {}
    }

    // MARK: Bytes

    func receive(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        if count > 0 { try bytes.withUnsafeMutableBytes { try transport.receive(into: $0) } }
        return bytes
    }

    func send(_ bytes: [UInt8], more: Bool = false) throws {
        try bytes.withUnsafeBytes { try transport.send($0, more: more) }
    }

    /// Reads and drops `count` bytes through the piece buffer (a payload that is not used).
    func discard(_ count: Int) throws {
        let scratch = buffer()
        var left = count
        while left > 0 {
            let n = min(left, scratch.count)
            try transport.receive(into: UnsafeMutableRawBufferPointer(rebasing: scratch.bytes[0..<n]))
            left -= n
        }
    }

    /// The connection's one buffer: a piece plus a partial sector, allocated on first use.
    func buffer() -> IOBuffer {
        if let pieceBuffer { return pieceBuffer }
        let fresh = IOBuffer(size: NBD.pieceSize + Int(sectorSize))
        pieceBuffer = fresh
        return fresh
    }

    // MARK: Handshake

    /// The fixed newstyle handshake. Returns false when the client aborted or must be dropped.
    func handshake() throws -> Bool {
        try send(NBDNegotiation.greeting)
        var r = BigEndianReader(try receive(4))
        guard negotiation.clientFlags(r.u32()!) else { return false }
        while true {
            guard let (option, length) = NBDNegotiation.optionHeader(try receive(16)) else { return false }
            let step: NBDNegotiation.Step
            if length > NBD.maxOptionLength {
                try discard(Int(length))
                step = negotiation.tooBig(option)
            } else {
                step = negotiation.option(option, data: try receive(Int(length)))
            }
            switch step {
            case .reply(let bytes): try send(bytes)
            case .transmission(let bytes): try send(bytes); return true
            case .abort(let bytes): try? send(bytes); return false
            case .close: return false
            }
        }
    }

    // MARK: Transmission

    func transmission() throws {
        var header = [UInt8](repeating: 0, count: NBD.requestHeaderSize)
        while true {
            try header.withUnsafeMutableBytes { try transport.receive(into: $0) }
            // Garbage instead of a request header: nothing can be trusted any more (proto.md allows a
            // hard disconnect on a violation).
            guard let request = NBDRequest.parse(header) else { throw ConnectionClosed() }
            if request.type == NBD.cmdDisc { return }
            if let (error, message) = request.refusal(in: session) {
                if request.hasPayload { try discard(Int(request.length)) }
                try sendError(error, cookie: request.cookie, message: message)
                continue
            }
            switch request.type {
            case NBD.cmdRead: try read(request)
            case NBD.cmdWrite: try write(request)
            case NBD.cmdFlush: try flush(request)
            case NBD.cmdTrim: try trim(request)
            case NBD.cmdWriteZeroes: try writeZeroes(request)
            case NBD.cmdBlockStatus: try blockStatus(request)
            default: try sendOK(request.cookie)  // CACHE: a hint; the page cache does the rest
            }
        }
    }

    func sendOK(_ cookie: UInt64) throws {
        if session.structured {
            try send(NBD.chunkHeader(flags: NBD.replyFlagDone, type: NBD.chunkNone, cookie: cookie, length: 0))
        } else {
            try send(NBD.simpleReply(error: 0, cookie: cookie))
        }
    }

    func sendError(_ error: UInt32, cookie: UInt64, message: String) throws {
        if session.structured {
            try send(NBD.errorChunk(error: error, cookie: cookie, message: message))
        } else {
            try send(NBD.simpleReply(error: error, cookie: cookie))
        }
    }

    /// The first error extent in sectors [first, last), as the message the kernel's EIO is told with.
    func errorExtent(_ first: UInt64, _ last: UInt64) -> String? {
        struct Found: Error { let message: String }
        do {
            try export.map.forEachExtent(from: Sector(first), to: Sector(last)) { extent in
                if case .error = extent.source {
                    throw Found(message: "sectors \(extent.start.value)+\(extent.length.value) (\(extent.origin.description)) fail with EIO, as the kernel's device does")
                }
            }
        } catch let found as Found {
            return found.message
        } catch {}
        return nil
    }

    /// The sectors a byte range touches, partial ones included.
    static func covering(_ offset: UInt64, _ length: UInt32) -> (first: UInt64, last: UInt64) {
        (offset / sectorSize, (offset + UInt64(length) + sectorSize - 1) / sectorSize)
    }

    /// Where the piece starting at device byte `pos` ends: at most `NBD.pieceSize` bytes from the sector
    /// holding `pos`, so the piece and its partial sectors fit the buffer.
    static func pieceEnd(_ pos: UInt64, _ end: UInt64) -> UInt64 {
        min(end, pos / sectorSize * sectorSize + UInt64(NBD.pieceSize))
    }

    /// A READ: an error extent anywhere in it fails it whole with EIO before any data (the kernel fails
    /// the whole bio). Data goes in pieces, each read through MapReader into the buffer before it is
    /// sent; with structured replies as one OFFSET_DATA chunk (so DF is always honoured), carrying DONE
    /// when the read is one piece. The first piece goes out with the reply's header in one write.
    func read(_ request: NBDRequest) throws {
        let (first, last) = Self.covering(request.offset, request.length)
        if let message = export.reading({ errorExtent(first, last) }) {
            return try sendError(NBD.EIO, cookie: request.cookie, message: message)
        }
        if request.length == 0 { return try sendOK(request.cookie) }
        let end = request.offset + UInt64(request.length)
        let buffer = buffer()
        let onePiece = Self.pieceEnd(request.offset, end) == end
        var pos = request.offset
        while pos < end {
            let pieceEnd = Self.pieceEnd(pos, end)
            let base = pos / sectorSize * sectorSize
            let span = Int((pieceEnd + sectorSize - 1) / sectorSize * sectorSize - base)
            do {
                try export.reading { try reader.read(into: buffer.prefix(span), at: Sector(base / sectorSize)) }
            } catch {
                let message = "\(NBD.commandName(request.type)) at byte \(pos): \((error as? ImgMapFailure)?.description ?? String(describing: error))"
                if pos == request.offset { return try sendError(NBD.EIO, cookie: request.cookie, message: message) }
                return try failAfterHeader(request, at: pos, message)
            }
            let at = Int(pos - base)
            let data = UnsafeRawBufferPointer(rebasing: buffer.bytes[at..<at + Int(pieceEnd - pos)])
            if pos == request.offset {
                try readReplyHeader(request, done: onePiece).withUnsafeBytes { try transport.send($0, data, more: pieceEnd < end) }
            } else {
                try transport.send(data, more: pieceEnd < end)
            }
            pos = pieceEnd
        }
        if session.structured, !onePiece {
            try send(NBD.chunkHeader(flags: NBD.replyFlagDone, type: NBD.chunkNone, cookie: request.cookie, length: 0))
        }
    }

    /// What precedes a READ's data: the OFFSET_DATA chunk header and offset (structured), or the simple
    /// reply.
    func readReplyHeader(_ request: NBDRequest, done: Bool) -> [UInt8] {
        guard session.structured else { return NBD.simpleReply(error: 0, cookie: request.cookie) }
        var offset = BigEndianWriter()
        offset.u64(request.offset)
        return NBD.chunkHeader(flags: done ? NBD.replyFlagDone : 0, type: NBD.chunkOffsetData,
                               cookie: request.cookie, length: request.length + 8) + offset.bytes
    }

    /// A READ that failed at byte `at` once its data was on its way: the chunk is completed with zeros
    /// and an error chunk ends the reply (structured), or the connection is dropped (simple replies:
    /// proto.md's only option). Only a read of several pieces gets here, so the data chunk lacks DONE.
    func failAfterHeader(_ request: NBDRequest, at: UInt64, _ message: String) throws {
        guard session.structured else { throw ConnectionClosed() }
        var left = request.offset + UInt64(request.length) - at
        while left > 0 {
            let n = Int(min(left, UInt64(zeroPagesSize)))
            try transport.send(UnsafeRawBufferPointer(start: zeroPages, count: n), more: true)
            left -= UInt64(n)
        }
        try send(NBD.errorChunk(error: NBD.EIO, cookie: request.cookie, message: message))
    }

    /// What the write path refuses for sectors [first, last) before anything is written: a target or
    /// image that cannot be written (EPERM), an error extent (EIO, as the kernel's write).
    func writeRefusal(_ first: UInt64, _ last: UInt64) -> (UInt32, String)? {
        guard last > first else { return nil }
        do {
            try scatter.refuseReadOnly(in: first..<last)
        } catch {
            return (NBD.EPERM, (error as? ImgMapFailure)?.description ?? String(describing: error))
        }
        do {
            try scatter.refuseErrors(in: first..<last, upFront: true)
        } catch {
            return (NBD.EIO, (error as? ImgMapFailure)?.description ?? String(describing: error))
        }
        return nil
    }

    /// Makes what a FUA request wrote durable: fsync of the members it touched.
    func syncWritten(_ first: UInt64, _ last: UInt64) throws {
        guard let writers = export.writers else { return }
        for leaf in scatter.leavesWritten(in: first..<last) { try writers[ObjectIdentifier(leaf)]?.sync() }
    }

    /// Merges the bytes of device sector `sector` outside [from, to) into `buffer` at `at` (a partial
    /// sector keeps the rest of its bytes, as a buffered write to a block device does).
    func mergeSector(_ sector: UInt64, keepingOutside from: Int, _ to: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        let current = IOBuffer(size: Int(sectorSize))
        try reader.read(into: current.bytes, at: Sector(sector))
        if from > 0 { buffer.baseAddress!.copyMemory(from: current.bytes.baseAddress!, byteCount: from) }
        if to < Int(sectorSize) {
            (buffer.baseAddress! + to).copyMemory(from: current.bytes.baseAddress! + to, byteCount: Int(sectorSize) - to)
        }
    }

    /// A WRITE through the write path (scatter's rules), piece by piece as the payload arrives; each
    /// piece is written under the export's write lock, which is never held while waiting for the client.
    func write(_ request: NBDRequest) throws {
        let (first, last) = Self.covering(request.offset, request.length)
        var failure = export.reading { writeRefusal(first, last) }
        let end = request.offset + UInt64(request.length)
        let buffer = buffer()
        var pos = request.offset
        while pos < end {
            let pieceEnd = Self.pieceEnd(pos, end)
            let base = pos / sectorSize * sectorSize
            let spanEnd = (pieceEnd + sectorSize - 1) / sectorSize * sectorSize
            let at = Int(pos - base)
            let count = Int(pieceEnd - pos)
            try transport.receive(into: UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[at..<at + count]))
            if failure == nil, let writers = export.writers {
                do {
                    try export.writing {
                        let span = buffer.prefix(Int(spanEnd - base))
                        if at > 0 {
                            let to = min(Int(sectorSize), at + count)
                            try mergeSector(base / sectorSize, keepingOutside: at, to, into: span)
                        }
                        let tailStart = spanEnd - sectorSize
                        if pieceEnd % sectorSize != 0, tailStart >= base + (at > 0 ? sectorSize : 0) {
                            let tail = UnsafeMutableRawBufferPointer(rebasing: span[Int(tailStart - base)...])
                            try mergeSector(tailStart / sectorSize, keepingOutside: 0, Int(pieceEnd - tailStart), into: tail)
                        }
                        var report = Scatter.Report(bytes: 0, written: SectorRangeList(), skipped: SectorRangeList(), dropped: SectorRangeList())
                        try scatter.write(span, at: Sector(base / sectorSize), writers: writers, report: &report)
                    }
                } catch {
                    failure = (NBD.EIO, "WRITE at byte \(pos): \((error as? ImgMapFailure)?.description ?? String(describing: error))")
                }
            }
            pos = pieceEnd
        }
        if failure == nil, request.flags & NBD.cmdFlagFUA != 0 {
            do { try syncWritten(first, last) } catch { failure = (NBD.EIO, "fsync: \(error)") }
        }
        if let (error, message) = failure { return try sendError(error, cookie: request.cookie, message: message) }
        try sendOK(request.cookie)
    }

    func flush(_ request: NBDRequest) throws {
        do {
            try export.syncAll()
        } catch {
            return try sendError(NBD.EIO, cookie: request.cookie, message: (error as? ImgMapFailure)?.description ?? "\(error)")
        }
        try sendOK(request.cookie)
    }

    /// The whole sectors inside a byte range.
    static func inner(_ offset: UInt64, _ length: UInt32) -> Range<UInt64> {
        let first = (offset + sectorSize - 1) / sectorSize
        let last = (offset + UInt64(length)) / sectorSize
        return first..<max(first, last)
    }

    /// A refusal found under the write lock, answered with its own error value.
    struct Refused: Error {
        let error: UInt32
        let message: String
    }

    /// The frame TRIM and WRITE_ZEROES share: under the write lock, the write path's refusals first
    /// (nothing is done unless the whole range can be), then `body` with the members' writers (not
    /// called on a read-only export); FUA fsyncs the members touched; one reply. `Refused` from `body`
    /// is answered with its error, any other error with EIO.
    func modify(_ request: NBDRequest, _ body: (_ writers: [ObjectIdentifier: ImageFile]) throws -> Void) throws {
        let (first, last) = Self.covering(request.offset, request.length)
        do {
            try export.writing {
                if let (error, message) = writeRefusal(first, last) { throw Refused(error: error, message: message) }
                guard let writers = export.writers else { return }
                try body(writers)
            }
            if request.flags & NBD.cmdFlagFUA != 0 { try syncWritten(first, last) }
        } catch let refused as Refused {
            return try sendError(refused.error, cookie: request.cookie, message: refused.message)
        } catch {
            return try sendError(NBD.EIO, cookie: request.cookie, message: (error as? ImgMapFailure)?.description ?? "\(error)")
        }
        try sendOK(request.cookie)
    }

    /// Calls `body(leaf, writer, file byte offset, byte length)` for each raw image extent within
    /// device sectors `whole` that has a writer: where TRIM and WRITE_ZEROES hand whole sectors to
    /// fallocate(2).
    func forEachImageExtent(in whole: Range<UInt64>, writers: [ObjectIdentifier: ImageFile],
                            _ body: (LeafFile, ImageFile, UInt64, UInt64) throws -> Void) throws {
        guard !whole.isEmpty else { return }
        try export.map.forEachExtent(from: Sector(whole.lowerBound), to: Sector(whole.upperBound)) { extent in
            guard case .data(let leaf, let offset) = extent.source, let writer = writers[ObjectIdentifier(leaf)] else { return }
            try body(leaf, writer, offset.bytes, extent.length.bytes)
        }
    }

    /// A TRIM, as the kernel's discard through dm: an image extent has its whole sectors deallocated
    /// with fallocate(PUNCH_HOLE) (what the loop driver does for a discard; they then read as zeros),
    /// a zero extent drops it (dm-zero), an error extent fails it with EIO (dm-error). Through a computed
    /// piece (crypt, raid, snapshot, …) it is refused with EINVAL: those targets do not pass discards
    /// offline. Partial sectors at the ends are left alone (a discard is a hint). Nothing is done unless
    /// the whole range can be.
    func trim(_ request: NBDRequest) throws {
        let (first, last) = Self.covering(request.offset, request.length)
        try modify(request) { writers in
            try export.map.forEachExtent(from: Sector(first), to: Sector(last)) { extent in
                if case .computed = extent.source {
                    throw Refused(error: NBD.EINVAL, message: "TRIM of sectors \(extent.start.value)+\(extent.length.value) (\(extent.origin.description)): not passed through \(extent.origin.target) offline")
                }
            }
            try forEachImageExtent(in: Self.inner(request.offset, request.length), writers: writers) { leaf, writer, at, length in
                guard imgmap_punch_hole(writer.fd, Int64(at), Int64(length)) != 0 else { return }
                let code = errno
                // A filesystem without hole punching: the discard is only a hint.
                if code == EOPNOTSUPP || code == ENOSYS { return }
                throw IOFailure(path: leaf.path, operation: "fallocate(PUNCH_HOLE) at byte \(at)", errno: code)
            }
        }
    }

    /// A WRITE_ZEROES, as the kernel's: over image extents only, the whole sectors go to
    /// fallocate(PUNCH_HOLE), or fallocate(ZERO_RANGE) with NO_HOLE (what the loop driver does with
    /// REQ_OP_WRITE_ZEROES without and with REQ_NOUNMAP; written zeros where the filesystem cannot);
    /// zero extents drop it, error extents fail it with EIO up front. When the range crosses a computed
    /// piece the whole range is written with zeros through the write path, as the block layer emulates
    /// write-zeroes for a device that cannot offload it. Partial sectors are read-modify-written.
    func writeZeroes(_ request: NBDRequest) throws {
        let (first, last) = Self.covering(request.offset, request.length)
        let end = request.offset + UInt64(request.length)
        let whole = Self.inner(request.offset, request.length)
        try modify(request) { writers in
            guard request.length > 0 else { return }
            var report = Scatter.Report(bytes: 0, written: SectorRangeList(), skipped: SectorRangeList(), dropped: SectorRangeList())
            // The partial sectors at either end (one sector when the range lies inside it).
            for sector in Set([first, last - 1]) where !whole.contains(sector) {
                let from = Int(max(request.offset, sector * sectorSize) - sector * sectorSize)
                let to = Int(min(end, (sector + 1) * sectorSize) - sector * sectorSize)
                let one = IOBuffer(size: Int(sectorSize))
                try mergeSector(sector, keepingOutside: from, to, into: one.bytes)
                one.bytes[from..<to].initializeMemory(as: UInt8.self, repeating: 0)
                try scatter.write(one.bytes, at: Sector(sector), writers: writers, report: &report)
            }
            guard !whole.isEmpty else { return }
            var computed = false
            export.map.forEachExtent(from: Sector(whole.lowerBound), to: Sector(whole.upperBound)) { extent in
                if case .computed = extent.source { computed = true }
            }
            if computed {
                let zeros = buffer()
                zeros.bytes.initializeMemory(as: UInt8.self, repeating: 0)
                let step = UInt64(NBD.pieceSize) / sectorSize
                var sector = whole.lowerBound
                while sector < whole.upperBound {
                    let n = min(step, whole.upperBound - sector)
                    try scatter.write(zeros.prefix(Int(n * sectorSize)), at: Sector(sector), writers: writers, report: &report)
                    sector += n
                }
                return
            }
            let noHole = request.flags & NBD.cmdFlagNoHole != 0
            try forEachImageExtent(in: whole, writers: writers) { leaf, writer, at, length in
                let rc = noHole ? imgmap_zero_range(writer.fd, Int64(at), Int64(length)) : imgmap_punch_hole(writer.fd, Int64(at), Int64(length))
                guard rc != 0 else { return }
                let code = errno
                guard code == EOPNOTSUPP || code == ENOSYS || code == EINVAL else {
                    throw IOFailure(path: leaf.path, operation: "fallocate at byte \(at)", errno: code)
                }
                var done: UInt64 = 0
                while done < length {
                    let n = Int(min(length - done, UInt64(zeroPagesSize)))
                    try writer.write(UnsafeRawBufferPointer(start: zeroPages, count: n), at: at + done)
                    done += UInt64(n)
                }
            }
        }
    }

    /// base:allocation from the sector map: zero extents are holes that read as zeros, image data is
    /// split by SEEK_DATA/SEEK_HOLE into data and holes (a raw image's hole reads as zeros), error and
    /// computed extents are data (status 0 is always safe, proto.md). Covers at least one byte of the
    /// request and never more than it; at most 4096 descriptors (1 with REQ_ONE).
    func blockStatus(_ request: NBDRequest) throws {
        let descriptors = export.reading { Self.descriptors(of: export.map, offset: request.offset, length: request.length,
                                                           limit: request.flags & NBD.cmdFlagReqOne != 0 ? 1 : 4096) }
        var p = BigEndianWriter()
        p.u32(NBD.baseAllocationID)
        for (length, flags) in descriptors { p.u32(length); p.u32(flags) }
        try send(NBD.chunkHeader(flags: NBD.replyFlagDone, type: NBD.chunkBlockStatus, cookie: request.cookie,
                                 length: UInt32(p.bytes.count)) + p.bytes)
    }

    /// The base:allocation descriptors (length, flags) of bytes [offset, offset+length) of `map`
    /// (length > 0, inside the device).
    static func descriptors(of map: SectorMap, offset start: UInt64, length: UInt32, limit: Int) -> [(UInt32, UInt32)] {
        var descriptors: [(UInt32, UInt32)] = []
        let end = start + UInt64(length)
        var pos = start
        func add(_ until: UInt64, _ flags: UInt32) {
            let upper = min(until, end)
            guard upper > pos else { return }
            if let last = descriptors.last, last.1 == flags {
                descriptors[descriptors.count - 1].0 += UInt32(upper - pos)
            } else {
                guard descriptors.count < limit else { pos = end; return }
                descriptors.append((UInt32(upper - pos), flags))
            }
            pos = upper
        }
        struct Enough: Error {}
        do {
            try map.forEachExtent(from: Sector(start / sectorSize), to: Sector((end + sectorSize - 1) / sectorSize)) { extent in
                if pos >= end { throw Enough() }
                let extentEnd = extent.end.bytes
                switch extent.source {
                case .zero:
                    add(extentEnd, NBD.stateHole | NBD.stateZero)
                case .data(let leaf, let offset) where leaf.backing.isRaw:
                    // Image bytes at file offset = device byte - delta.
                    let delta = extent.start.bytes &- offset.bytes
                    while pos < min(extentEnd, end) {
                        let file = pos &- delta
                        if let data = leaf.image.nextData(from: file) {
                            if data > file { add(min(data &+ delta, extentEnd), NBD.stateHole | NBD.stateZero); continue }
                            let hole = leaf.image.nextHole(from: file)
                            add(min(max(hole &+ delta, pos + 1), extentEnd), 0)
                        } else {
                            add(extentEnd, NBD.stateHole | NBD.stateZero)
                        }
                    }
                default:
                    add(extentEnd, 0)
                }
            }
        } catch {}
        return descriptors
    }
}

/// A client's whole byte stream given up front; what the server sends is kept (up to `keep` bytes) and
/// counted. For tests and the fuzz target: the server runs without a socket or a thread.
package final class MemoryTransport: NBDTransport {
    let input: [UInt8]
    var position = 0
    let keep: Int
    package private(set) var output: [UInt8] = []
    package private(set) var sentBytes = 0
    package private(set) var closed = false

    package init(input: [UInt8], keep: Int = 1 << 20) {
        self.input = input
        self.keep = keep
    }

    package func receive(into buffer: UnsafeMutableRawBufferPointer) throws {
        guard input.count - position >= buffer.count else {
            position = input.count
            throw ConnectionClosed()
        }
        if buffer.count > 0 {
            input.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[position..<position + buffer.count])) }
        }
        position += buffer.count
    }

    package func send(_ bytes: UnsafeRawBufferPointer, more: Bool) throws {
        guard !closed else { throw ConnectionClosed() }
        sentBytes += bytes.count
        if output.count < keep { output += bytes.prefix(keep - output.count) }
    }

    package func setDeadline(_ deadline: timespec?) {}
    package func close() { closed = true }
}
