#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How long work reports its progress on stderr.
public enum ProgressMode: String, Sendable, CaseIterable {
    /// A one-line display when stderr is a terminal; nothing in a pipe or file.
    case auto
    /// No progress display.
    case never
    /// `{"done":N,"total":N,"elapsed":S,"rate":N,"command":"compose"}` lines (bytes, seconds, bytes per
    /// second; total null when unknown), for scripts.
    case json
}

/// Reports bytes done out of a total, at most four times a second, on fd 2: the one progress display
/// every long command shares (a command makes one and hands it to its engine, which calls `update`
/// as bytes go by and `finish` at the end).
public final class Progress {
    let mode: ProgressMode
    /// nil when the size is not known in advance (input from a pipe).
    let total: UInt64?
    let label: String
    let startTime: Double
    var lastReport: Double = 0
    var lastDone: UInt64?
    var shown = false

    /// nil when `mode` shows nothing here (auto without a terminal, never).
    public init?(mode: ProgressMode, total: UInt64?, label: String) {
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
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        switch mode {
        case .json:
            let seconds = (elapsed * 1000).rounded() / 1000
            writeStderr("{\"done\":\(done),\"total\":\(total.map(String.init) ?? "null"),"
                + "\"elapsed\":\(seconds),\"rate\":\(UInt64(rate)),\"command\":\"\(label)\"}\n")
        case .auto:
            var line = "\r\(label): \(formatBytes(done))"
            if let total {
                let percent = total == 0 ? 100 : Int(Double(done) * 100 / Double(total))
                line += " of \(formatBytes(total)) (\(percent)%)"
            }
            line += ", \(formatBytes(UInt64(rate)))/s, \(formatDuration(elapsed)) elapsed"
            if let total, rate > 0, done < total {
                line += ", \(formatDuration(Double(total - done) / rate)) left"
            }
            // Trailing spaces cover what a longer previous line left on the terminal.
            writeStderr(line + "      ")
            shown = true
        case .never:
            break
        }
    }
}

/// `0:07`, `12:03`, `1:02:03`.
public func formatDuration(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    let (h, m, r) = (s / 3600, (s / 60) % 60, s % 60)
    let two = { (n: Int) in n < 10 ? "0\(n)" : "\(n)" }
    return h > 0 ? "\(h):\(two(m)):\(two(r))" : "\(m):\(two(r))"
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
    // A file name's non-UTF-8 bytes are written as those bytes (PathBytes), as `ls` would show them.
    let raw = PathBytes.hasRawBytes(text) ? PathBytes.bytes(text) : Array(text.utf8)
    raw.withUnsafeBufferPointer { bytes in
        var done = 0
        while done < bytes.count {
            let n = write(2, bytes.baseAddress! + done, bytes.count - done)
            if n <= 0 { if errno == EINTR { continue } else { return } }
            done += n
        }
    }
}
