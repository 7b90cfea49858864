import ArgumentParser
import ImgMapCore

/// What opens a LUKS volume, as `imgmap luks` and `imgmap probe` take it (cryptsetup's meanings).
struct LUKSSecretOptions: ParsableArguments {
    @Option(help: "A file holding the passphrase (- for stdin); one trailing newline is not part of it.")
    var passphraseFile: String?

    @Option(help: "A key file (- for stdin): every byte is the passphrase, as cryptsetup's --key-file (at most 8 MiB).")
    var keyFile: String?

    /// Whether either option was given.
    var given: Bool { passphraseFile != nil || keyFile != nil }

    func validate() throws {
        if passphraseFile != nil && keyFile != nil {
            throw ValidationError("Give exactly one of --passphrase-file and --key-file.")
        }
    }

    /// The passphrase, read once; nil when neither option was given.
    func read() throws -> SecretBytes? {
        if let keyFile { return try LUKSVolume.readSecret(path: keyFile, keyFile: true, option: "--key-file") }
        if let passphraseFile { return try LUKSVolume.readSecret(path: passphraseFile, keyFile: false, option: "--passphrase-file") }
        return nil
    }
}
