import CCrypto

/// One running SHA digest, computed by libcrypto's EVP (SHA-NI where the CPU has it): the same library
/// that does crypt's AES and LUKS's PBKDF2, so imgmap links one cryptographic library, not two.
/// A reference type because the EVP context is one; not thread-safe: one per thread.
package final class MessageDigest {
    package enum Algorithm: Sendable {
        case sha1, sha256, sha512

        var md: OpaquePointer {
            switch self {
            case .sha1: EVP_sha1()
            case .sha256: EVP_sha256()
            case .sha512: EVP_sha512()
            }
        }
    }

    private let ctx: OpaquePointer

    /// A new digest. libcrypto fails here only without memory or without its default provider (a
    /// broken installation), where nothing imgmap does could go on.
    package init(_ algorithm: Algorithm) {
        guard let ctx = EVP_MD_CTX_new() else { fatalError("libcrypto: EVP_MD_CTX_new failed (out of memory)") }
        guard EVP_DigestInit_ex(ctx, algorithm.md, nil) == 1 else {
            fatalError("libcrypto cannot compute \(algorithm) (is OpenSSL's default provider installed?)")
        }
        self.ctx = ctx
    }

    deinit { EVP_MD_CTX_free(ctx) }

    package func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        // EVP_DigestUpdate fails only on a context that was never initialised.
        _ = EVP_DigestUpdate(ctx, base, bytes.count)
    }

    /// The digest of everything updated so far. Call once: the context is finished after it.
    package func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        _ = out.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(ctx, $0.baseAddress, &length) }
        out.removeSubrange(Int(length)...)
        return out
    }

    /// The digest of `bytes` in one call.
    package static func hash(_ algorithm: Algorithm, _ bytes: [UInt8]) -> [UInt8] {
        let digest = MessageDigest(algorithm)
        bytes.withUnsafeBytes { digest.update($0) }
        return digest.finalize()
    }
}
