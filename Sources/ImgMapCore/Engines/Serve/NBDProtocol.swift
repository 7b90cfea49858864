// The Network Block Device protocol, as doc/proto.md of the NetworkBlockDevice/nbd project states it:
// the fixed newstyle handshake (no TLS), option haggling, and the transmission phase's requests and
// replies (simple and structured). Everything here is a pure function over bytes, so the parsers can
// be tested and fuzzed (FuzzEntryPoints.nbdSession) without a socket.

/// Magic numbers, option, reply, flag and error codes of the NBD protocol (all big-endian on the wire).
public enum NBD {
    package static let initMagic: UInt64 = 0x4e42_444d_4147_4943  // "NBDMAGIC"
    package static let optionMagic: UInt64 = 0x4948_4156_454f_5054  // "IHAVEOPT"
    package static let optionReplyMagic: UInt64 = 0x0003_e889_0455_65a9
    package static let requestMagic: UInt32 = 0x2560_9513
    package static let simpleReplyMagic: UInt32 = 0x6744_6698
    package static let structuredReplyMagic: UInt32 = 0x668e_33ef

    // Handshake flags (server) and client flags.
    package static let flagFixedNewstyle: UInt16 = 1 << 0
    package static let flagNoZeroes: UInt16 = 1 << 1
    package static let clientFixedNewstyle: UInt32 = 1 << 0
    package static let clientNoZeroes: UInt32 = 1 << 1

    // Options.
    package static let optExportName: UInt32 = 1
    package static let optAbort: UInt32 = 2
    package static let optList: UInt32 = 3
    package static let optStartTLS: UInt32 = 5
    package static let optInfo: UInt32 = 6
    package static let optGo: UInt32 = 7
    package static let optStructuredReply: UInt32 = 8
    package static let optListMetaContext: UInt32 = 9
    package static let optSetMetaContext: UInt32 = 10

    // Option replies.
    package static let repAck: UInt32 = 1
    package static let repServer: UInt32 = 2
    package static let repInfo: UInt32 = 3
    package static let repMetaContext: UInt32 = 4
    package static let repErrUnsup: UInt32 = 0x8000_0001
    package static let repErrPolicy: UInt32 = 0x8000_0002
    package static let repErrInvalid: UInt32 = 0x8000_0003
    package static let repErrUnknown: UInt32 = 0x8000_0006
    package static let repErrTooBig: UInt32 = 0x8000_0009

    // Info types.
    package static let infoExport: UInt16 = 0
    package static let infoName: UInt16 = 1
    package static let infoDescription: UInt16 = 2
    package static let infoBlockSize: UInt16 = 3

    // Transmission flags.
    package static let hasFlags: UInt16 = 1 << 0
    package static let readOnly: UInt16 = 1 << 1
    package static let sendFlush: UInt16 = 1 << 2
    package static let sendFUA: UInt16 = 1 << 3
    package static let sendTrim: UInt16 = 1 << 5
    package static let sendWriteZeroes: UInt16 = 1 << 6
    package static let sendDF: UInt16 = 1 << 7
    package static let canMultiConn: UInt16 = 1 << 8
    package static let sendCache: UInt16 = 1 << 10

    // Commands and command flags.
    package static let cmdRead: UInt16 = 0
    package static let cmdWrite: UInt16 = 1
    package static let cmdDisc: UInt16 = 2
    package static let cmdFlush: UInt16 = 3
    package static let cmdTrim: UInt16 = 4
    package static let cmdCache: UInt16 = 5
    package static let cmdWriteZeroes: UInt16 = 6
    package static let cmdBlockStatus: UInt16 = 7
    package static let cmdFlagFUA: UInt16 = 1 << 0
    package static let cmdFlagNoHole: UInt16 = 1 << 1
    package static let cmdFlagDF: UInt16 = 1 << 2
    package static let cmdFlagReqOne: UInt16 = 1 << 3
    package static let cmdFlagFastZero: UInt16 = 1 << 4

    // Structured reply chunks.
    package static let replyFlagDone: UInt16 = 1 << 0
    package static let chunkNone: UInt16 = 0
    package static let chunkOffsetData: UInt16 = 1
    package static let chunkOffsetHole: UInt16 = 2
    package static let chunkBlockStatus: UInt16 = 5
    package static let chunkError: UInt16 = 0x8001
    package static let chunkErrorOffset: UInt16 = 0x8002

    // base:allocation block status flags.
    package static let stateHole: UInt32 = 1 << 0
    package static let stateZero: UInt32 = 1 << 1

    // Errors (the protocol's own numbers, equal to Linux errno values).
    package static let EPERM: UInt32 = 1
    package static let EIO: UInt32 = 5
    package static let ENOMEM: UInt32 = 12
    package static let EINVAL: UInt32 = 22
    package static let ENOSPC: UInt32 = 28
    package static let EOVERFLOW: UInt32 = 75
    package static let ENOTSUP: UInt32 = 95
    package static let ESHUTDOWN: UInt32 = 108

    /// The size of a request header on the wire.
    package static let requestHeaderSize = 28
    /// The largest READ/WRITE payload served: the spec's recommended maximum block size. Larger requests
    /// are refused (EINVAL, or EOVERFLOW for a read with structured replies, as proto.md allows), which
    /// bounds each connection's buffer.
    package static let maxPayload: UInt32 = 32 << 20
    /// The longest option payload taken during the handshake (names and queries are short): a longer
    /// one is read in pieces, dropped and answered with NBD_REP_ERR_TOO_BIG.
    package static let maxOptionLength: UInt32 = 64 << 10
    /// Reads and writes are carried out in pieces of at most this many bytes (plus a partial sector each
    /// side), so one connection holds one buffer of this size whatever the request length.
    package static let pieceSize = 2 << 20
    /// How long a client may take from connecting to the end of the handshake, by default (nbdkit's
    /// --timeout idea): a connection that never negotiates holds a thread and a socket.
    public static let defaultHandshakeTimeout = 30
    /// How many clients are served at once, by default. Each costs a thread and one piece buffer
    /// (about 3 MiB with its stack); nbdcopy opens 4 connections, qemu one per drive, nbdfuse up to 4.
    public static let defaultMaxConnections = 16

    package static func commandName(_ type: UInt16) -> String {
        switch type {
        case cmdRead: "READ"
        case cmdWrite: "WRITE"
        case cmdDisc: "DISC"
        case cmdFlush: "FLUSH"
        case cmdTrim: "TRIM"
        case cmdCache: "CACHE"
        case cmdWriteZeroes: "WRITE_ZEROES"
        case cmdBlockStatus: "BLOCK_STATUS"
        default: "command \(type)"
        }
    }
    /// The only meta context served.
    package static let baseAllocation = "base:allocation"
    package static let baseAllocationID: UInt32 = 1
}

/// What was negotiated for one connection, as far as checking a request needs it.
package struct NBDSession: Equatable, Sendable {
    package var exportSize: UInt64
    package var writable: Bool
    package var structured: Bool
    package var metaContext: Bool

    package init(exportSize: UInt64, writable: Bool, structured: Bool, metaContext: Bool) {
        self.exportSize = exportSize
        self.writable = writable
        self.structured = structured
        self.metaContext = metaContext
    }

    /// The transmission flags, stated truthfully. FLUSH and FUA (they fsync the members), CACHE (a
    /// hint), TRIM and WRITE_ZEROES when writable (each refused where the mapping cannot do it, see
    /// `NBDConnection.trim`), DF only with structured replies (proto.md: MUST be clear otherwise).
    /// CAN_MULTI_CONN always: there is no cache in the server (every connection reads and writes the
    /// same descriptors, so a FLUSH on one fsyncs what all of them wrote), and writes take the export's
    /// write lock, so a read-modify-write of a partial sector, parity or an exception store is never
    /// interleaved with another connection's.
    package var transmissionFlags: UInt16 {
        var flags = NBD.hasFlags | NBD.sendFlush | NBD.sendFUA | NBD.sendCache | NBD.canMultiConn
        flags |= writable ? NBD.sendTrim | NBD.sendWriteZeroes : NBD.readOnly
        if structured { flags |= NBD.sendDF }
        return flags
    }
}

/// One transmission-phase request header.
package struct NBDRequest: Equatable, Sendable {
    package var flags: UInt16
    package var type: UInt16
    package var cookie: UInt64
    package var offset: UInt64
    package var length: UInt32

    package init(flags: UInt16 = 0, type: UInt16, cookie: UInt64, offset: UInt64, length: UInt32) {
        self.flags = flags
        self.type = type
        self.cookie = cookie
        self.offset = offset
        self.length = length
    }

    /// Parses a 28-byte header; nil when the magic is wrong or the bytes are short (the connection is then
    /// beyond recovery: proto.md says the server may close it).
    package static func parse(_ bytes: some Collection<UInt8>) -> NBDRequest? {
        var reader = BigEndianReader(bytes)
        guard let magic = reader.u32(), magic == NBD.requestMagic,
              let flags = reader.u16(), let type = reader.u16(), let cookie = reader.u64(),
              let offset = reader.u64(), let length = reader.u32() else { return nil }
        return NBDRequest(flags: flags, type: type, cookie: cookie, offset: offset, length: length)
    }

    package var bytes: [UInt8] {
        var w = BigEndianWriter()
        w.u32(NBD.requestMagic); w.u16(flags); w.u16(type); w.u64(cookie); w.u64(offset); w.u32(length)
        return w.bytes
    }

    /// Whether the request carries a payload after its header (only WRITE: whatever the answer, its
    /// `length` bytes must be read before the next header).
    package var hasPayload: Bool { type == NBD.cmdWrite }

    /// The command flags proto.md allows on each command: FUA on all (a server advertising FUA must
    /// accept it everywhere), DF on READ once structured replies are on, NO_HOLE on WRITE_ZEROES,
    /// REQ_ONE on BLOCK_STATUS. FAST_ZERO is not advertised, so it is refused.
    static func allowedFlags(_ type: UInt16, structured: Bool) -> UInt16 {
        switch type {
        case NBD.cmdRead: NBD.cmdFlagFUA | (structured ? NBD.cmdFlagDF : 0)
        case NBD.cmdWriteZeroes: NBD.cmdFlagFUA | NBD.cmdFlagNoHole
        case NBD.cmdBlockStatus: NBD.cmdFlagFUA | NBD.cmdFlagReqOne
        default: NBD.cmdFlagFUA
        }
    }

    /// Why a request is answered with an error before any I/O, or nil when it may go ahead: the NBD
    /// error and a message for a structured error chunk. Follows proto.md's "Error values": EINVAL for
    /// an unknown command or flag, EPERM for a write to a read-only export, ENOSPC for a write past the
    /// end, EINVAL for any other request past the end, EINVAL for a READ or WRITE longer than the
    /// advertised maximum block size (EOVERFLOW for a READ with DF, which allows that answer), EINVAL for
    /// BLOCK_STATUS without a meta context or with length 0 (no descriptor could be sent).
    package func refusal(in session: NBDSession) -> (error: UInt32, message: String)? {
        let known: Set<UInt16> = [NBD.cmdRead, NBD.cmdWrite, NBD.cmdDisc, NBD.cmdFlush, NBD.cmdTrim, NBD.cmdCache,
                                  NBD.cmdWriteZeroes, NBD.cmdBlockStatus]
        guard known.contains(type) else { return (NBD.EINVAL, "unknown command \(type)") }
        let stray = flags & ~Self.allowedFlags(type, structured: session.structured)
        guard stray == 0 else { return (NBD.EINVAL, "command flags 0x\(String(stray, radix: 16)) are not valid on \(NBD.commandName(type))") }
        let writes = type == NBD.cmdWrite || type == NBD.cmdTrim || type == NBD.cmdWriteZeroes
        if writes, !session.writable { return (NBD.EPERM, "the export is read-only (serve --writable to accept writes)") }
        if type == NBD.cmdFlush || type == NBD.cmdDisc { return nil }
        if type == NBD.cmdRead || type == NBD.cmdWrite, length > NBD.maxPayload {
            let df = type == NBD.cmdRead && flags & NBD.cmdFlagDF != 0
            return (df ? NBD.EOVERFLOW : NBD.EINVAL, "\(NBD.commandName(type)) of \(length) bytes is longer than the maximum block size (\(NBD.maxPayload))")
        }
        guard offset <= session.exportSize, UInt64(length) <= session.exportSize - offset else {
            let error = type == NBD.cmdWrite || type == NBD.cmdWriteZeroes ? NBD.ENOSPC : NBD.EINVAL
            return (error, "\(NBD.commandName(type)) of bytes \(offset)+\(length) lies past the end of the export (\(session.exportSize) bytes)")
        }
        if type == NBD.cmdBlockStatus {
            guard session.structured, session.metaContext else { return (NBD.EINVAL, "BLOCK_STATUS without a negotiated meta context") }
            guard length > 0 else { return (NBD.EINVAL, "BLOCK_STATUS of length 0") }
        }
        return nil
    }
}

/// What NBD_OPT_INFO and NBD_OPT_GO ask: an export name and the info types wanted.
package struct NBDInfoRequest: Equatable, Sendable {
    package var name: String
    package var infos: [UInt16]

    package static func parse(_ bytes: some Collection<UInt8>) -> NBDInfoRequest? {
        var reader = BigEndianReader(bytes)
        guard let nameLength = reader.u32(), let name = reader.take(Int(min(nameLength, UInt32(Int32.max)))),
              let count = reader.u16() else { return nil }
        var infos: [UInt16] = []
        for _ in 0..<count {
            guard let info = reader.u16() else { return nil }
            infos.append(info)
        }
        guard reader.isAtEnd else { return nil }
        return NBDInfoRequest(name: String(decoding: name, as: UTF8.self), infos: infos)
    }
}

/// What NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT ask: an export name and queries.
package struct NBDMetaContextRequest: Equatable, Sendable {
    package var name: String
    package var queries: [String]

    package static func parse(_ bytes: some Collection<UInt8>) -> NBDMetaContextRequest? {
        var reader = BigEndianReader(bytes)
        guard let nameLength = reader.u32(), let name = reader.take(Int(min(nameLength, UInt32(Int32.max)))),
              let count = reader.u32() else { return nil }
        var queries: [String] = []
        var left = count
        while left > 0 {
            guard let length = reader.u32(), let query = reader.take(Int(min(length, UInt32(Int32.max)))) else { return nil }
            queries.append(String(decoding: query, as: UTF8.self))
            left -= 1
        }
        guard reader.isAtEnd else { return nil }
        return NBDMetaContextRequest(name: String(decoding: name, as: UTF8.self), queries: queries)
    }

    /// Whether `query` selects base:allocation (the exact name, or the whole `base:` namespace when
    /// listing).
    package static func selectsBaseAllocation(_ query: String, listing: Bool) -> Bool {
        query == NBD.baseAllocation || (listing && query == "base:")
    }
}

/// Reads big-endian integers from a byte collection without trapping on short input.
package struct BigEndianReader<C: Collection<UInt8>> {
    let bytes: C
    var index: C.Index

    package init(_ bytes: C) {
        self.bytes = bytes
        index = bytes.startIndex
    }

    package var isAtEnd: Bool { index == bytes.endIndex }

    mutating func integer<T: FixedWidthInteger>(_: T.Type) -> T? {
        var value: T = 0
        for _ in 0..<MemoryLayout<T>.size {
            guard index != bytes.endIndex else { return nil }
            value = value << 8 | T(bytes[index])
            index = bytes.index(after: index)
        }
        return value
    }

    package mutating func u16() -> UInt16? { integer(UInt16.self) }
    package mutating func u32() -> UInt32? { integer(UInt32.self) }
    package mutating func u64() -> UInt64? { integer(UInt64.self) }

    package mutating func take(_ count: Int) -> [UInt8]? {
        guard bytes.distance(from: index, to: bytes.endIndex) >= count else { return nil }
        let end = bytes.index(index, offsetBy: count)
        defer { index = end }
        return Array(bytes[index..<end])
    }
}

/// Builds big-endian messages.
package struct BigEndianWriter {
    package var bytes: [UInt8] = []
    package init() {}
    package mutating func u16(_ v: UInt16) { bytes += [UInt8(v >> 8), UInt8(v & 0xff)] }
    package mutating func u32(_ v: UInt32) { for s in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
    package mutating func u64(_ v: UInt64) { for s in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
    package mutating func append(_ b: [UInt8]) { bytes += b }
    package mutating func string(_ s: String) { bytes += Array(s.utf8) }
}

extension NBD {
    /// An option reply header plus payload.
    package static func optionReply(option: UInt32, type: UInt32, payload: [UInt8] = []) -> [UInt8] {
        var w = BigEndianWriter()
        w.u64(optionReplyMagic); w.u32(option); w.u32(type); w.u32(UInt32(payload.count)); w.append(payload)
        return w.bytes
    }

    /// An error option reply whose payload is a message for the user (proto.md allows one on every
    /// error reply).
    package static func optionReply(option: UInt32, type: UInt32, message: String) -> [UInt8] {
        optionReply(option: option, type: type, payload: Array(message.utf8.prefix(4096)))
    }

    package static func simpleReply(error: UInt32, cookie: UInt64) -> [UInt8] {
        var w = BigEndianWriter()
        w.u32(simpleReplyMagic); w.u32(error); w.u64(cookie)
        return w.bytes
    }

    package static func chunkHeader(flags: UInt16, type: UInt16, cookie: UInt64, length: UInt32) -> [UInt8] {
        var w = BigEndianWriter()
        w.u32(structuredReplyMagic); w.u16(flags); w.u16(type); w.u64(cookie); w.u32(length)
        return w.bytes
    }

    /// A final NBD_REPLY_TYPE_ERROR chunk with a short message.
    package static func errorChunk(error: UInt32, cookie: UInt64, message: String) -> [UInt8] {
        let text = Array(message.utf8.prefix(4096))
        var payload = BigEndianWriter()
        payload.u32(error); payload.u16(UInt16(text.count)); payload.append(text)
        return chunkHeader(flags: replyFlagDone, type: chunkError, cookie: cookie, length: UInt32(payload.bytes.count)) + payload.bytes
    }
}
