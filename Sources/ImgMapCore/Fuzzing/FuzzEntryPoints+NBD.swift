#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension FuzzEntryPoints {
    /// The export the `nbd` target serves: 168 sectors of linear image data, a zero segment, an error
    /// segment and a striped segment over the same 64 KiB image (in /tmp, unlinked once open), writable,
    /// so every command reaches the write path.
    static let nbdExport: NBDExport = {
        let path = "/tmp/imgmap-fuzz-nbd-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0o600)
        precondition(fd >= 0, "cannot create \(path)")
        let image = ImageFile(descriptor: fd, path: path, writable: true)
        try! gziPattern[..<65536].withUnsafeBytes { try image.write($0, at: 0) }
        defer { unlink(path) }
        let table = "0 64 linear IMG 0\n64 32 zero\n96 8 error\n104 64 striped 2 8 IMG 0 IMG 32\n"
        var loader = TableLoader(bindings: Bindings(tables: [.init(name: nil, path: "nbd.table")], devices: [(token: "IMG", target: path)]),
                                 strictness: .openAll)
        loader.readTable = { _ in Array(table.utf8) }
        do {
            let loaded = try loader.load()
            var writers: [ObjectIdentifier: ImageFile] = [:]
            for leaf in loaded.leaves { writers[ObjectIdentifier(leaf)] = try ImageFile(openForReading: leaf.path, writable: true) }
            return NBDExport(map: SectorMap(top: loaded.top), name: "fuzz", writers: writers)
        } catch {
            preconditionFailure("cannot load the nbd fuzz fixture: \(error)")
        }
    }()

    /// NBD sessions: the input is everything a client sends, from its handshake flags on; the server
    /// answers it to the end (at most 64 KiB of option data, 32 MiB per request, the export's size per
    /// read). Whatever arrives, the session must end cleanly (a crash, a trap or a hang is the bug), and
    /// the server must never send more than the input could ask for.
    public static func nbdSession(_ bytes: [UInt8]) -> Error? {
        let transport = MemoryTransport(input: bytes, keep: 0)
        NBDConnection(transport: transport, export: nbdExport).serve()
        precondition(transport.closed, "the session did not close its transport")
        // Each request of 28 bytes gets at most the export (plus headers) back; each option at most a
        // few hundred bytes.
        let bound = 1024 + (bytes.count / 16 + 1) * (Int(nbdExport.size) + 256)
        precondition(transport.sentBytes <= bound, "the server sent \(transport.sentBytes) bytes for \(bytes.count) bytes of input")
        return nil
    }
}
