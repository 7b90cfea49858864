import ArgumentParser
import ImgMapCore

struct LuksCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "luks",
        abstract: "Open a LUKS1 or LUKS2 image with its passphrase; print the crypt table line cryptsetup would load.",
        discussion: """
            Reads the LUKS header (LUKS2: both copies, checksummed; a bad copy is reported and the other \
            used), derives the keyslot key (PBKDF2, argon2i, argon2id), merges the anti-forensic stripes and \
            checks the volume key against the header's digest. Prints one dmsetup table line over IMAGE, the \
            key as zeros unless --show-keys. Exit 0 when unlocked, 77 when no keyslot opens with the \
            passphrase, 65 for a corrupt or unsupported header, 66 for unreadable files.

            EXAMPLES:
              imgmap luks disk.img --passphrase-file pw
              imgmap luks disk.img --passphrase-file pw --show-keys | imgmap compose - -o plain.img
              imgmap luks disk.img --key-file keyfile --json
            """)

    @Argument(help: "The LUKS image (or block device).")
    var image: String

    @OptionGroup var secret: LUKSSecretOptions

    @Flag(help: "Print the volume key in the table line (as `dmsetup table --showkeys`).")
    var showKeys = false

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func validate() throws {
        guard secret.given else {
            throw ValidationError("Give exactly one of --passphrase-file and --key-file.")
        }
    }

    func run() throws {
        guard let passphrase = try secret.read() else { preconditionFailure("validate() requires a secret") }
        let file = try ImageFile(openForReading: image)
        let volume = try LUKSVolume.load(image: file)
        for warning in volume.warnings { writeStderr("imgmap: warning: \(warning)\n") }
        let (key, slot) = try volume.unlock(image: file, passphrase: passphrase)
        let line = try volume.tableLine(device: image, deviceSectors: try file.byteSize() / 512, key: key, showKey: showKeys)
        if json {
            print("{\"version\":\(volume.version),\"keyslot\":\(jsonString(slot)),\"cipher\":\(jsonString(volume.cipher)),"
                + "\"key_bytes\":\(key.count),\"offset\":\(volume.offset),\"sector_size\":\(volume.sectorSize),"
                + "\"table\":\(jsonString(line))}")
        } else {
            print(line)
        }
    }
}
