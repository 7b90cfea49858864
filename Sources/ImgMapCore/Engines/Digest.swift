/// The hashes `compose --digest` computes while it writes (libcrypto's SHA-NI path).
public enum DigestAlgorithm: String, Sendable, CaseIterable {
    /// SHA-256 (`sha256sum`'s digest).
    case sha256
    /// SHA-512 (`sha512sum`'s digest).
    case sha512

    /// A new incremental hash of this algorithm.
    public func hasher() -> Hasher { Hasher(algorithm: self) }

    /// An incremental hash of one algorithm.
    public struct Hasher {
        let digest: MessageDigest

        init(algorithm: DigestAlgorithm) {
            switch algorithm {
            case .sha256: digest = MessageDigest(.sha256)
            case .sha512: digest = MessageDigest(.sha512)
            }
        }

        /// Adds `bytes` to the hash.
        public mutating func update(_ bytes: UnsafeRawBufferPointer) { digest.update(bytes) }

        /// The digest as lowercase hex, as sha256sum prints it. Call once.
        public func finalize() -> String { hex(digest.finalize()) }

        func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
            let digits = Array("0123456789abcdef".utf8)
            var out: [UInt8] = []
            for byte in digest {
                out.append(digits[Int(byte >> 4)])
                out.append(digits[Int(byte & 0xf)])
            }
            return String(decoding: out, as: UTF8.self)
        }
    }
}

import Dispatch

/// Hashes buffers on a second thread while the caller reads and writes the next one: the digest costs
/// no time of its own as long as hashing (1.7 GB/s) keeps up with the copy. Buffers are handed over by
/// index into a ring; a buffer is refilled only after its hash is done.
final class BackgroundHasher: @unchecked Sendable {
    /// Touched only on `queue` until `finalize()`.
    private var hasher: DigestAlgorithm.Hasher
    private let queue = DispatchQueue(label: "imgmap.digest")
    private let ready: [DispatchSemaphore]

    init(algorithm: DigestAlgorithm, ringSize: Int) {
        hasher = algorithm.hasher()
        ready = (0..<ringSize).map { _ in DispatchSemaphore(value: 1) }
    }

    /// Waits until ring slot `slot` may be overwritten (its previous bytes are hashed).
    func waitUntilFree(_ slot: Int) {
        ready[slot].wait()
    }

    /// Gives back a slot taken with `waitUntilFree` but not handed to `update`.
    func release(_ slot: Int) {
        ready[slot].signal()
    }

    /// Hashes `bytes` (ring slot `slot`) in the background; the caller must not change them until
    /// `waitUntilFree(slot)` returns.
    func update(_ bytes: UnsafeRawBufferPointer, slot: Int) {
        nonisolated(unsafe) let bytes = bytes
        queue.async {
            self.hasher.update(bytes)
            self.ready[slot].signal()
        }
    }

    /// Waits until no slot is being hashed. Each semaphore ends at its initial value, as libdispatch
    /// requires of a semaphore when it is freed.
    func drain() {
        for semaphore in ready {
            semaphore.wait()
            semaphore.signal()
        }
    }

    /// Waits for every pending update and returns the hex digest.
    func finalize() -> String {
        queue.sync { hasher.finalize() }
    }
}
