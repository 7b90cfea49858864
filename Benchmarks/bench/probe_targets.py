"""probe over multi-terabyte member images (issue 16): the four NAS disks of Samples/nas (GPT, md RAID5,
LVM), each grown to a sparse 4 TiB file. probe must finish well under a second and read only metadata;
the row reports the bytes it read (its --json `bytes_read`). The peer is util-linux's low-level probe
(`blkid -p`) of the same four files, which only names what is on each.
"""

import gzip
import json

from .model import *  # noqa: F401,F403

DISK_BYTES = 4 << 40
SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Samples", "nas")
read_by_probe = {}


def prepare_probe_disks(W):
    """The NAS disks, unpacked and grown to 4 TiB (holes); None when the sample is missing."""
    disks = [os.path.join(W, f"probe-nas{n}.img") for n in range(1, 5)]
    stamp = os.path.join(W, "probe-nas.ok")
    if os.path.exists(stamp) and all(have_size(d, DISK_BYTES) for d in disks):
        return disks
    sources = [os.path.join(SAMPLE, f"nas{n}.img.gz") for n in range(1, 5)]
    if not all(os.path.exists(s) for s in sources):
        return None
    log("prepare: probe-nas1..4.img (Samples/nas, grown to 4 TiB sparse)")
    for src, disk in zip(sources, disks):
        with gzip.open(src, "rb") as i, open(disk, "wb") as o:
            shutil.copyfileobj(i, o)
            o.truncate(DISK_BYTES)
    open(stamp, "w").close()
    return disks


def probe_target_ops(I, W, imgmap, has):
    disks = prepare_probe_disks(W)
    if not disks:
        return []
    Q = shlex.quote
    report = os.path.join(W, "probe.json")
    names = " ".join(Q(d) for d in disks)

    def read_metadata_only(_res):
        with open(report) as f:
            data = json.load(f)
        read_by_probe["bytes"] = data["bytes_read"]
        if "vg_nas-data" not in json.dumps(data):
            return "probe did not find the NAS's logical volume"
        return None

    # No inputs to warm: reading 16 TiB of holes is what the row shows probe does not do.
    return [Op("probe of four 4 TiB NAS disks (GPT, md RAID5, LVM)", 0, [], [
        Variant("imgmap probe --json", f"{Q(imgmap)} probe --json {names} > {Q(report)}", shell=True,
                outputs=[report], check=read_metadata_only, imgmap=True),
        Variant("blkid -p (each disk)", f"for d in {names}; do blkid -p -o export \"$d\"; done > /dev/null", shell=True,
                needs=["blkid"]),
    ], requires=["probe"])]


def probe_target_goals(find, med, out):
    p = find("probe of four 4 TiB", "imgmap probe")
    if not p:
        out.append("- probe of four 4 TiB disks: not measured")
        return
    t, n = med(p), read_by_probe.get("bytes")
    ok = t < 0.5 and n is not None and n < 1 << 20
    out.append(f"- probe of four 4 TiB NAS disks: {t:.3f} s (target well under 1 s: < 0.5 s), "
               f"{n if n is not None else '?':,} bytes read of 16 TiB (target: metadata only, < 1 MiB) — "
               f"{'met' if ok else 'MISSED'}")
