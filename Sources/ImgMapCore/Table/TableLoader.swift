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
        /// A missing image is a device of unknown size, not bounds-checked (`scatter --create`'s first
        /// look at what it must create).
        case lenient
        /// `check`: an unbound bare device number (`8:16` of a `dmsetup table` dump) with no image is a
        /// device of unknown size, not bounds-checked; any other image that cannot be opened is an error.
        case deviceNumbersUnchecked
        /// Images that do not exist yet but will be created with the given size (`scatter --create`
        /// with `--dry-run`): placeholders of that size; other missing images are errors.
        case planned([String: Sector])
    }

    /// What the command line gave.
    public let bindings: Bindings
    /// What happens to images that cannot be opened.
    public let strictness: Strictness
    /// Reads a table file's bytes (`-` is stdin); replaceable for tests.
    public var readTable: (String) throws -> [UInt8]
    /// Opens an image a table names, read-only; replaceable (probe keeps the files it reads through).
    public var openImage: (String) throws(IOFailure) -> ImageFile = { path throws(IOFailure) in
        try ImageFile(openForReading: path, nonBlocking: true)
    }
    /// The target types tables may use: imgmap's own, plus any a library user adds.
    public var targets: [any Target.Type] = TargetRegistry.all
    /// Volume keys of `--luks` devices that an earlier load of the same bindings unlocked
    /// (`Loaded.volumeKeys`), used instead of running the KDF again; the header is still read and checked.
    public var unlockedVolumeKeys: [String: SecretBytes] = [:]

    /// A loader of `bindings`' tables; add target types to `targets` before `load`.
    public init(bindings: Bindings, strictness: Strictness = .openAll) {
        self.bindings = bindings
        self.strictness = strictness
        self.readTable = { path throws in try readTableFile(path) }
    }

    /// The result of loading: the top device, all devices by name, and the images opened.
    public struct Loaded: Sendable {
        /// The device the command works on.
        public let top: MappedDevice
        /// Every device loaded, by name.
        public let devices: [String: MappedDevice]
        /// Every image opened, once each.
        public let leaves: [LeafFile]
        /// Tokens that named images not opened (`check` without `--dev`, planned images).
        public let unopened: [String]
        /// The volume key of each `--luks` device unlocked, by device name (none in a lenient load,
        /// which does not unlock), for a later load of the same bindings (`TableLoader.unlockedVolumeKeys`).
        public let volumeKeys: [String: SecretBytes]

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

    /// Reads the tables, then builds only the devices the top device uses, directly or below, lowest
    /// first (a walk with an explicit stack: a chain of any depth costs no call depth). Devices of a dump
    /// that the top does not use are never built, so a target imgmap cannot build there does not matter.
    /// Bindings no built table uses are refused (exit 64) before any image is opened.
    public func load() throws -> Loaded {
        let state = State(loader: self)
        try state.readTables()
        try state.refuseNamesBoundTwice()
        let topName = try state.topName()
        var needed = try state.devicesNeeded(by: [topName])
        // A lower table given with --table that the top does not use but that shares a device with it
        // (a snapshot of the top's origin) is built too: the user named it, and a target may need it.
        let siblings = state.siblingTables(of: needed)
        if !siblings.isEmpty { needed = try state.devicesNeeded(by: siblings + [topName]) }
        try state.refuseUnusedBindings(needed)
        for name in needed { try state.build(name) }
        guard let top = state.built[topName] else { preconditionFailure("top device \(topName) not built") }
        if top.segments.isEmpty, let text = state.texts[topName] {
            throw TableError(path: text.path, line: nil, message: "no targets",
                             detail: "device `\(topName)` has no table (`\(topName):` alone is how dmsetup prints a device created without one, `dmsetup create -n`)",
                             hint: "choose a device that has a table with --top NAME", exitStatus: .dataError)
        }
        return Loaded(top: top, devices: state.built, leaves: state.leaves, unopened: state.unopened,
                      volumeKeys: state.volumeKeys, tablePaths: bindings.tables.map(\.path).filter { $0 != "-" })
    }

    final class State {
        let loader: TableLoader
        var texts: [String: TableText] = [:]
        var order: [String] = []
        /// The table file each device came from (index into `bindings.tables`).
        var fileOfDevice: [String: Int] = [:]
        var built: [String: MappedDevice] = [:]
        var volumeKeys: [String: SecretBytes] = [:]
        var leavesByPath: [String: LeafFile] = [:]
        /// BGZF images by path, read as their uncompressed content.
        var compressedByPath: [String: LeafFile] = [:]
        var leaves: [LeafFile] = []
        var unopened: [String] = []
        /// Token → image path or `@NAME`: `--dev` first, then `--dmsetup-ls`, then the numbers a dump
        /// itself gives (`dmsetup table -v` headers, `kpartx -av`).
        var devBindings: [String: String] = [:]
        /// Device names a dump defines, to choose the top one.
        var dumpNames: [String] = []
        /// dm-snap's origins, for the whole set of tables.
        let snapshots = SnapshotRegistry()

        init(loader: TableLoader) {
            self.loader = loader
            for binding in loader.bindings.listed where devBindings[binding.token] == nil { devBindings[binding.token] = binding.target }
            for binding in loader.bindings.devices { devBindings[binding.token] = binding.target }
        }

        func readTables() throws {
            var dumpNumbers: [(token: String, name: String)] = []
            for (fileIndex, file) in loader.bindings.tables.enumerated() {
                let display = file.path == "-" ? "<stdin>" : file.path
                let bytes: [UInt8]
                do {
                    bytes = try loader.readTable(file.path)
                } catch let failure as IOFailure {
                    throw IOFailure(path: display, operation: failure.operation, errno: failure.errno,
                                    exitStatus: .noInput, hint: "the table file cannot be read")
                } catch let failure as TableError {
                    var failure = failure
                    failure.path = display
                    throw failure
                }
                let defaultName = file.name ?? "top"
                var facts = TableParser.DumpFacts()
                let parsed = try TableParser.parse(bytes, path: display, defaultName: defaultName, facts: &facts)
                dumpNumbers += facts.numbers
                let isDump = file.name == nil && parsed.count > 1 || parsed.first?.name != defaultName
                for text in parsed {
                    if texts[text.name] != nil {
                        throw PlainFailure("\(display): device `\(escapedForMessage(text.name))` is defined twice", .usage)
                    }
                    texts[text.name] = text
                    order.append(text.name)
                    fileOfDevice[text.name] = fileIndex
                    if isDump { dumpNames.append(text.name) }
                }
            }
            for number in dumpNumbers where devBindings[number.token] == nil { devBindings[number.token] = "@" + number.name }
            try installLUKSDevices()
        }

        // MARK: --luks devices

        /// A `--luks NAME=IMAGE` device: the image, the token its line uses for it, and the table the
        /// tables themselves gave for NAME (a dump's crypt line), which the header's line replaces.
        struct LUKSDevice {
            var image: String
            var token: String
            var replaced: TableText?
        }
        var luksDevices: [String: LUKSDevice] = [:]

        /// The option as the user gave it, for messages.
        func luksOption(_ name: String) -> String {
            "--luks \(escapedForMessage(name))=\(luksDevices[name].map { escapedForMessage($0.image) } ?? "")"
        }

        /// Each `--luks` device stands in the tables as a one-line crypt table over its image, so that
        /// the walk over the devices (which the top uses, which bindings are unused, cycles) treats it
        /// as any other device; the header is read, and the passphrase tried, only when it is built.
        func installLUKSDevices() throws {
            let bindings = loader.bindings
            var seen = Set<String>()
            for binding in bindings.luks {
                guard seen.insert(binding.device).inserted else {
                    throw PlainFailure("--luks \(escapedForMessage(binding.device)) is given twice", .usage)
                }
                if bindings.keys.contains(where: { $0.device == binding.device }) {
                    throw PlainFailure("--luks \(escapedForMessage(binding.device))=\(escapedForMessage(binding.image)) and --key \(escapedForMessage(binding.device))=…: the LUKS header's keyslots give the key; keep one", .usage)
                }
                // The image's path is the line's device token (so map listings name it) unless a table
                // line could not hold it as one argument (white space, `#`, …): then a token bound to it.
                let plain = !binding.image.isEmpty && binding.image.utf8.allSatisfy { c in
                    (c >= 0x30 && c <= 0x39) || (c | 0x20 >= 0x61 && c | 0x20 <= 0x7a) || "/._+-:,@~".utf8.contains(c) || c >= 0x80
                }
                let token = plain ? binding.image : "luks-image:\(binding.device)"
                devBindings[token] = binding.image
                let path = "--luks \(binding.device)=\(binding.image)"
                let placeholder = Array("0 1 crypt aes-xts-plain64 - 0 \(token) 0\n".utf8)
                guard let text = try TableParser.parse(placeholder, path: path, defaultName: binding.device).first else {
                    preconditionFailure("the --luks placeholder line did not parse")
                }
                let replaced = texts[binding.device]
                if let replaced, replaced.path == path { preconditionFailure("--luks installed twice") }
                luksDevices[binding.device] = LUKSDevice(image: binding.image, token: token, replaced: replaced)
                texts[binding.device] = text
                // First in `order`: the positional table stays the last, the default top device.
                if replaced == nil { order.insert(binding.device, at: 0) }
            }
            for secret in bindings.luksSecrets {
                let option = secret.keyFile ? "--key-file" : "--passphrase-file"
                if let device = secret.device, luksDevices[device] == nil {
                    throw PlainFailure("\(option) \(escapedForMessage(device))=\(secret.path): no --luks \(escapedForMessage(device))=IMAGE is given", .usage)
                }
            }
            if bindings.luksSecrets.isEmpty && !luksDevices.isEmpty || !bindings.luksSecrets.isEmpty && luksDevices.isEmpty {
                throw PlainFailure(luksDevices.isEmpty
                    ? "--passphrase-file and --key-file unlock a --luks NAME=IMAGE device, and none is given"
                    : "--luks needs --passphrase-file [NAME=]FILE or --key-file [NAME=]FILE to unlock the volume", .usage)
            }
            for binding in bindings.luks {
                let own = bindings.luksSecrets.filter { $0.device == binding.device }
                if own.count > 1 {
                    throw PlainFailure("\(luksOption(binding.device)): more than one --passphrase-file/--key-file names it", .usage)
                }
                if own.isEmpty, bindings.luksSecrets.filter({ $0.device == nil }).count != 1 {
                    throw PlainFailure("\(luksOption(binding.device)): give one --passphrase-file [\(escapedForMessage(binding.device))=]FILE or --key-file [\(escapedForMessage(binding.device))=]FILE for it", .usage)
                }
            }
            let unnamed = bindings.luksSecrets.filter { $0.device == nil }
            if let secret = unnamed.first,
               bindings.luks.allSatisfy({ binding in bindings.luksSecrets.contains { $0.device == binding.device } }) {
                throw PlainFailure("\(secret.keyFile ? "--key-file" : "--passphrase-file") \(secret.path): every --luks device has its own; this one unlocks none", .usage)
            }
        }

        /// Reads the header of `name`'s image, checks it against the line the tables gave for the device
        /// (if any), and unlocks the volume: the real crypt table and its key. A lenient load only sizes
        /// the images `scatter --create` will make, so it keys the line with zeros instead of running the
        /// KDF (a second or more, and 1 GiB of memory for some argon2 slots) for a key nobody reads; the
        /// load that follows unlocks, and refuses a wrong secret, before anything is created.
        func openLUKS(_ name: String) throws -> (text: TableText, key: SecretBytes) {
            guard let device = luksDevices[name] else { preconditionFailure("\(name) is not a --luks device") }
            let option = luksOption(name)
            let file: ImageFile
            do {
                file = try ImageFile(openForReading: device.image)
            } catch {
                throw IOFailure(path: device.image, operation: error.operation, errno: error.errno, exitStatus: .noInput,
                                hint: "the LUKS image of \(option) cannot be opened")
            }
            let volume = try LUKSVolume.load(image: file)
            for warning in volume.warnings { writeStderr("imgmap: warning: \(warning)\n") }
            let line = try volume.tableLine(device: device.token, deviceSectors: try file.byteSize() / 512, key: nil, showKey: false)
            guard let text = try TableParser.parse(Array((line + "\n").utf8), path: option, defaultName: name).first,
                  let header = text.lines.first else {
                preconditionFailure("the LUKS table line did not parse: \(volume.cipher)")
            }
            if let replaced = device.replaced { try checkReplaced(replaced, by: header, option: option) }
            if case .lenient = loader.strictness { return (text, SecretBytes(count: volume.keyBytes)) }
            if let key = loader.unlockedVolumeKeys[name] { return (text, key) }
            let bindings = loader.bindings
            guard let secret = bindings.luksSecrets.last(where: { $0.device == name }) ?? bindings.luksSecrets.last(where: { $0.device == nil }) else {
                preconditionFailure("--luks \(name) without a secret passed the checks")
            }
            let passphrase = try LUKSVolume.readSecret(path: secret.path, keyFile: secret.keyFile,
                                                       option: secret.keyFile ? "--key-file" : "--passphrase-file")
            do {
                let (key, _) = try volume.unlock(image: file, passphrase: passphrase)
                return (text, key)
            } catch let failure as LUKSVolume.Failure where failure.exitStatus == .noPermission {
                var reason = failure.description
                if reason.hasPrefix(device.image + ": ") { reason.removeFirst(device.image.count + 2) }
                throw LUKSVolume.Failure(description: "\(option): the LUKS volume on \(device.image) does not unlock with \(secret.keyFile ? "--key-file" : "--passphrase-file") \(secret.path): \(reason)", exitStatus: .noPermission)
            }
        }

        /// A dump's own line for a `--luks` device must describe the same mapping as the header: one
        /// crypt line with the header's cipher, IV offset, data offset and length (its key is zeros in a
        /// dump and is not compared). Otherwise the image is not the device the dump was taken from.
        func checkReplaced(_ text: TableText, by header: TableLine, option: String) throws {
            let lines = text.lines
            guard lines.count == 1, let line = lines.first, line.target == "crypt", line.arguments.count >= 5 else {
                throw TableError(path: text.path, line: lines.first?.number, message: "not a crypt device",
                                 detail: "\(option) replaces device \(escapedForMessage(text.name)), which this table maps with \(lines.count) line\(lines.count == 1 ? "" : "s") (\(lines.first?.target ?? "none")), not one crypt line",
                                 hint: "name the dump's crypt device (the one over the LUKS partition) with --luks", exitStatus: .usage)
            }
            let a = line.arguments, h = header.arguments
            var differences: [String] = []
            if a[0] != h[0] { differences.append("cipher \(escapedForMessage(a[0])) here, \(h[0]) in the header") }
            if a[2] != h[2] { differences.append("IV offset \(escapedForMessage(a[2])) here, \(h[2]) in the header") }
            if a[4] != h[4] { differences.append("data offset \(escapedForMessage(a[4])) here, \(h[4]) in the header") }
            if line.length != header.length { differences.append("length \(line.length) sectors here, \(header.length) from the header and the image's size") }
            if !differences.isEmpty {
                throw TableError(path: text.path, line: line.number, target: "crypt", message: "the LUKS image does not match this device",
                                 detail: "\(option): " + differences.joined(separator: "; "),
                                 hint: "the image must be the device the dump's crypt line maps (the LUKS partition itself)", exitStatus: .dataError)
            }
        }

        /// A token bound with `--dev` twice, or bound with `--dev` and also a device a table defines, is
        /// ambiguous: refused before anything is opened.
        func refuseNamesBoundTwice() throws {
            var seen: [String: String] = [:]
            for binding in loader.bindings.devices {
                if let earlier = seen[binding.token] {
                    throw PlainFailure("--dev \(escapedForMessage(binding.token)) is bound twice (=\(escapedForMessage(earlier)) and =\(escapedForMessage(binding.target)))", .usage)
                }
                seen[binding.token] = binding.target
                if let text = texts[binding.token] {
                    throw PlainFailure("`\(escapedForMessage(binding.token))` is bound twice: --dev \(escapedForMessage(binding.token))=\(escapedForMessage(binding.target)) and the device of that name in \(text.path)"
                        + " (keep one: the table builds the device, the --dev binding stands an image in for it)", .usage)
                }
            }
        }

        /// The device to compose: `--top`, else the positional table's device, or for a dump the one
        /// device no other uses.
        func topName() throws -> String {
            if let name = loader.bindings.top {
                guard texts[name] != nil else {
                    throw PlainFailure("--top \(escapedForMessage(name)): no table defines a device of that name (known: \(order.map(escapedForMessage).joined(separator: ", ")))", .usage)
                }
                return name
            }
            if !dumpNames.isEmpty {
                var referenced = Set<String>()
                for name in dumpNames { try forEachLowerDevice(of: name) { referenced.insert($0) } }
                let unused = dumpNames.filter { !referenced.contains($0) }
                guard unused.count == 1 else {
                    throw PlainFailure("the dump defines several devices that no other uses (\(unused.map(escapedForMessage).joined(separator: ", "))): choose one with --top NAME", .usage)
                }
                return unused[0]
            }
            return order[order.count - 1]
        }

        /// The mapped device `token` names, as `lookUp` will resolve it (nil: an image, or an unknown
        /// `@NAME`, which `lookUp` reports).
        func mappedName(_ token: String) -> String? {
            if let target = devBindings[token] {
                guard target.hasPrefix("@") else { return nil }
                let name = String(target.dropFirst())
                return texts[name] != nil ? name : nil
            }
            return texts[token] != nil ? token : nil
        }

        /// Calls `body` with each mapped device an argument of `name`'s lines names (any argument may be
        /// a device; which are is the target's business, and a name that is not one is never looked up).
        func forEachLowerDevice(of name: String, _ body: (String) throws -> Void) throws {
            guard let text = texts[name] else { return }
            try text.forEachLine { line in
                for argument in line.arguments { if let lower = mappedName(argument) { try body(lower) } }
            }
        }

        /// Every device `top` uses, directly or below, and `top` itself, lowest first. A depth-first
        /// walk with its own stack; a device met again on the current path is a cycle.
        func devicesNeeded(by roots: [String]) throws -> [String] {
            struct Frame { var name: String; var lower: [String]; var next = 0 }
            func lowerDevices(_ name: String) throws -> [String] {
                var seen = Set<String>()
                var result: [String] = []
                try forEachLowerDevice(of: name) { if seen.insert($0).inserted { result.append($0) } }
                return result
            }
            var done = Set<String>()
            var result: [String] = []
            for top in roots where !done.contains(top) {
            var onPath: [String: Int] = [top: 0]
            var stack = [Frame(name: top, lower: try lowerDevices(top))]
            while !stack.isEmpty {
                let last = stack.count - 1
                if stack[last].next < stack[last].lower.count {
                    let lower = stack[last].lower[stack[last].next]
                    stack[last].next += 1
                    if done.contains(lower) { continue }
                    if let index = onPath[lower] {
                        let cycle = (stack[index...].map(\.name) + [lower]).map(escapedForMessage).joined(separator: " → ")
                        throw TableError(path: texts[lower]!.path, line: nil, message: "Device lookup failed",
                                         detail: "device `\(escapedForMessage(lower))` uses itself: \(cycle)", hint: "a table cannot map onto its own device")
                    }
                    onPath[lower] = stack.count
                    stack.append(Frame(name: lower, lower: try lowerDevices(lower)))
                } else {
                    let frame = stack.removeLast()
                    onPath[frame.name] = nil
                    done.insert(frame.name)
                    result.append(frame.name)
                }
            }
            }
            return result
        }

        /// `--table` devices the needed ones do not use but whose lines name a device token that the
        /// needed tables name too.
        func siblingTables(of needed: [String]) -> [String] {
            let neededSet = Set(needed)
            let candidates = loader.bindings.tables.compactMap(\.name).filter { texts[$0] != nil && !neededSet.contains($0) }
            if candidates.isEmpty { return [] }
            var tokens = Set<String>()
            for name in needed { texts[name]?.forEachLine { tokens.formUnion($0.arguments.filter { !isNumber($0) }) } }
            var result: [String] = []
            for file in loader.bindings.tables {
                guard let name = file.name, texts[name] != nil, !neededSet.contains(name) else { continue }
                var shares = false
                texts[name]?.forEachLine { line in if line.arguments.contains(where: { !isNumber($0) && tokens.contains($0) }) { shares = true } }
                if shares { result.append(name) }
            }
            return result
        }

        func isNumber(_ s: String) -> Bool { s.utf8.allSatisfy { $0 >= 48 && $0 <= 57 } }

        /// `--dev`, `--dmsetup-ls` and `--table` given for devices no table that is built uses are
        /// mistakes (a README example once bound names its table did not use, and composed something
        /// else): refused before any image is opened.
        func refuseUnusedBindings(_ needed: [String]) throws {
            let userTokens = Set(loader.bindings.devices.map(\.token))
            let listedTokens = Set(loader.bindings.listed.map(\.token))
            var used = Set<String>()
            if !userTokens.isEmpty || !listedTokens.isEmpty {
                for name in needed {
                    try texts[name]?.forEachLine { line in
                        for argument in line.arguments where userTokens.contains(argument) || listedTokens.contains(argument) {
                            used.insert(argument)
                        }
                    }
                }
            }
            // A `--dev T=@NAME` binding is used when T is; the device it names then is too.
            for binding in loader.bindings.devices where !used.contains(binding.token) {
                throw PlainFailure("--dev \(escapedForMessage(binding.token))=\(escapedForMessage(binding.target)): no table that is loaded uses `\(escapedForMessage(binding.token))`"
                    + " (the tables for device \(escapedForMessage(needed.last ?? "")) name: \(namedTokens(needed)))", .usage)
            }
            if let path = loader.bindings.listedFrom, !listedTokens.isEmpty, used.isDisjoint(with: listedTokens) {
                throw PlainFailure("--dmsetup-ls \(path): no table that is loaded uses any device it lists"
                    + " (the tables for device \(escapedForMessage(needed.last ?? "")) name: \(namedTokens(needed)))", .usage)
            }
            let neededSet = Set(needed).union(siblingTables(of: needed))
            for binding in loader.bindings.luks where !neededSet.contains(binding.device) {
                throw PlainFailure("\(luksOption(binding.device)): no table that is loaded uses device \(escapedForMessage(binding.device))"
                    + " (the tables for device \(escapedForMessage(needed.last ?? "")) name: \(namedTokens(needed)))", .usage)
            }
            for (index, file) in loader.bindings.tables.enumerated() where file.name != nil {
                let defined = order.filter { fileOfDevice[$0] == index }
                if !defined.contains(where: neededSet.contains) {
                    throw PlainFailure("--table \(escapedForMessage(file.name!))=\(file.path): no table that is loaded uses device \(escapedForMessage(file.name!))", .usage)
                }
            }
        }

        /// The device tokens the needed tables name (for the unused-binding message), at most a few.
        func namedTokens(_ needed: [String]) -> String {
            var tokens: [String] = []
            var seen = Set<String>()
            for name in needed.reversed() {
                texts[name]?.forEachLine { line in
                    for argument in line.arguments where tokens.count < 8 && mayNameADevice(argument) {
                        if seen.insert(argument).inserted { tokens.append(escapedForMessage(argument)) }
                    }
                }
            }
            return tokens.isEmpty ? "no devices" : tokens.joined(separator: ", ")
        }

        /// Whether `argument` is worth listing as a possible device name: not a number, not `-`, and not
        /// what a key looks like (a crypt key in hex or a `:size:type:description` keyring reference; long
        /// hex digests and salts go too), since messages never show keys.
        func mayNameADevice(_ argument: String) -> Bool {
            let bytes = argument.utf8
            if argument == "-" || bytes.first == UInt8(ascii: ":") || bytes.allSatisfy({ $0 >= 48 && $0 <= 57 }) { return false }
            let hex = bytes.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 102) }
            return !(hex && bytes.count >= 16)
        }

        @discardableResult
        func build(_ name: String) throws -> MappedDevice {
            if let device = built[name] { return device }
            var luksKey: SecretBytes?
            if luksDevices[name] != nil {
                let opened = try openLUKS(name)
                texts[name] = opened.text
                luksKey = opened.key
                if case .lenient = loader.strictness {} else { volumeKeys[name] = opened.key }
            }
            guard let text = texts[name] else { preconditionFailure("build of unknown table \(name)") }

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
                compressed: { token throws(TargetError) in try guarded { try self.resolveCompressed(token, from: name) } },
                deviceName: name, suppliedKey: try luksKey ?? suppliedKey(for: name))
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
                    throw unavailableTarget(line, text: text, device: name)
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
                    // A `dmsetup status` line fails however its state fields happen to (a thin line's
                    // mapped-sector count opened as its pool: "no such file", 66); what matters is that the
                    // input is not a table: bad data (65), with the hint saying what it is.
                    let status = StatusOutput.hint(for: line)
                    if status == nil, let lookupError { throw lookupError }
                    throw TableError(path: text.path, line: line.number, target: line.target, message: error.message,
                                     detail: error.detail, hint: status ?? error.hint,
                                     exitStatus: status == nil ? error.exitStatus : .dataError)
                }
                segments.append(Segment(start: Sector(line.start), length: Sector(line.length), line: line.number, target: target))
                end = tableEnd
            }
            try checkDeviceAreas(segments, text: text)
            let device = MappedDevice(name: name, tablePath: text.path, segments: segments)
            built[name] = device
            return device
        }

        /// Key files read, by path; a key is read once however many devices use it.
        var keysByPath: [String: SecretBytes] = [:]

        /// The key `--key NAME=FILE` supplies for device `name` (or `--key FILE` for all): the file's
        /// raw bytes, as cryptsetup's `--volume-key-file` holds them.
        func suppliedKey(for name: String) throws -> SecretBytes? {
            let keys = loader.bindings.keys
            guard let path = keys.last(where: { $0.device == name })?.path ?? keys.last(where: { $0.device == nil })?.path else {
                return nil
            }
            if let key = keysByPath[path] { return key }
            var bytes: [UInt8]
            do {
                bytes = try readWholeFile(path)
            } catch let failure as IOFailure {
                throw IOFailure(path: path, operation: failure.operation, errno: failure.errno, exitStatus: .noInput,
                                hint: "the key file (--key) cannot be read")
            }
            defer { SecretBytes.wipe(&bytes) }
            guard !bytes.isEmpty else {
                throw PlainFailure("\(path): the key file (--key) is empty; it holds the raw key bytes", .dataError)
            }
            let key = SecretBytes(copying: bytes)
            keysByPath[path] = key
            return key
        }

        /// A line whose target imgmap has no implementation of: a kernel target it does not build (yet),
        /// a misspelt name (a hint only when a known name is close), or a `dmsetup status` line.
        func unavailableTarget(_ line: TableLine, text: TableText, device: String) -> TableError {
            let known = loader.targets.map { $0.name }
            if let status = StatusOutput.hint(for: line) {
                return TableError(path: text.path, line: line.number, message: "Invalid format",
                                  detail: "a `dmsetup status` line, not a table line", hint: status)
            }
            let numbers = devBindings.filter { $0.value == "@" + device }.map(\.key).sorted()
            let standIn = "an image of device \(escapedForMessage(device)) (for example read from /dev/mapper/\(escapedForMessage(device)) on the original machine) can stand in for it:"
                + " bind what the tables above it name it, --dev \(numbers.first ?? "MAJOR:MINOR")=that.img"
            if KernelTargets.names.contains(line.target) {
                return TableError(path: text.path, line: line.number, target: line.target, message: "target not implemented",
                                  detail: "imgmap does not implement the kernel's `\(escapedForMessage(line.target))` target (yet); it implements \(known.joined(separator: ", "))",
                                  hint: standIn, exitStatus: .dataError)
            }
            if let close = KernelTargets.closest(to: line.target, among: known + KernelTargets.names) {
                return TableError(path: text.path, line: line.number, message: "unknown target type",
                                  detail: "`\(escapedForMessage(line.target))`", hint: "did you mean `\(close)`? target names are case-sensitive")
            }
            return TableError(path: text.path, line: line.number, message: "unknown target type",
                              detail: "`\(escapedForMessage(line.target))`: imgmap does not implement a target of that name; it implements \(known.joined(separator: ", "))",
                              hint: standIn)
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
            // open(2) would stop at the NUL and open the file named by the bytes before it.
            if let nul = token.utf8.firstIndex(of: 0) {
                throw TargetError("Device lookup failed",
                                  detail: "`\(token.map { $0 == "\0" ? "\\0" : String($0) }.joined())` holds a NUL byte (byte \(token.utf8.distance(from: token.utf8.startIndex, to: nul) + 1)); no file name can hold one")
            }
            if let target = devBindings[token] {
                if target.hasPrefix("@") {
                    let name = String(target.dropFirst())
                    guard texts[name] != nil else {
                        throw TargetError("Device lookup failed", detail: "`\(token)` is bound to @\(name), but no table defines device \(name)",
                                          exitStatus: .usage)
                    }
                    return .mapped(try lower(name))
                }
                return try openLeaf(target, token: token, bound: true)
            }
            if texts[token] != nil {
                return .mapped(try lower(token))
            }
            return try openLeaf(token, token: token, bound: false)
        }

        /// A lower device: built before the devices that use it (`devicesNeeded` orders them so).
        func lower(_ name: String) throws -> MappedDevice {
            guard let device = built[name] else { preconditionFailure("device \(name) used before it was built") }
            return device
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
                image = try loader.openImage(path)
            } catch {
                let placeholder = ImageFile(descriptor: -1, path: path, writable: false, owned: false)
                switch loader.strictness {
                case .lenient, .deviceNumbersUnchecked where !bound && isDeviceNumber(token):
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
                case .openAll, .deviceNumbersUnchecked:
                    break
                }
                var hint = bound ? nil : "bind the name to an image with --dev \(token)=PATH"
                if !bound && isDeviceNumber(token) {
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

/// The most bytes a table file may hold: the kernel takes at most 1 GiB of table in one ioctl
/// (`DM_MAX_TARGETS` × `DM_MAX_TARGET_PARAMS`, checked in dm-ioctl.c `copy_params`).
public let maxTableFileBytes = 1 << 30

/// The longest line imgmap reads in a table. dmsetup reads lines of any length (getline) and the kernel
/// bounds only the whole table; this is imgmap's own bound, far above any real target line (a raid line
/// with 253 legs is a few KB), so that a file that is not a table fails fast. The kernel oracle (6.1.0-57)
/// accepted one `error` line with 1 MiB of arguments (and printed it back as `0 8 error`: no per-target
/// parameter limit below that); lines of 4 MiB and 15 MiB did not finish within its 120 s limit.
public let maxTableLineBytes = 16 << 20

/// Reads a table file (`-` is stdin) in bounded memory: a NUL byte (a binary file, `/dev/zero`), a line
/// longer than `maxTableLineBytes` or a file larger than `maxTableFileBytes` is refused as soon as it
/// is read, without reading on.
public func readTableFile(_ path: String) throws -> [UInt8] {
    let display = path == "-" ? "<stdin>" : path
    var line = 1
    var lineLength = 0
    return try readWholeFile(path, limit: maxTableFileBytes) { bytes in
        for i in bytes.indices {
            let c = bytes[i]
            if c == UInt8(ascii: "\n") {
                line += 1
                lineLength = 0
                continue
            }
            if c == 0 {
                throw TableError(path: display, line: line, message: "Invalid format",
                                 detail: "a NUL byte at byte \(i): this is a binary file, not table text")
            }
            lineLength += 1
            if lineLength > maxTableLineBytes {
                throw TableError(path: display, line: line, message: "Invalid format",
                                 detail: "the line is longer than \(maxTableLineBytes >> 20) MiB, imgmap's limit for a table line")
            }
        }
    } tooLarge: {
        TableError(path: display, line: nil, message: "too large table",
                   detail: "more than \(maxTableFileBytes >> 30) GiB of table text; the kernel takes at most 1 GiB of table (DM_MAX_TARGETS × DM_MAX_TARGET_PARAMS)")
    }
}

/// Reads a whole (small) file: a table or a list. `-` reads standard input.
public func readWholeFile(_ path: String, limit: Int = Int.max, check: (ArraySlice<UInt8>) throws -> Void = { _ in },
                          tooLarge: () -> Error = { PlainFailure("the file is too large", .dataError) }) throws -> [UInt8] {
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
        if expected > limit { throw tooLarge() }
    }
    // Read straight into the result, sized once for a regular file; a pipe grows it as it comes.
    // The check sees what was read so far after every read, so a bad input stops early.
    var result = [UInt8](repeating: 0, count: max(min(expected, limit) + 1, 1 << 16))
    var count = 0
    while true {
        if count == result.count {
            if count > limit { throw tooLarge() }
            result.append(contentsOf: repeatElement(0, count: result.count))
        }
        let n = try result.withUnsafeMutableBytes { bytes in
            try file.readSequential(into: UnsafeMutableRawBufferPointer(rebasing: bytes[count...]))
        }
        if n == 0 { break }
        count += n
        if count > limit { throw tooLarge() }
        try check(result[(count - n)..<count])
    }
    result.removeSubrange(count...)
    return result
}

/// `MAJOR:MINOR`, as a `dmsetup table` dump names block devices.
func isDeviceNumber(_ token: String) -> Bool {
    let parts = token.split(separator: ":", omittingEmptySubsequences: false)
    return parts.count == 2 && parts.allSatisfy { !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 48 && $0 <= 57 } }
}
