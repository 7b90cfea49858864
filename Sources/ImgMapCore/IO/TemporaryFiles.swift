#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Synchronization

/// Partial outputs to remove if the process is interrupted: SIGINT, SIGTERM and SIGHUP remove them
/// and exit with 128 + the signal number, so an interrupted run leaves no `OUT.tmp-…` behind.
/// (SIGKILL cannot be caught: a stale temporary is never mistaken for output, since only a complete
/// one is renamed to OUT.)
public enum TemporaryFiles {
    private static let paths = Mutex<[String]>([])
    private static let sources = Mutex<[DispatchSourceSignal]>([])

    /// Registers `path` for removal on a fatal signal.
    public static func register(_ path: String) {
        installHandlers()
        paths.withLock { $0.append(path) }
    }

    /// Stops tracking `path` (after it was renamed or removed).
    public static func unregister(_ path: String) {
        paths.withLock { list in
            if let i = list.lastIndex(of: path) { list.remove(at: i) }
        }
    }

    /// Installs the signal handlers once: the signals are blocked from their default action and
    /// delivered to a dispatch queue, which removes the files and exits.
    public static func installHandlers() {
        sources.withLock { list in
            guard list.isEmpty else { return }
            for sig in [SIGINT, SIGTERM, SIGHUP] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler {
                    let pending = paths.withLock { $0 }
                    for path in pending { unlink(path) }
                    _exit(128 + sig)
                }
                source.resume()
                list.append(source)
            }
        }
    }
}
