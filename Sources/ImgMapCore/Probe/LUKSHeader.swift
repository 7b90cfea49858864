import Foundation

/// LUKS headers, reported only (unlocking is the crypt target's work): LUKS1's binary header
/// (big-endian; cipher, mode, hash, payload offset, key slots) and LUKS2's binary header plus JSON
/// area (checksum checked with the header's own algorithm when it is sha256; cipher and offset from
/// the first crypt segment). A LUKS2 primary header that fails is tried at its secondary offsets.
struct LUKSHeader {
    var version: Int
    var uuid: String
    var cipher: String
    var payloadOffset: UInt64
    var keyBytes: Int?
    var hash: String?
    var label: String?
    var sectorSize: Int?
    var activeKeyslots: Int
    var notes: [String] = []

    static let magic: [UInt8] = [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]  // "LUKS\xba\xbe"
    static let secondaryMagic: [UInt8] = [0x53, 0x4b, 0x55, 0x4c, 0xba, 0xbe]  // "SKUL\xba\xbe"
    /// Where a LUKS2 secondary header may be, by the header-area sizes cryptsetup allows.
    static let luks2Offsets: [UInt64] = [0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000]

    /// The report's entry; `opened` says what probe did with it when a passphrase was given.
    func json(opened: [(String, JSONValue)]) -> JSONValue {
        var o: [(String, JSONValue)] = [("version", .number(Int64(version))), ("uuid", .string(uuid)), ("cipher", .string(cipher)),
                                        ("payload_offset", .unsigned(payloadOffset)), ("active_keyslots", .number(Int64(activeKeyslots)))]
        if let keyBytes { o.append(("key_bytes", .number(Int64(keyBytes)))) }
        if let hash { o.append(("hash", .string(hash))) }
        if let label, !label.isEmpty { o.append(("label", .string(label))) }
        if let sectorSize { o.append(("sector_size", .number(Int64(sectorSize)))) }
        if !notes.isEmpty { o.append(("notes", .array(notes.map { .string($0) }))) }
        return .object(o + opened)
    }

    /// The header at the start of `volume`, nil when there is no LUKS magic; a header that fails its
    /// checks throws a problem.
    static func read(_ volume: ProbeVolume) throws -> LUKSHeader? {
        let head = try volume.read(at: 0, count: 4096)
        guard head.count >= 592, Array(head[0..<6]) == magic else { return nil }
        let version = Int(head.be16(6))
        let place = "\(volume.name): LUKS\(version) header"
        switch version {
        case 1:
            var active = 0
            for k in 0..<8 where head.be32(208 + 48 * k) == 0x00ac71f3 { active += 1 }
            let mode = head.cString(40, 32)
            let name = head.cString(8, 32)
            return LUKSHeader(version: 1, uuid: head.cString(168, 40), cipher: mode.isEmpty ? name : "\(name)-\(mode)",
                              payloadOffset: UInt64(head.be32(104)), keyBytes: Int(head.be32(108)), hash: head.cString(72, 32),
                              activeKeyslots: active)
        case 2:
            do {
                return try luks2(volume, at: 0, place: place)
            } catch let primary as ProbeProblem {
                for offset in luks2Offsets {
                    let probe = try volume.read(at: offset, count: 8)
                    guard probe.count == 8, Array(probe[0..<6]) == secondaryMagic else { continue }
                    var header = try luks2(volume, at: offset, place: "\(volume.name): LUKS2 secondary header at byte \(offset)")
                    header.notes.append("the primary header is invalid (\(primary.message)); the secondary at byte \(offset) is used")
                    return header
                }
                throw primary
            }
        default:
            throw ProbeProblem(place: place, message: "unknown LUKS version \(version)")
        }
    }

    static func luks2(_ volume: ProbeVolume, at offset: UInt64, place: String) throws -> LUKSHeader {
        func bad(_ m: String) -> ProbeProblem { ProbeProblem(place: place, message: m) }
        let bin = try volume.readExactly(at: offset, count: 4096, what: "the LUKS2 binary header")
        let size = bin.be64(8)
        guard size >= 0x4000, size <= 0x400000, size % 4096 == 0 else { throw bad("header size \(size) is not one cryptsetup writes") }
        guard bin.be64(256) == offset else { throw bad("says it is at byte \(bin.be64(256))") }
        var whole = try volume.readExactly(at: offset, count: Int(size), what: "the LUKS2 header and JSON area")
        let algorithm = bin.cString(72, 32)
        if algorithm == "sha256" {
            let stored = Array(whole[448..<480])
            whole.replaceSubrange(448..<512, with: repeatElement(0, count: 64))
            let computed = MessageDigest.hash(.sha256, whole)
            guard stored == computed else { throw bad("checksum mismatch (sha256 over the header and JSON area)") }
        }
        let jsonBytes = whole[4096...].prefix { $0 != 0 }
        guard let object = try? JSONSerialization.jsonObject(with: Data(jsonBytes)) as? [String: Any] else {
            throw bad("the JSON area does not parse")
        }
        var header = LUKSHeader(version: 2, uuid: bin.cString(168, 40), cipher: "", payloadOffset: 0, label: bin.cString(24, 48),
                                activeKeyslots: (object["keyslots"] as? [String: Any])?.count ?? 0)
        let segments = object["segments"] as? [String: Any] ?? [:]
        let first = segments.keys.compactMap { Int($0) }.sorted().first.flatMap { segments[String($0)] as? [String: Any] }
        if let segment = first {
            header.cipher = segment["encryption"] as? String ?? ""
            header.payloadOffset = UInt64(segment["offset"] as? String ?? "0").map { $0 / 512 } ?? 0
            header.sectorSize = segment["sector_size"] as? Int
        } else {
            header.notes.append("no segment: nothing is encrypted yet")
        }
        return header
    }
}
