import CCrypto

/// Key material: a heap buffer that is wiped (OPENSSL_cleanse, which the compiler cannot drop) when
/// the last reference goes. Swift arrays may be copied and moved without a trace, so keys live here
/// from the moment they are decoded or derived; `description` never shows the bytes.
public final class SecretBytes: @unchecked Sendable, CustomStringConvertible {
    // Written only while the value is being built (init, `withMutableBytes` by its creator); read-only
    // afterwards, which is what makes the unchecked Sendable sound.
    private let storage: UnsafeMutableRawBufferPointer

    /// `count` zero bytes, to be filled through `withMutableBytes`.
    public init(count: Int) {
        storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0)
        self.count = count
    }

    /// Copies `bytes`; the caller should wipe its own copy (`SecretBytes.wipe`).
    public convenience init<C: Collection>(copying bytes: C) where C.Element == UInt8 {
        self.init(count: bytes.count)
        var index = 0
        for byte in bytes {
            storage[index] = byte
            index += 1
        }
    }

    /// The secret's length in bytes.
    public let count: Int

    deinit {
        OPENSSL_cleanse(storage.baseAddress, storage.count)
        storage.deallocate()
    }

    /// Calls `body` with the bytes; do not let the pointer escape.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(rebasing: storage[0..<count]))
    }

    /// Calls `body` with the bytes to fill or change; do not let the pointer escape.
    public func withMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeMutableRawBufferPointer(rebasing: storage[0..<count]))
    }

    /// A new secret holding bytes `range` of this one.
    public func slice(_ range: Range<Int>) -> SecretBytes {
        let part = SecretBytes(count: range.count)
        part.storage.copyMemory(from: UnsafeRawBufferPointer(rebasing: storage[range]))
        return part
    }

    /// Lower-case hex, for `--show-keys` only.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        for i in 0..<count {
            out.append(digits[Int(storage[i] >> 4)])
            out.append(digits[Int(storage[i] & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether both secrets hold the same bytes, compared in constant time.
    public func equals(_ other: SecretBytes) -> Bool {
        guard count == other.count else { return false }
        return CRYPTO_memcmp(storage.baseAddress, other.storage.baseAddress, count) == 0
    }

    public var description: String { "<\(count)-byte secret>" }

    /// Wipes an array that held key material (as far as Swift lets: copies made earlier are not reached).
    public static func wipe(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) }
    }
}
