#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How long work reports its progress on stderr.
public enum ProgressMode: String, Sendable, CaseIterable {
    /// A one-line display when stderr is a terminal; nothing in a pipe or file.
    case auto
    case never
    /// `{"done":N,"total":N}` lines (bytes), for scripts.
    case json
}

/// Reports bytes done out of a total, at most four times a second, on fd 2.
public final class Progress {
    let mode: ProgressMode
    let total: UInt64
    let label: String
    let startTime: Double
    var lastReport: Double = 0
    var lastDone: UInt64?
    var shown = false

    /// nil when `mode` shows nothing here (auto without a terminal, never).
    public init?(mode: ProgressMode, total: UInt64, label: String) {
        if mode == .never || (mode == .auto && isatty(2) == 0) { return nil }
        self.mode = mode
        self.total = total
        self.label = label
        self.startTime = Self.now()
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Called often by the engines; reports only when 0.25 s have passed.
    public func update(_ done: UInt64) {
        let t = Self.now()
        guard t - lastReport >= 0.25 else { return }
        lastReport = t
        report(done, elapsed: t - startTime)
    }

    /// The final report: the line is completed (terminal) or a last JSON line written.
    public func finish(_ done: UInt64) {
        if lastDone != done { report(done, elapsed: Self.now() - startTime) }
        if mode == .auto && shown { writeStderr("\n") }
    }

    func report(_ done: UInt64, elapsed: Double) {
        lastDone = done
        switch mode {
        case .json:
            writeStderr("{\"done\":\(done),\"total\":\(total)}\n")
        case .auto:
            let percent = total == 0 ? 100 : Int(Double(done) * 100 / Double(total))
            let rate = elapsed > 0 ? Double(done) / elapsed : 0
            writeStderr("\r\(label): \(formatBytes(done)) of \(formatBytes(total)) (\(percent)%), \(formatBytes(UInt64(rate)))/s   ")
            shown = true
        case .never:
            break
        }
    }
}

/// `1.5 GiB`, `512 B`.
public func formatBytes(_ n: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    var value = Double(n)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    if unit == 0 { return "\(n) B" }
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(tenths % 10) \(units[unit])"
}

/// Writes text to standard error (fd 2) directly: the C `stderr` global is not concurrency-safe.
public func writeStderr(_ text: String) {
    var text = text
    text.withUTF8 { bytes in
        var done = 0
        while done < bytes.count {
            let n = write(2, bytes.baseAddress! + done, bytes.count - done)
            if n <= 0 { if errno == EINTR { continue } else { return } }
            done += n
        }
    }
}
