// The option haggling of the fixed newstyle handshake (proto.md, "Option types"), as a pure state
// machine over bytes: the connection feeds it the client's flags and each option, and sends what it
// answers. No socket here, so tests and the fuzz target drive it directly.

/// One client's handshake state: what it asked for so far, and the answer to each option.
package struct NBDNegotiation: Sendable {
    /// The export's name; empty: the server has one unnamed export and takes any name for it.
    package let exportName: String
    package let exportSize: UInt64
    package let writable: Bool
    package private(set) var structured = false
    package private(set) var metaContext = false
    package private(set) var noZeroes = false

    /// What to do after an option.
    package enum Step: Equatable, Sendable {
        /// Send these bytes, then read the next option.
        case reply([UInt8])
        /// Send these bytes, then enter the transmission phase.
        case transmission([UInt8])
        /// Send these bytes (the ACK to NBD_OPT_ABORT), then close.
        case abort([UInt8])
        /// Close without answering: an NBD_OPT_EXPORT_NAME that cannot be satisfied (proto.md: the
        /// server MUST terminate the session, that option has no error reply).
        case close
    }

    package init(exportName: String, exportSize: UInt64, writable: Bool) {
        self.exportName = exportName
        self.exportSize = exportSize
        self.writable = writable
    }

    /// What the server sends first: NBDMAGIC, IHAVEOPT and the handshake flags (fixed newstyle, no zeroes).
    package static var greeting: [UInt8] {
        var w = BigEndianWriter()
        w.u64(NBD.initMagic); w.u64(NBD.optionMagic); w.u16(NBD.flagFixedNewstyle | NBD.flagNoZeroes)
        return w.bytes
    }

    /// The session the transmission phase checks requests against.
    package var session: NBDSession {
        NBDSession(exportSize: exportSize, writable: writable, structured: structured, metaContext: metaContext)
    }

    /// Takes the client's 32-bit flags; false when the connection must be dropped: an unknown flag, or
    /// one the server did not offer (proto.md, "Client flags"). A client without FIXED_NEWSTYLE speaks
    /// the old newstyle, where only NBD_OPT_EXPORT_NAME exists; it is refused too (no NBD client of the
    /// last decade sends that).
    package mutating func clientFlags(_ flags: UInt32) -> Bool {
        guard flags & ~(NBD.clientFixedNewstyle | NBD.clientNoZeroes) == 0, flags & NBD.clientFixedNewstyle != 0 else { return false }
        noZeroes = flags & NBD.clientNoZeroes != 0
        return true
    }

    /// Parses a 16-byte option header: the option and its data length; nil when the magic is wrong.
    package static func optionHeader(_ bytes: some Collection<UInt8>) -> (option: UInt32, length: UInt32)? {
        var r = BigEndianReader(bytes)
        guard r.u64() == NBD.optionMagic, let option = r.u32(), let length = r.u32() else { return nil }
        return (option, length)
    }

    /// The answer to an option whose data was longer than `NBD.maxOptionLength` (and was dropped).
    package func tooBig(_ option: UInt32) -> Step {
        guard option != NBD.optExportName else { return .close }
        return .reply(NBD.optionReply(option: option, type: NBD.repErrTooBig, message: "option data longer than \(NBD.maxOptionLength) bytes"))
    }

    /// Whether `name` names this export.
    func accepts(_ name: String) -> Bool { exportName.isEmpty || name.isEmpty || name == exportName }

    /// The answer to one option with its data.
    package mutating func option(_ option: UInt32, data: [UInt8]) -> Step {
        func error(_ type: UInt32, _ message: String) -> Step { .reply(NBD.optionReply(option: option, type: type, message: message)) }
        switch option {
        case NBD.optExportName:
            guard accepts(String(decoding: data, as: UTF8.self)) else { return .close }
            var e = BigEndianWriter()
            e.u64(exportSize); e.u16(session.transmissionFlags)
            if !noZeroes { e.append([UInt8](repeating: 0, count: 124)) }
            return .transmission(e.bytes)
        case NBD.optAbort:
            return .abort(NBD.optionReply(option: option, type: NBD.repAck))
        case NBD.optList:
            guard data.isEmpty else { return error(NBD.repErrInvalid, "NBD_OPT_LIST takes no data") }
            var p = BigEndianWriter()
            p.u32(UInt32(exportName.utf8.count)); p.string(exportName)
            return .reply(NBD.optionReply(option: option, type: NBD.repServer, payload: p.bytes) + NBD.optionReply(option: option, type: NBD.repAck))
        case NBD.optStructuredReply:
            guard data.isEmpty else { return error(NBD.repErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data") }
            structured = true
            return .reply(NBD.optionReply(option: option, type: NBD.repAck))
        case NBD.optInfo, NBD.optGo:
            guard let request = NBDInfoRequest.parse(data) else { return error(NBD.repErrInvalid, "malformed NBD_OPT_INFO/GO data") }
            guard accepts(request.name) else { return error(NBD.repErrUnknown, "no export named \"\(request.name.prefix(256))\"") }
            var replies: [UInt8] = []
            var info = BigEndianWriter()
            info.u16(NBD.infoExport); info.u64(exportSize); info.u16(session.transmissionFlags)
            replies += NBD.optionReply(option: option, type: NBD.repInfo, payload: info.bytes)
            if request.infos.contains(NBD.infoBlockSize) {
                // Any byte alignment works (partial sectors are read-modify-written); 4 KiB preferred.
                var b = BigEndianWriter()
                b.u16(NBD.infoBlockSize); b.u32(1); b.u32(4096); b.u32(NBD.maxPayload)
                replies += NBD.optionReply(option: option, type: NBD.repInfo, payload: b.bytes)
            }
            if request.infos.contains(NBD.infoName) {
                var n = BigEndianWriter()
                n.u16(NBD.infoName); n.string(exportName)
                replies += NBD.optionReply(option: option, type: NBD.repInfo, payload: n.bytes)
            }
            replies += NBD.optionReply(option: option, type: NBD.repAck)
            return option == NBD.optGo ? .transmission(replies) : .reply(replies)
        case NBD.optListMetaContext, NBD.optSetMetaContext:
            let setting = option == NBD.optSetMetaContext
            guard let request = NBDMetaContextRequest.parse(data) else { return error(NBD.repErrInvalid, "malformed meta context data") }
            // proto.md: both need structured replies first (LIST: SHOULD answer ERR_INVALID; SET: MUST).
            guard structured else { return error(NBD.repErrInvalid, "negotiate NBD_OPT_STRUCTURED_REPLY first") }
            guard accepts(request.name) else { return error(NBD.repErrUnknown, "no export named \"\(request.name.prefix(256))\"") }
            // LIST with no query lists every context; SET with none selects none.
            let chosen = request.queries.isEmpty ? !setting
                : request.queries.contains { NBDMetaContextRequest.selectsBaseAllocation($0, listing: !setting) }
            if setting { metaContext = chosen }
            var replies: [UInt8] = []
            if chosen {
                var p = BigEndianWriter()
                p.u32(setting ? NBD.baseAllocationID : 0); p.string(NBD.baseAllocation)
                replies += NBD.optionReply(option: option, type: NBD.repMetaContext, payload: p.bytes)
            }
            return .reply(replies + NBD.optionReply(option: option, type: NBD.repAck))
        default:
            // STARTTLS included: TLS is not offered (loopback and Unix sockets only); proto.md's NOTLS
            // mode allows ERR_UNSUP for it.
            return error(NBD.repErrUnsup, "option \(option) is not supported")
        }
    }
}
