import Foundation

/// Bounds on sizes a user gives, so that a typo is a clear usage error, not an allocation that aborts.
public enum Limits {
    /// Worker threads: 4 per active core, at least 16. Each compress thread keeps 4 blocks of 64 KiB
    /// in flight (and each inflate thread one), so the bound also bounds memory.
    public static var maximumThreads: Int { max(16, 4 * ProcessInfo.processInfo.activeProcessorCount) }

    /// Checks a `--threads` value; `option` names it in the message.
    public static func checkThreads(_ threads: Int, option: String = "--threads") throws(PlainFailure) {
        if threads < 1 { throw PlainFailure("\(option) \(threads): give at least 1", .usage) }
        if threads > maximumThreads {
            throw PlainFailure(
                "\(option) \(threads): at most \(maximumThreads) on this machine (4 per core, \(ProcessInfo.processInfo.activeProcessorCount) cores)",
                .usage)
        }
    }

}
