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
            RAID4/5/6/10 as `raid` (dm-raid syntax over `<md>_rimage_N` devices, `-` for a missing member). Stale members (older \
            event count) and faulty ones are left out and reported. Problems (corrupt superblocks, \
            loops, duplicate PV UUIDs, missing PVs) go to stderr and make the exit status 65; what is \
            sound is still printed.

            EXAMPLES:
              imgmap probe disk.img
              imgmap probe nas1.img nas2.img nas3.img nas4.img > layout.txt
              imgmap compose layout.txt --top vg_nas-data -o data.img
              imgmap probe --json disk.img | jq '.devices[].partition_table.partitions'
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

    func validate() throws {
        if images.isEmpty { throw ValidationError("name at least one image") }
        if let sectorSize, sectorSize != 512 && sectorSize != 4096 {
            throw ValidationError("--sector-size must be 512 or 4096")
        }
    }

    func run() throws {
        let result = try Prober(images: images, options: .init(sectorSize: sectorSize, partial: partial)).run()
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
