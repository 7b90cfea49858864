#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSupport
import Synchronization

/// Partial outputs to remove if the process is interrupted: SIGINT, SIGTERM and SIGHUP remove them
/// and exit with 128 + the signal number, so an interrupted run leaves no `OUT.tmp-…` behind. A signal
/// the process was started with ignored (nohup) stays ignored.
///
/// The handlers are plain sigaction(2) handlers in CSupport, in force as soon as `installHandlers`
/// returns: a signal that comes right after a temporary is created cannot be lost. (SIGKILL cannot be
/// caught: a stale temporary is never mistaken for output, since only a complete one is renamed to OUT.)
public enum TemporaryFiles {
    /// The handler's slot for each registered path.
    private static let slots = Mutex<[String: [Int32]]>([:])
    private static let installed = Mutex(false)

    /// Registers `path` for removal on a fatal signal (from before it is created).
    public static func register(_ path: String) {
        installHandlers()
        let slot = PathBytes.withCString(path) { imgmap_register_temporary($0) }
        if slot >= 0 { slots.withLock { $0[path, default: []].append(slot) } }
    }

    /// Stops tracking `path` (after it was renamed or removed).
    public static func unregister(_ path: String) {
        slots.withLock { table in
            if let slot = table[path]?.popLast() { imgmap_unregister_temporary(slot) }
            if table[path]?.isEmpty == true { table[path] = nil }
        }
    }

    /// Installs the signal handlers once.
    public static func installHandlers() {
        installed.withLock { done in
            guard !done else { return }
            _ = imgmap_install_cleanup_handlers()
            done = true
        }
    }
}
