#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Builds the devices of a set of tables as the kernel would load them: each line checked in order
/// (length, size limit, target type, contiguity, then the target's constructor), then every device area
/// checked against its device. Lower devices are built before the first table that names them; a device
/// that ends up naming itself is a cycle.
public struct TableLoader {
    /// How to treat a device token that names an image that cannot be opened.
    public enum Strictness: Sendable {
        /// A missing image is an error (exit 66): compose, map, verify, scatter.
        case openAll
        /// A missing image is a device of unknown size, not bounds-checked: `check` without `--dev`.
        case lenient
        /// Images that do not exist yet but will be created with the given size (`scatter --create`
        /// with `--dry-run`): placeholders of that size; other missing images are errors.
        case planned([String: Sector])
    }

    public let bindings: Bindings
    public let strictness: Strictness
    /// Reads a table file's bytes (`-` is stdin); replaceable for tests.
    public var readTable: (String) throws -> [UInt8]
    /// The target types tables may use: imgmap's own, plus any a library user adds.
    public var targets: [any Target.Type] = TargetRegistry.all

    public init(bindings: Bindings, strictness: Strictness = .openAll) {
        self.bindings = bindings
        self.strictness = strictness
        self.readTable = { path throws in try readWholeFile(path) }
    }

    /// The result of loading: the top device, all devices by name, and the images opened.
    public struct Loaded: Sendable {
        public let top: MappedDevice
        public let devices: [String: MappedDevice]
        public let leaves: [LeafFile]
        /// Tokens that named images not opened (`check` without `--dev`, planned images).
        public let unopened: [String]

        /// For images that could not be opened: the size in sectors the tables need of each (the end
        /// of the furthest device area on it), by path. A compress target's image is not one: it cannot
        /// be created empty, so it stays missing.
        public func requiredSizesOfUnopenedImages() -> [String: Sector] {
            var sizes: [String: Sector] = [:]
            for device in devices.values {
                for segment in device.segments where !(segment.target is CompressTarget) {
                    for area in segment.target.deviceAreas {
                        guard case .leaf(let leaf) = area.device, leaf.image.fd < 0 else { continue }
                        let end = Sector(area.start &+ area.length)
                        sizes[leaf.path] = max(sizes[leaf.path] ?? .zero, end)
                    }
                }
            }
            return sizes
        }
        /// The table files read, for refusing an output that is one of the inputs.
        public let tablePaths: [String]
    }

    public func load() throws -> Loaded {
        let state = State(loader: self)
        try state.readTables()
        for name in state.order { _ = try state.build(name) }
        let top = try state.topDevice()
        return Loaded(top: top, devices: state.built, leaves: state.leaves, unopened: state.unopened,
                      tablePaths: bindings.tables.map(\.path).filter { $0 != "-" })
    }

    final class State {
        let loader: TableLoader
        var texts: [String: TableText] = [:]
        var order: [String] = []
        var built: [String: MappedDevice] = [:]
        var building: [String] = []
        var leavesByPath: [String: LeafFile] = [:]
        /// BGZF images by path, read as their uncompressed content.
        var compressedByPath: [String: LeafFile] = [:]
        var leaves: [LeafFile] = []
        var unopened: [String] = []
        var devBindings: [String: String] = [:]
        /// Device names a dump defines, to choose the top one.
        var dumpNames: [String] = []
        var referenced: Set<String> = []
        /// dm-snap's origins, for the whole set of tables.
        let snapshots = SnapshotRegistry()

        init(loader: TableLoader) {
            self.loader = loader
            for binding in loader.bindings.devices { devBindings[binding.token] = binding.target }
        }

        func readTables() throws {
            for file in loader.bindings.tables {
                let display = file.path == "-" ? "<stdin>" : file.path
                let bytes: [UInt8]
                do {
                    bytes = try loader.readTable(file.path)
                } catch let failure as IOFailure {
                    throw IOFailure(path: display, operation: failure.operation, errno: failure.errno,
                                    exitStatus: .noInput, hint: "the table file cannot be read")
                }
                let defaultName = file.name ?? "top"
                let parsed = try TableParser.parse(bytes, path: display, defaultName: defaultName)
                let isDump = file.name == nil && parsed.count > 1 || parsed.first?.name != defaultName
                for text in parsed {
                    if texts[text.name] != nil {
                        throw PlainFailure("\(display): device `\(text.name)` is defined twice", .usage)
                    }
                    texts[text.name] = text
                    order.append(text.name)
                    if isDump { dumpNames.append(text.name) }
                }
            }
        }

        /// The device to compose: `--top`, else the positional table's device, or for a dump the one
        /// device no other uses.
        func topDevice() throws -> MappedDevice {
            if let name = loader.bindings.top {
                guard let device = built[name] else {
                    throw PlainFailure("--top \(name): no table defines a device of that name (known: \(order.joined(separator: ", ")))", .usage)
                }
                return device
            }
            if !dumpNames.isEmpty {
                let unused = dumpNames.filter { !referenced.contains($0) }
                guard unused.count == 1, let device = built[unused[0]] else {
                    throw PlainFailure("the dump defines several devices that no other uses (\(unused.joined(separator: ", "))): choose one with --top NAME", .usage)
                }
                return device
            }
            return built[order[order.count - 1]]!
        }

        func build(_ name: String) throws -> MappedDevice {
            if let device = built[name] { return device }
            guard let text = texts[name] else { preconditionFailure("build of unknown table \(name)") }
            if let index = building.firstIndex(of: name) {
                let cycle = (building[index...] + [name]).joined(separator: " → ")
                throw TableError(path: text.path, line: nil, message: "Device lookup failed",
                                 detail: "device `\(name)` uses itself: \(cycle)", hint: "a table cannot map onto its own device")
            }
            building.append(name)
            defer { building.removeLast() }

            var segments: [Segment] = []
            segments.reserveCapacity(text.lineCount)
            var end: UInt64 = 0
            var lookupError: Error?
            func guarded(_ body: () throws -> Device) throws(TargetError) -> Device {
                do {
                    return try body()
                } catch let error as TargetError {
                    throw error
                } catch {
                    lookupError = error
                    throw TargetError("Device lookup failed")
                }
            }
            var context = TargetContext(
                lookup: { token throws(TargetError) in try guarded { try self.resolve(token, from: name) } },
                compressed: { token throws(TargetError) in try guarded { try self.resolveCompressed(token, from: name) } })
            try text.forEachLine { line in
                let fail = { (message: String, detail: String?) in
                    TableError(path: text.path, line: line.number, message: message, detail: detail)
                }
                if line.length == 0 { throw fail("zero-length target", nil) }
                let (tableEnd, overflow) = line.start.addingReportingOverflow(line.length)
                if overflow || tableEnd > maxDeviceSectors {
                    throw fail("too large device", "the segment would end past sector \(maxDeviceSectors) (2^54 − 1), the kernel's limit")
                }
                guard let type = loader.targets.first(where: { $0.name == line.target }) else {
                    throw TableError(path: text.path, line: line.number, message: "unknown target type",
                                     detail: "`\(line.target)`", hint: "known targets: \(loader.targets.map { $0.name }.joined(separator: ", ")); names are case-sensitive")
                }
                if line.start != end {
                    throw fail("Gap in table", line.start > end
                        ? "segment starts at \(line.start), the previous one ends at \(end) (sectors \(end)+\(line.start - end) are unmapped)"
                        : "segment starts at \(line.start), inside or before the previous one, which ends at \(end)")
                }
                let target: any Target
                context.start = Sector(line.start)
                context.snapshots = snapshots
                do {
                    target = try type.init(arguments: line.arguments, length: Sector(line.length), context: context)
                } catch let error as TargetError {
                    if let lookupError { throw lookupError }
                    throw TableError(path: text.path, line: line.number, target: line.target, message: error.message,
                                     detail: error.detail, hint: error.hint, exitStatus: error.exitStatus)
                }
                segments.append(Segment(start: Sector(line.start), length: Sector(line.length), line: line.number, target: target))
                end = tableEnd
            }
            try checkDeviceAreas(segments, text: text)
            let device = MappedDevice(name: name, tablePath: text.path, segments: segments)
            built[name] = device
            return device
        }

        /// The kernel's `device_area_is_invalid`, run once the table is complete. A zero-sized device is
        /// not checked (nor is one whose size is unknown).
        func checkDeviceAreas(_ segments: [Segment], text: TableText) throws(TableError) {
            for segment in segments {
                try segment.target.forEachDeviceArea { (area) throws(TableError) in
                    let size = area.device.size.value
                    if case .leaf(let leaf) = area.device, !leaf.sizeKnown { return }
                    guard size > 0 else { return }
                    let (areaEnd, overflow) = area.start.addingReportingOverflow(area.length)
                    if area.start >= size || overflow || areaEnd > size {
                        throw TableError(
                            path: text.path, line: segment.line, target: segment.target.name,
                            message: "too small for target",
                            detail: "\(describe(area)): start=\(area.start), len=\(area.length), dev_size=\(size)",
                            hint: "the segment needs sectors \(area.start)+\(area.length) of a \(size)-sector device")
                    }
                }
            }
        }

        func describe(_ area: DeviceArea) -> String {
            switch area.device {
            case .leaf(let leaf): leaf.path == area.token ? leaf.path : "\(area.token) (\(leaf.path))"
            case .mapped(let device): device.name == area.token ? "device \(device.name)" : "\(area.token) (device \(device.name))"
            }
        }

        /// Devices already looked up, by token: a big table names the same few devices on every line.
        var deviceByToken: [String: Device] = [:]

        /// dm_get_device: a `--dev` binding, then a table's device, then a path.
        func resolve(_ token: String, from user: String) throws -> Device {
            if let device = deviceByToken[token] { return device }
            let device = try lookUp(token, from: user)
            deviceByToken[token] = device
            return device
        }

        func lookUp(_ token: String, from user: String) throws -> Device {
            if let target = devBindings[token] {
                if target.hasPrefix("@") {
                    let name = String(target.dropFirst())
                    guard texts[name] != nil else {
                        throw TargetError("Device lookup failed", detail: "`\(token)` is bound to @\(name), but no table defines device \(name)",
                                          exitStatus: .usage)
                    }
                    referenced.insert(name)
                    return .mapped(try build(name))
                }
                return try openLeaf(target, token: token, bound: true)
            }
            if texts[token] != nil {
                referenced.insert(token)
                return .mapped(try build(token))
            }
            return try openLeaf(token, token: token, bound: false)
        }

        /// A compress target's device: the token must name an image file, read as BGZF.
        func resolveCompressed(_ token: String, from user: String) throws -> Device {
            let device = try resolve(token, from: user)
            guard case .leaf(let file) = device else {
                throw TargetError("Device lookup failed", detail: "`\(token)` is a mapped device; compress reads a BGZF image file")
            }
            if let leaf = compressedByPath[file.path] { return .leaf(leaf) }
            guard file.image.fd >= 0 else { return device }
            let reader: BGZFReader
            do {
                reader = try BGZFReader(file: file.image)
            } catch let error as BGZFError {
                throw TargetError("Invalid BGZF image", detail: error.description, exitStatus: .dataError)
            }
            let leaf = LeafFile(path: file.path, image: file.image, size: Sector(wholeSectorsIn: reader.uncompressedSize),
                                backing: .bgzf(CompressedImage(reader: reader)))
            compressedByPath[file.path] = leaf
            leaves.append(leaf)
            return .leaf(leaf)
        }

        func openLeaf(_ path: String, token: String, bound: Bool) throws -> Device {
            if let leaf = leavesByPath[path] { return .leaf(leaf) }
            let image: ImageFile
            do {
                image = try ImageFile(openForReading: path, nonBlocking: true)
            } catch {
                let placeholder = ImageFile(descriptor: -1, path: path, writable: false, owned: false)
                switch loader.strictness {
                case .lenient:
                    let leaf = LeafFile(path: path, image: placeholder, size: .zero, sizeKnown: false)
                    leavesByPath[path] = leaf
                    unopened.append(token)
                    return .leaf(leaf)
                case .planned(let sizes):
                    if let size = sizes[path] {
                        let leaf = LeafFile(path: path, image: placeholder, size: size)
                        leavesByPath[path] = leaf
                        unopened.append(token)
                        return .leaf(leaf)
                    }
                case .openAll:
                    break
                }
                var hint = bound ? nil : "bind the name to an image with --dev \(token)=PATH"
                if !bound && token.contains(":") && token.allSatisfy({ $0.isNumber || $0 == ":" }) {
                    hint = "a device number from a `dmsetup table` dump: bind it with --dev \(token)=IMAGE, or --dev \(token)=@NAME / --dmsetup-ls FILE for another dm device"
                }
                throw TargetError("Device lookup failed", detail: "\(path): \(errnoDescription(error.errno))", hint: hint,
                                  exitStatus: .noInput)
            }
            let st = try image.status()
            let kind = st.st_mode & S_IFMT
            guard kind == S_IFREG || kind == S_IFBLK else {
                throw TargetError("Device lookup failed", detail: "\(path): not a regular file or block device", exitStatus: .noInput)
            }
            let leaf = LeafFile(path: path, image: image, size: Sector(wholeSectorsIn: try image.byteSize()))
            leavesByPath[path] = leaf
            leaves.append(leaf)
            return .leaf(leaf)
        }
    }
}

/// Reads a whole (small) file: a table or a list. `-` reads standard input.
public func readWholeFile(_ path: String) throws -> [UInt8] {
    let file: ImageFile
    var expected = 0
    if path == "-" {
        file = ImageFile(descriptor: 0, path: "<stdin>", writable: false, owned: false)
    } else {
        file = try ImageFile(openForReading: path)
        let st = try file.status()
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw IOFailure(path: path, operation: "read", errno: EISDIR, exitStatus: .noInput)
        }
        if (st.st_mode & S_IFMT) == S_IFREG { expected = Int(st.st_size) }
    }
    // Read straight into the result, sized once for a regular file; a pipe grows it as it comes.
    var result = [UInt8](repeating: 0, count: max(expected + 1, 1 << 16))
    var count = 0
    while true {
        if count == result.count { result.append(contentsOf: repeatElement(0, count: result.count)) }
        let n = try result.withUnsafeMutableBytes { bytes in
            try file.readSequential(into: UnsafeMutableRawBufferPointer(rebasing: bytes[count...]))
        }
        if n == 0 { break }
        count += n
    }
    result.removeSubrange(count...)
    return result
}
