#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

// Plain POSIX sockets with one thread per connection, not swift-nio: NBD requests are served one at a
// time per connection with blocking pread/pwrite underneath, so an event loop would only hand the work
// to a thread pool anyway; and swift-nio adds 1–2.5 minutes to every clean CI build here. A read's
// data is read into the connection's buffer first and goes out with its reply header in one sendmsg:
// the client is woken once per reply, which is what nbdcopy's throughput turned on (MSG_MORE does
// nothing on a Unix socket). sendfile(2) saved the server's copy but split each reply into several
// socket buffers plus a header and a NONE chunk, and measured no faster (Benchmarks/README.md, "serve").

/// Where the server listens.
public enum NBDListenAddress: Sendable, Equatable {
    /// A Unix socket created at `path` (removed when the server stops).
    case unix(path: String)
    /// TCP on `host` (an IPv4 address; loopback unless given) and `port` (0: any free port).
    case tcp(host: String, port: UInt16)
    /// A listening socket handed over by socket activation (LISTEN_FDS, LISTEN_PID): fd 3.
    case activated(fd: Int32)

    /// Parses `--listen [ADDR:]PORT`.
    public static func parseListen(_ text: String) -> NBDListenAddress? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, let port = UInt16(parts.last!) else { return nil }
        return .tcp(host: parts.count == 2 ? String(parts[0]) : "127.0.0.1", port: port)
    }

    /// The socket handed over by systemd-style activation, when it is meant for this process.
    public static func fromEnvironment() -> NBDListenAddress? {
        guard let pid = getenv("LISTEN_PID").map({ String(cString: $0) }), pid == String(getpid()),
              let fds = getenv("LISTEN_FDS").map({ String(cString: $0) }), let n = Int(fds), n >= 1 else { return nil }
        return .activated(fd: 3)
    }
}

/// Listens and serves each connection on its own thread.
public final class NBDServer: @unchecked Sendable {
    /// What every connection serves.
    public let export: NBDExport
    /// The listening socket.
    public let listenFD: Int32
    /// The address clients use: `nbd+unix:///?socket=PATH` or `nbd://HOST:PORT/`.
    public let uri: String
    /// qemu's older spelling (`nbd:unix:PATH`, `nbd:HOST:PORT`), for `$nbd`.
    public let qemuAddress: String
    /// The Unix socket's path, when the server listens on one.
    public let unixPath: String?
    /// Seconds a client has from connecting to the end of its handshake.
    public var handshakeTimeout = NBD.defaultHandshakeTimeout
    /// At most this many connections are served at once. Over it the server stops accepting, so a new
    /// client waits in the kernel's listen queue until a connection ends, as with qemu-nbd --shared
    /// (nbdkit's limit filter drops it instead): a client that opens several connections, or a second
    /// job, is delayed rather than failed, and a waiting client costs the server nothing.
    public let maxConnections: Int
    /// Free connection slots: `run` takes one before each accept(2), a closing connection gives its
    /// back. A semaphore (not a condition) so `stop` can wake a waiting accept loop with one post.
    let slots: UnsafeMutablePointer<sem_t>
    /// The most connections served at once so far (tests check the cap holds).
    public var peakConnections: Int { peak.load(ordering: .relaxed) }
    let peak = Atomic<Int>(0)

    /// Binds and listens on `address` (nothing is served until `run`); throws an `IOFailure` when the
    /// socket cannot be made (a path in use, a port taken), a `PlainFailure` for a Unix path too long.
    public init(export: NBDExport, address: NBDListenAddress, maxConnections: Int = NBD.defaultMaxConnections) throws {
        precondition(maxConnections >= 1)
        self.export = export
        self.maxConnections = maxConnections
        slots = .allocate(capacity: 1)
        sem_init(slots, 0, UInt32(maxConnections))
        switch address {
        case .unix(let path):
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw IOFailure(path: path, operation: "socket", errno: errno, exitStatus: .cannotCreate) }
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
                close(fd)
                throw PlainFailure("\(path): a Unix socket path must be shorter than \(MemoryLayout.size(ofValue: addr.sun_path)) bytes", .usage)
            }
            withUnsafeMutableBytes(of: &addr.sun_path) { p in
                for (i, b) in bytes.enumerated() { p[i] = b }
            }
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard rc == 0, listen(fd, 64) == 0 else {
                let e = errno
                close(fd)
                throw IOFailure(path: path, operation: "bind", errno: e, exitStatus: .cannotCreate)
            }
            listenFD = fd
            unixPath = path
            uri = "nbd+unix:///?socket=\(path)"
            qemuAddress = "nbd:unix:\(path)"
        case .tcp(let host, let port):
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw IOFailure(path: "\(host):\(port)", operation: "socket", errno: errno, exitStatus: .cannotCreate) }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
                close(fd)
                throw PlainFailure("--listen \(host):\(port): not an IPv4 address", .usage)
            }
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard rc == 0, listen(fd, 64) == 0 else {
                let e = errno
                close(fd)
                throw IOFailure(path: "\(host):\(port)", operation: "bind", errno: e, exitStatus: .cannotCreate)
            }
            var bound = sockaddr_in()
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &bound) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
            }
            let actual = UInt16(bigEndian: bound.sin_port)
            listenFD = fd
            unixPath = nil
            uri = "nbd://\(host):\(actual)/"
            qemuAddress = "nbd:\(host):\(actual)"
        case .activated(let fd):
            listenFD = fd
            unixPath = nil
            uri = "nbd://localhost/"
            qemuAddress = "nbd:localhost:10809"
        }
    }

    deinit {
        sem_destroy(slots)
        slots.deallocate()
    }

    /// Open connections' sockets, so `stop` can end them; a connection removes itself before closing
    /// its descriptor (under the lock), so `stop` never shuts down a reused descriptor.
    let connections = Mutex<Set<Int32>>([])
    let stopping = Atomic<Bool>(false)

    /// How many connections are being served now.
    public var activeConnections: Int { connections.withLock { $0.count } }

    /// Accepts connections until `stop` (or until the listening socket fails), one thread each, at most
    /// `maxConnections` at a time.
    public func run() {
        while !stopping.load(ordering: .acquiring) {
            // A free slot first: at the cap, the next client stays in the listen queue.
            while sem_wait(slots) != 0, errno == EINTR {}
            if stopping.load(ordering: .acquiring) { return }
            let client = accept(listenFD, nil, nil)
            if client < 0 {
                sem_post(slots)
                if stopping.load(ordering: .acquiring) { return }
                if errno == EINTR || errno == ECONNABORTED { continue }
                if errno == EMFILE || errno == ENFILE {
                    // Out of descriptors: wait for connections to end rather than spin.
                    usleep(10_000)
                    continue
                }
                return
            }
            // accept4 is hidden by the Glibc module: the captive command may start between these two
            // calls and inherit one client socket, which it never uses.
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            var one: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            let admitted = connections.withLock { open in
                guard !stopping.load(ordering: .acquiring) else { return false }
                open.insert(client)
                let count = open.count
                if count > peak.load(ordering: .relaxed) { peak.store(count, ordering: .relaxed) }
                return true
            }
            guard admitted else { close(client); sem_post(slots); return }
            let transport = ServerSocket(fd: client, server: self)
            let connection = NBDConnection(transport: transport, export: export, handshakeTimeout: handshakeTimeout)
            if !startDetachedThread({ connection.serve() }) { transport.close() }
        }
    }

    /// Stops serving: no new connections; each open one ends after the request it is serving (its
    /// socket is shut down for reading, so the next receive sees the end), waiting at most `grace`
    /// seconds for them; then every member opened for writing is fsynced, so everything acknowledged is
    /// on disk. proto.md: "the server SHOULD wait for inflight requests to be serviced".
    public func stop(grace: Double = 10) {
        stopping.store(true, ordering: .releasing)
        shutdown(listenFD, Int32(SHUT_RDWR))
        // Wakes the accept loop if it waits for a slot; it sees `stopping` and ends.
        sem_post(slots)
        connections.withLock { open in
            for fd in open { shutdown(fd, Int32(SHUT_RD)) }
        }
        var waited = 0.0
        while activeConnections > 0, waited < grace {
            usleep(5_000)
            waited += 0.005
        }
        try? export.syncAll()
    }

    /// A connection's socket that leaves the server's list when closed.
    final class ServerSocket: NBDTransport {
        let socket: SocketTransport
        unowned let server: NBDServer
        var closed = false

        init(fd: Int32, server: NBDServer) {
            socket = SocketTransport(fd: fd)
            self.server = server
        }

        func receive(into buffer: UnsafeMutableRawBufferPointer) throws { try socket.receive(into: buffer) }
        func send(_ bytes: UnsafeRawBufferPointer, more: Bool) throws { try socket.send(bytes, more: more) }
        func setDeadline(_ deadline: timespec?) { socket.setDeadline(deadline) }
        func send(_ header: UnsafeRawBufferPointer, _ data: UnsafeRawBufferPointer, more: Bool) throws {
            try socket.send(header, data, more: more)
        }
        func close() {
            guard !closed else { return }
            closed = true
            // The slot goes back under the lock too: once `stop` sees no connection, the server may
            // be freed, and this thread must not touch it after that.
            server.connections.withLock { open in
                open.remove(socket.fd)
                socket.close()
                sem_post(server.slots)
            }
        }
    }

    /// Removes the Unix socket file.
    public func removeSocket() {
        if let unixPath { unlink(unixPath) }
    }
}

/// Starts a detached pthread running `body`. Each connection thread gets a 1 MiB stack: request
/// buffers are on the heap.
@discardableResult
public func startDetachedThread(_ body: @escaping @Sendable () -> Void) -> Bool {
    final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
    pthread_attr_setstacksize(&attr, 1 << 20)
    var thread = pthread_t()
    let rc = pthread_create(&thread, &attr, { raw in
        let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
        box.body()
        return nil
    }, box)
    pthread_attr_destroy(&attr)
    if rc != 0 {
        // No thread: running inline would block accept; the caller drops the connection instead.
        Unmanaged<Box>.fromOpaque(box).release()
        return false
    }
    return true
}
