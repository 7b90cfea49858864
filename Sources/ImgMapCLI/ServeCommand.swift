import ArgumentParser
import ImgMapCore

#if canImport(Glibc)
import Glibc
#endif

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the mapped device over NBD (Network Block Device), for qemu, nbdcopy, nbdfuse and other clients.",
        discussion: """
            Serves the mapped device live, without composing it, over the NBD protocol (fixed newstyle \
            handshake, NBD_OPT_GO/INFO/LIST, structured replies, the base:allocation meta context). Reads \
            go through the sector map; a read touching an error segment fails whole with EIO, as the \
            kernel's device does. Block status reports zero segments and image holes as holes that read \
            as zeros, everything else as data. Requests are checked before any I/O: past the end gives \
            EINVAL (ENOSPC for writes), unknown commands and flags EINVAL, READ/WRITE longer than 32 MiB \
            EINVAL. Listens on a Unix socket (--socket), on TCP (--listen, loopback unless an address is \
            given), or on a socket handed over by socket activation (LISTEN_FDS). No TLS: use loopback and \
            Unix sockets only. Prints the URI, then serves until SIGINT or SIGTERM, which let each \
            connection finish its request in flight and fsync the members before exiting 0.

            Read-only unless --writable. Writes go through the write path as scatter's do: into the \
            member images, dropped on zero segments, refused with EIO (nothing written) when they touch \
            an error segment, EPERM over a compress image. FLUSH and FUA fsync the members. WRITE_ZEROES: \
            over image segments the whole sectors are deallocated with fallocate(PUNCH_HOLE), or zeroed \
            in place with fallocate(ZERO_RANGE) when the client sets NO_HOLE (what the loop driver does), \
            written as zeros where the filesystem cannot; zero segments drop it; through crypt, raid, \
            snapshot and other computed segments zeros are written through the target (the block layer's \
            emulation). TRIM: image segments have their whole sectors deallocated (PUNCH_HOLE), zero \
            segments drop it, error segments fail it with EIO, computed segments refuse it with EINVAL. \
            Several connections may read and write at once (CAN_MULTI_CONN): there is no cache in the \
            server and writes are serialised by one lock. At most --max-connections clients are served \
            at once (16 by default; each costs a thread and a 2 MiB buffer): over the cap the server \
            stops accepting, so a new client waits in the listen queue until another disconnects, as \
            with qemu-nbd --shared, rather than being dropped as nbdkit's limit filter does (nbdcopy \
            and qemu open several connections; a refused one fails the whole job). The handshake \
            timeout starts when a client is accepted.

            With --run CMD the server is captive: CMD runs under /bin/sh -c with $uri \
            (nbd+unix:///?socket=…), $unixsocket and $nbd (qemu's older nbd:unix:… form) set; the server \
            stops when CMD ends and imgmap exits with CMD's status. Without --socket or --listen the \
            socket is made in a private temporary folder and removed afterwards.

            EXIT STATUS: 0 after SIGINT/SIGTERM; CMD's status with --run (128+N when CMD was killed by \
            signal N); 64 for usage errors; 65/66/74 for tables, images and I/O as in the other commands; \
            73 when the socket cannot be made or an image cannot be opened for writing.

            EXAMPLES:
              imgmap serve raid0.table --dev m0=a.img --dev m1=b.img --run 'nbdcopy "$uri" out.img'
              imgmap serve disk.table --run 'qemu-img convert -O qcow2 "$uri" disk.qcow2'
              imgmap serve disk.table --run 'nbdinfo --map "$uri"'
              imgmap serve disk.table --run 'nbdfuse -r -P pid mnt "$uri" & until [ -s pid ]; do sleep 0.1; done; e2fsck -fn mnt/nbd; fusermount3 -u mnt'
              imgmap serve disk.table --socket /tmp/disk.sock &   # then: qemu-img info 'nbd+unix:///?socket=/tmp/disk.sock'
              imgmap serve disk.table --listen 10809 --writable   # then: qemu-system-x86_64 -drive file=nbd://127.0.0.1:10809/,format=raw
            """)

    @OptionGroup var tables: TableOptions

    @Option(help: ArgumentHelp("Listen on a Unix socket at PATH.", valueName: "PATH"))
    var socket: String?

    @Option(help: ArgumentHelp("Listen on TCP: PORT on loopback, or ADDR:PORT (IPv4).", valueName: "[ADDR:]PORT"))
    var listen: String?

    @Flag(help: "Accept writes (into the member images, as scatter writes).")
    var writable = false

    @Option(name: .customLong("run"), help: ArgumentHelp("Run CMD with $uri, $unixsocket and $nbd set; stop when it ends and exit with its status.", valueName: "CMD"))
    var command: String?

    @Option(help: "The export name clients may ask for (any name is accepted when empty).")
    var exportName = ""

    @Option(help: ArgumentHelp("Drop a client that has not finished its handshake after SECONDS.", valueName: "SECONDS"))
    var handshakeTimeout = NBD.defaultHandshakeTimeout

    @Option(help: ArgumentHelp("Serve at most N clients at once; more wait until one disconnects.", valueName: "N"))
    var maxConnections = NBD.defaultMaxConnections

    func validate() throws {
        if !(1...4096).contains(maxConnections) { throw ValidationError("--max-connections must be between 1 and 4096") }
        if socket != nil, listen != nil { throw ValidationError("--socket and --listen cannot be combined") }
        if handshakeTimeout < 1 { throw ValidationError("--handshake-timeout must be at least 1 second") }
        if let listen, NBDListenAddress.parseListen(listen) == nil {
            throw ValidationError("--listen \(listen): expected PORT or ADDR:PORT")
        }
    }

    func run() throws {
        let loaded = try tables.load()
        let map = SectorMap(top: loaded.top)
        var writers: [ObjectIdentifier: ImageFile]?
        if writable {
            var opened: [ObjectIdentifier: ImageFile] = [:]
            for leaf in loaded.leaves where leaf.backing.isRaw {
                do {
                    opened[ObjectIdentifier(leaf)] = try ImageFile(openForReading: leaf.path, writable: true)
                } catch {
                    throw IOFailure(path: leaf.path, operation: "open for writing", errno: error.errno, exitStatus: .cannotCreate)
                }
            }
            writers = opened
        }
        let export = NBDExport(map: map, name: exportName, writers: writers)

        var temporaryDirectory: String?
        let address: NBDListenAddress
        if let socket {
            address = .unix(path: socket)
        } else if let listen {
            address = NBDListenAddress.parseListen(listen)!
        } else if let activated = NBDListenAddress.fromEnvironment() {
            address = activated
        } else if command != nil {
            var template = Array("\(String(cString: getenv("TMPDIR") ?? strdup("/tmp")))/imgmap-serve-XXXXXX".utf8CString)
            guard mkdtemp(&template) != nil else { throw IOFailure(path: "/tmp", operation: "mkdtemp", errno: errno, exitStatus: .cannotCreate) }
            let dir = String(cString: template)
            temporaryDirectory = dir
            address = .unix(path: dir + "/nbd.sock")
        } else {
            throw ValidationError("say where to listen: --socket PATH, --listen [ADDR:]PORT, or --run CMD (or start under socket activation)")
        }

        // SIGINT, SIGTERM and SIGCHLD are taken with sigwait on this thread; every thread started
        // after this inherits the mask, so no connection thread is interrupted.
        var signals = sigset_t()
        sigemptyset(&signals)
        for s in [SIGINT, SIGTERM, SIGCHLD] { sigaddset(&signals, s) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let server = try NBDServer(export: export, address: address, maxConnections: maxConnections)
        server.handshakeTimeout = handshakeTimeout
        // Ends every connection after its request in flight and fsyncs the members, then removes the
        // socket: on SIGINT/SIGTERM, or when the captive command ends.
        func stopServing() {
            server.stop()
            server.removeSocket()
            if let temporaryDirectory { rmdir(temporaryDirectory) }
        }
        startDetachedThread { server.run() }

        guard let command else {
            let line = Array((server.uri + "\n").utf8)
            _ = line.withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
            var received: Int32 = 0
            repeat { sigwait(&signals, &received) } while received == SIGCHLD
            stopServing()
            Glibc.exit(0)
        }

        setenv("uri", server.uri, 1)
        setenv("nbd", server.qemuAddress, 1)
        setenv("unixsocket", server.unixPath ?? "", 1)
        let child = try spawnShell(command)
        while true {
            var received: Int32 = 0
            sigwait(&signals, &received)
            if received == SIGCHLD {
                var status: Int32 = 0
                let r = waitpid(child, &status, WNOHANG)
                guard r == child else { continue }
                stopServing()
                let exited = status & 0x7f == 0
                Glibc.exit(exited ? (status >> 8) & 0xff : 128 + (status & 0x7f))
            }
            // Interrupted: pass the signal on and wait for the command to end.
            kill(child, received)
        }
    }

    /// Starts `/bin/sh -c command` with the default signal mask.
    func spawnShell(_ command: String) throws -> pid_t {
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK))
        var pid: pid_t = 0
        var args: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sh"), strdup("-c"), strdup(command)]
        args.append(nil)
        defer { for a in args { free(a) } }
        let rc = posix_spawn(&pid, "/bin/sh", nil, &attr, args, environ)
        guard rc == 0 else { throw IOFailure(path: "/bin/sh", operation: "posix_spawn", errno: rc, exitStatus: .noInput) }
        return pid
    }
}
