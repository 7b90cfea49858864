#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSupport
import Synchronization

/// Where a command writes its result. A regular file is written as an unnamed file in OUT's directory
/// (O_TMPFILE), so that no name exists until it is complete, whatever ends the process, SIGKILL and power
/// loss included; `commit()` links it as `OUT.tmp-PID-N` and renames that to OUT. Where the filesystem
/// has no O_TMPFILE (or /proc is missing), `OUT.tmp-PID-N` is created at once with O_EXCL|O_NOFOLLOW
/// (never through a planted symlink) and renamed only by `commit()`; `discard()` (or a signal that ends
/// the process) removes it. `commit()` fsyncs the file before
/// the rename and the directory after it. An OUT whose name leaves no room for the suffix gets
/// `.imgmap.tmp-PID-N` in its directory. `-` is standard output; an existing character device,
/// FIFO or block device is written in place.
public final class OutputFile {
    /// How OUT is written, chosen by what OUT is when it is opened.
    public enum Kind: Sendable {
        /// A new or replaced regular file, through a temporary beside it.
        case regularFile
        /// A pipe, terminal or character device: sequential writes only.
        case stream
        /// An existing block device: written in place by offset.
        case blockDevice
    }

    /// OUT as the user named it (`-` for standard output).
    public let path: String
    /// How OUT is being written.
    public let kind: Kind
    /// The file written now: the temporary for a regular file, OUT itself otherwise.
    public let file: ImageFile
    /// The temporary's name: from the start, or (unnamed) only once `commit()` links it.
    private(set) var temporaryPath: String?
    /// Written through an unnamed O_TMPFILE file.
    let unnamed: Bool
    private var finished = false

    /// Opens OUT for writing. Refuses (before creating anything) an OUT that is one of `inputs`
    /// (same device and inode), and reports a missing directory or no permission as `cannotCreate` (73).
    public init(path: String, inputs: [ImageFile]) throws {
        self.path = path
        if path == "-" {
            self.kind = .stream
            self.file = ImageFile(descriptor: 1, path: "<stdout>", writable: true, owned: false)
            self.temporaryPath = nil
            self.unnamed = false
            try Self.refuseIfInput(file, path: "standard output", inputs: inputs)
            return
        }
        var st = stat()
        if PathCalls.stat(path, &st) == 0 {
            let mode = st.st_mode & S_IFMT
            if mode == S_IFDIR {
                throw IOFailure(path: path, operation: "create output", errno: EISDIR, exitStatus: .cannotCreate)
            }
            for input in inputs where input.fd >= 0 {
                if let s = try? input.status(), s.st_dev == st.st_dev, s.st_ino == st.st_ino {
                    throw PlainFailure("\(path): the output is also an input (\(input.path)); write to another file", .usage)
                }
            }
            if mode == S_IFCHR || mode == S_IFIFO || mode == S_IFBLK {
                let fd = PathCalls.open(path, O_WRONLY | O_CLOEXEC)
                guard fd >= 0 else { throw IOFailure(path: path, operation: "open for writing", errno: errno, exitStatus: .cannotCreate) }
                self.kind = mode == S_IFBLK ? .blockDevice : .stream
                self.file = ImageFile(descriptor: fd, path: path, writable: true)
                self.temporaryPath = nil
                self.unnamed = false
                return
            }
        }
        if Self.procFileDescriptors {
            let fd = PathBytes.withCString(Self.directory(of: path)) { imgmap_open_anonymous($0, 0o666) }
            if fd >= 0 {
                self.kind = .regularFile
                self.file = ImageFile(descriptor: fd, path: path, writable: true)
                self.temporaryPath = nil
                self.unnamed = true
                return
            }
        }
        // A name already taken — a stale temporary of a killed run whose pid came round again, or
        // something planted there — is left alone: the next name is tried.
        var temp = ""
        var fd: Int32 = -1
        var code: Int32 = 0
        for _ in 0..<100 {
            temp = Self.temporaryName(for: path)
            TemporaryFiles.register(temp)
            fd = PathBytes.withCString(temp) { imgmap_open_exclusive($0, 0o666) }
            code = errno
            if fd >= 0 { break }
            TemporaryFiles.unregister(temp)
            if code != EEXIST { break }
        }
        guard fd >= 0 else {
            let directory = Self.directory(of: path)
            // The system's answer (EACCES, EROFS, …) is the message; ENOENT gets a hint saying which
            // part is missing, and /proc-like directories that exist but refuse new files say ENOENT too.
            var hint: String?
            if code == ENOENT {
                var st = stat()
                hint = PathCalls.stat(directory, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
                    ? "the directory \(directory) exists but does not let files be created in it"
                    : "the directory \(directory) does not exist"
            }
            throw IOFailure(path: path, operation: "create \(temp)", errno: code, exitStatus: .cannotCreate, hint: hint)
        }
        self.kind = .regularFile
        self.file = ImageFile(descriptor: fd, path: path, writable: true)
        self.temporaryPath = temp
        self.unnamed = false
    }

    /// Whether /proc/self/fd is there, which linking an unnamed file to its name needs.
    static let procFileDescriptors = PathCalls.access("/proc/self/fd", F_OK) == 0

    deinit {
        if !finished { discard() }
    }

    /// Whether writes must be sequential (no seeking, no holes).
    public var isStream: Bool { kind == .stream }

    /// Finishes the output: for a regular file, closes it and renames the temporary to OUT.
    public func commit() throws {
        guard !finished else { return }
        finished = true
        if unnamed {
            // Durable before it is named: a power loss after the link must not leave an empty or partial
            // file under OUT. A name taken (a stale temporary, something planted) is left alone.
            do { try file.sync() } catch { try? file.close(); throw error }
            var code: Int32 = 0
            for _ in 0..<100 {
                let temp = Self.temporaryName(for: path)
                TemporaryFiles.register(temp)
                if PathBytes.withCString(temp, { imgmap_link_anonymous(file.fd, $0) }) == 0 {
                    temporaryPath = temp
                    break
                }
                code = errno
                TemporaryFiles.unregister(temp)
                if code != EEXIST { break }
            }
            guard temporaryPath != nil else {
                try? file.close()
                throw IOFailure(path: path, operation: "link the finished output", errno: code, exitStatus: .cannotCreate)
            }
        }
        guard let temp = temporaryPath else { return }
        do {
            // Durable before it is named: a power loss after the rename must not leave an empty or
            // partial file under OUT.
            if !unnamed { try file.sync() }
            try file.close()
        } catch {
            PathCalls.unlink(temp)
            TemporaryFiles.unregister(temp)
            throw error
        }
        if PathCalls.rename(temp, path) != 0 {
            let code = errno
            PathCalls.unlink(temp)
            TemporaryFiles.unregister(temp)
            throw IOFailure(path: path, operation: "rename from \(temp)", errno: code, exitStatus: .cannotCreate)
        }
        TemporaryFiles.unregister(temp)
        // And the rename itself: fsync(2) of the directory. A filesystem that cannot sync a directory
        // (EINVAL) has nothing more to make durable.
        let dir = PathCalls.open(Self.directory(of: path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            let failed = fsync(dir) != 0 && errno != EINVAL
            let code = errno
            _ = Glibc.close(dir)
            if failed { throw IOFailure(path: Self.directory(of: path), operation: "fsync of the directory", errno: code) }
        }
    }

    /// Refuses two outputs that are the same file — `-o d.out --digest-file d.out` would leave the
    /// digest line where the image should be. Two existing paths are the same by device and inode;
    /// otherwise by the path with its directory resolved (realpath(3)); `-` (standard output) twice
    /// is the same too. Call before opening any of them. Each entry is (option, path).
    public static func refuseSameFile(_ outputs: [(option: String, path: String)]) throws {
        var seen: [(option: String, path: String, identity: Identity)] = []
        for (option, path) in outputs {
            let identity = Identity(path)
            if let other = seen.first(where: { $0.identity == identity }) {
                throw PlainFailure("\(path): \(option) and \(other.option) name the same file; give each output its own file", .usage)
            }
            seen.append((option, path, identity))
        }
    }

    enum Identity: Equatable {
        case standardOutput
        case inode(dev: UInt64, ino: UInt64)
        case path(String)

        init(_ path: String) {
            if path == "-" { self = .standardOutput; return }
            var st = stat()
            if PathCalls.stat(path, &st) == 0 {
                self = .inode(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino))
                return
            }
            let directory = OutputFile.directory(of: path)
            let name = path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
            if let resolved = PathCalls.realpath(directory) {
                self = .path(resolved + "/" + name)
            } else {
                self = .path(path)
            }
        }
    }

    /// Abandons the output: the temporary file is removed, OUT is left as it was.
    public func discard() {
        guard !finished else { return }
        finished = true
        // An unnamed file vanishes with its last descriptor.
        if unnamed { try? file.close() }
        if let temp = temporaryPath {
            PathCalls.unlink(temp)
            TemporaryFiles.unregister(temp)
        }
    }

    static func refuseIfInput(_ out: ImageFile, path: String, inputs: [ImageFile]) throws {
        guard let st = try? out.status(), (st.st_mode & S_IFMT) == S_IFREG else { return }
        for input in inputs where input.fd >= 0 {
            if let s = try? input.status(), s.st_dev == st.st_dev, s.st_ino == st.st_ino {
                throw PlainFailure("\(path) is the input \(input.path): write to another file", .usage)
            }
        }
    }

    private static let counter = Atomic<Int>(0)

    static func temporaryName(for path: String) -> String {
        let n = counter.add(1, ordering: .relaxed).newValue
        let suffix = ".tmp-\(getpid())-\(n)"
        let name = path.lastIndex(of: "/").map { path[path.index(after: $0)...] } ?? path[...]
        // NAME_MAX is 255 bytes: an OUT whose name is that long gets a short hidden temporary instead.
        if name.utf8.count + suffix.utf8.count > 255 {
            let directory = path.lastIndex(of: "/").map { String(path[...$0]) } ?? ""
            return "\(directory).imgmap\(suffix)"
        }
        return path + suffix
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
