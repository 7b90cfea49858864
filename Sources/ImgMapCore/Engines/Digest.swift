import Crypto

/// The hashes `compose --digest` computes while it writes (swift-crypto: BoringSSL's SHA-NI path).
public enum DigestAlgorithm: String, Sendable, CaseIterable {
    case sha256, sha512

    public func hasher() -> Hasher { Hasher(algorithm: self) }

    /// An incremental hash of one algorithm.
    public struct Hasher {
        enum State {
            case sha256(SHA256)
            case sha512(SHA512)
        }

        var state: State

        init(algorithm: DigestAlgorithm) {
            switch algorithm {
            case .sha256: state = .sha256(SHA256())
            case .sha512: state = .sha512(SHA512())
            }
        }

        public mutating func update(_ bytes: UnsafeRawBufferPointer) {
            switch state {
            case .sha256(var h):
                h.update(bufferPointer: bytes)
                state = .sha256(h)
            case .sha512(var h):
                h.update(bufferPointer: bytes)
                state = .sha512(h)
            }
        }

        /// The digest as lowercase hex, as sha256sum prints it.
        public func finalize() -> String {
            switch state {
            case .sha256(let h): hex(h.finalize())
            case .sha512(let h): hex(h.finalize())
            }
        }

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
