import ArgumentParser
import ImgMapCore

struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Read the partition tables, md superblocks, LVM metadata and LUKS headers on images and print their tables.",
        discussion: """
            Prints a `dmsetup table` dump (`NAME: start length target args`, lower devices first) of what \
            kpartx, `mdadm --assemble` and `vgchange -ay` would load: partitions as `<disk>p<N>` (the \
            image's file name without its extension), md arrays by their name (or md<N>), LVs as \
            `<vg>-<lv>` with dashes doubled. Its disks are the image paths as given, so the dump is a \
            table every command takes. Images are opened read-only and only their metadata is read. \
            RAID1 arrays map as `linear` over their first in-sync member, RAID0 as `striped`, \
            RAID4/5/6 as `raid` (dm-raid syntax over `<md>_rimage_N` devices, `-` for a missing \
            member); RAID6 in md's own layouts (mdadm's default among them) and RAID10, which dm-raid \
            cannot present for an md array, as imgmap's own `mdraid` line. Stale members (older event \
            count) and faulty ones are left out and reported. LVs are the lines lvm 2.03 loads: \
            linear, striped, mirror, raid, thin pools and thin LVs (thin snapshots, external origins), \
            snapshots (of thin LVs too), caches over a cache pool or a cachevol; an LV of another \
            segment type (writecache, vdo) is reported as not mapped. Every LV is read through \
            imgmap's own targets (thin, cache, snapshot, raid, mirror as compose reads them), so \
            partitions, VGs and LUKS inside are found too (`<dm name>p<N>`, kpartx's names); an LV \
            whose table the targets refuse (corrupt pool metadata) is still printed, with a note. \
            Problems (corrupt superblocks, loops, duplicate PV UUIDs, missing PVs) go to stderr and \
            make the exit status 65; what is sound is still printed.

            LUKS headers are reported; with --passphrase-file or --key-file each LUKS volume found (on \
            an image, a partition, an LV) that the secret opens becomes the crypt line `imgmap luks` \
            prints for it, named `luks-<UUID>` as systemd-cryptsetup and udisks name it, and what it \
            holds is probed in turn (its lines follow the crypt line). The key is zeros, as `dmsetup \
            table` shows it, unless --show-keys: a dump to compose in one step needs --show-keys (the \
            file then holds the volume key: keep it private), or give compose the raw volume key with \
            `--key luks-<UUID>=FILE`. A volume the secret does not open is a problem (exit 65) and is \
            still reported.

            EXAMPLES:
              imgmap probe disk.img
              imgmap probe nas1.img nas2.img nas3.img nas4.img > layout.txt
              imgmap compose layout.txt --top vg_nas-data -o data.img
              imgmap probe --json disk.img | jq '.devices[].partition_table.partitions'
              imgmap probe laptop.img --passphrase-file pw --show-keys > layout.txt
              imgmap compose layout.txt --top vg-root -o root.img
            """)

    @Argument(help: "The images (or block devices) to read.")
    var images: [String]

    @Option(name: .shortAndLong, help: ArgumentHelp("Write the dump (or the JSON) to FILE instead of stdout.", valueName: "FILE"))
    var output: String?

    @Flag(help: "Report everything found as JSON: partitions, md members and arrays, VGs and LVs, LUKS headers, the tables.")
    var json = false

    @Option(help: ArgumentHelp("Logical sector size of the disks: 512 or 4096 (default: 512, or 4096 where a GPT is found there).", valueName: "BYTES"))
    var sectorSize: Int?

    @Flag(help: "Activate volume groups with missing PVs too, their areas on those PVs as error segments (lvm --activationmode partial).")
    var partial = false

    @OptionGroup var secret: LUKSSecretOptions

    @Flag(help: "Print the volume keys in the crypt lines and the JSON (as `dmsetup table --showkeys`), so the dump composes as it is.")
    var showKeys = false

    func validate() throws {
        if images.isEmpty { throw ValidationError("name at least one image") }
        if showKeys && !secret.given { throw ValidationError("--show-keys needs --passphrase-file or --key-file") }
        if let sectorSize, sectorSize != 512 && sectorSize != 4096 {
            throw ValidationError("--sector-size must be 512 or 4096")
        }
    }

    func run() throws {
        let options = Prober.Options(sectorSize: sectorSize, partial: partial, passphrase: try secret.read(), showKeys: showKeys)
        let result = try Prober(images: images, options: options).run()
        let text = json ? result.report.text(pretty: true) + "\n" : result.dump
        let out = try OutputFile(path: output ?? "-", inputs: result.images)
        try Array(text.utf8).withUnsafeBytes { try out.file.append($0) }
        try out.commit()
        for note in result.notes { writeStderr("imgmap: probe: note: \(note)\n") }
        for problem in result.problems { writeStderr("imgmap: probe: \(problem)\n") }
        if result.recognised == 0 && result.problems.isEmpty {
            writeStderr("imgmap: probe: nothing found (no partition table, md superblock, LVM label or LUKS header)\n")
        }
        if !result.problems.isEmpty { throw ExitCode(ExitStatus.dataError.rawValue) }
    }
}
