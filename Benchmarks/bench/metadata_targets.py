"""Targets whose mapping lives in metadata (issue 15): thin and snapshot against linear, and `map` of a
thin device with a million mappings. Inputs are made once per size, next to the others.

- thin-frag: a pool over random.img in 64 KiB blocks, one thin device mapping every virtual block to a
  data block of a random permutation (no two neighbours adjacent: a run per block). Its composition is
  random.img's blocks in that order; the row compares it with composing random.img linearly.
- snap-half: a persistent snapshot of random.img, 64 KiB chunks, every other chunk in the COW (a copy
  of the origin's chunk, so the snapshot reads as random.img); against linear.
- thin-1m: a pool of 2^20 data blocks (a sparse 64 GiB data device) and a thin device of 2^21 blocks
  mapping every other one to a shuffled data block: 2^20 mappings, 2^21 extents in the map.
"""

import random

from .model import *  # noqa: F401,F403

BLOCK_SECTORS = 128  # 64 KiB thin blocks and snapshot chunks
BLOCK = BLOCK_SECTORS * SECTOR
MILLION = 1 << 20


def thin_xml(path, nr_data_blocks, mappings):
    """thin_dump's XML for one thin device (id 1) with (virtual, data) single mappings."""
    with open(path, "w") as f:
        f.write(f'<superblock uuid="" time="0" transaction="1" flags="0" version="2" data_block_size="{BLOCK_SECTORS}" '
                f'nr_data_blocks="{nr_data_blocks}">\n')
        f.write(f'  <device dev_id="1" mapped_blocks="{len(mappings)}" transaction="0" creation_time="0" snap_time="0">\n')
        step = 65536
        for i in range(0, len(mappings), step):
            f.write("".join(f'    <single_mapping origin_block="{v}" data_block="{d}" time="0"/>\n'
                            for v, d in mappings[i:i + step]))
        f.write("  </device>\n</superblock>\n")


def restore_thin(W, name, nr_data_blocks, mappings, meta_bytes):
    meta = os.path.join(W, f"{name}.meta")
    stamp = os.path.join(W, f"{name}.ok")
    if os.path.exists(stamp) and have_size(meta, meta_bytes):
        return meta
    log(f"prepare: {name}.meta (thin_restore, {len(mappings):,} mappings)")
    xml = os.path.join(W, f"{name}.xml")
    thin_xml(xml, nr_data_blocks, mappings)
    remove(meta, stamp)
    with open(meta, "wb") as f:
        f.truncate(meta_bytes)
    sh(f"thin_restore -i {shlex.quote(xml)} -o {shlex.quote(meta)} > /dev/null")
    remove(xml)
    open(stamp, "w").close()
    return meta


def write_table(W, name, text):
    path = os.path.join(W, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def prepare_metadata_targets(I, W):
    """Adds I.thin_frag_* , I.snap_* and I.thin_1m_* (paths and tables); skips what needs missing tools."""
    I.meta_ok = shutil.which("thin_restore") is not None
    blocks = I.size // BLOCK
    # thin-frag: a permutation of the data blocks.
    rng = random.Random(15)
    perm = list(range(blocks))
    rng.shuffle(perm)
    I.thin_frag_perm = perm
    if I.meta_ok:
        meta = restore_thin(W, "thin-frag", blocks, list(enumerate(perm)), 16 * MiB)
        I.t_thin_frag_pool = write_table(W, "thin-frag-pool.table",
                                         f"0 {blocks * BLOCK_SECTORS} thin-pool {meta} {I.random} {BLOCK_SECTORS} 0\n")
        I.t_thin_frag = write_table(W, "thin-frag.table", f"0 {blocks * BLOCK_SECTORS} thin pool 1\n")
        # thin-1m
        n = MILLION
        rng = random.Random(16)
        data = list(range(n))
        rng.shuffle(data)
        meta1m = restore_thin(W, "thin-1m", n, [(2 * v, data[v]) for v in range(n)], 256 * MiB)
        big = os.path.join(W, "thin-1m-data.img")
        if not have_size(big, n * BLOCK):
            with open(big, "wb") as f:
                f.truncate(n * BLOCK)
        I.t_thin_1m_pool = write_table(W, "thin-1m-pool.table", f"0 {n * BLOCK_SECTORS} thin-pool {meta1m} {big} {BLOCK_SECTORS} 0\n")
        I.t_thin_1m = write_table(W, "thin-1m.table", f"0 {2 * n * BLOCK_SECTORS} thin pool 1\n")
        I.thin_1m_inputs = [meta1m]
    # snap-half: exceptions for every other chunk, in areas of 4096 (a 64 KiB chunk of 16-byte entries),
    # each area followed by its data chunks, then an empty area that ends the store.
    per_area = BLOCK // 16
    old = list(range(0, blocks, 2))
    areas = (len(old) + per_area - 1) // per_area
    cow_chunks = 1 + areas * (per_area + 1) + 1
    cow = os.path.join(W, "snap-half.cow")
    stamp = os.path.join(W, "snap-half.ok")
    if not (os.path.exists(stamp) and have_size(cow, cow_chunks * BLOCK)):
        log(f"prepare: snap-half.cow ({len(old):,} exceptions)")
        remove(stamp)
        with open(cow, "wb") as c, open(I.random, "rb") as o:
            c.truncate(cow_chunks * BLOCK)
            c.write(b"SnAp" + (1).to_bytes(4, "little") + (1).to_bytes(4, "little") + BLOCK_SECTORS.to_bytes(4, "little"))
            for a in range(areas):
                chunk = old[a * per_area:(a + 1) * per_area]
                area_at = 1 + a * (per_area + 1)
                entries = b"".join(ch.to_bytes(8, "little") + (area_at + 1 + j).to_bytes(8, "little")
                                   for j, ch in enumerate(chunk))
                c.seek(area_at * BLOCK)
                c.write(entries)
                for j, ch in enumerate(chunk):
                    o.seek(ch * BLOCK)
                    c.seek((area_at + 1 + j) * BLOCK)
                    c.write(o.read(BLOCK))
        open(stamp, "w").close()
    I.snap_cow = cow
    I.t_snap_half = write_table(W, "snap-half.table", f"0 {blocks * BLOCK_SECTORS} snapshot {I.random} {cow} P {BLOCK_SECTORS}\n")


def metadata_target_ops(I, W, imgmap, has):
    prepare_metadata_targets(I, W)
    Q = shlex.quote
    P = "--progress", "never"
    ops = []
    # The compose rows write 1 GiB files, whose cost on this machine's disk swings ±50 % from run to
    # run with writeback; the same rows into tmpfs (no disk) show what the targets themselves cost.
    dests = [("file", os.path.join(W, "out.img"))]
    if os.path.isdir("/dev/shm") and shutil.disk_usage("/dev/shm").free > 3 * I.size:
        dests.append(("file in tmpfs", "/dev/shm/imgmap-bench-out.img"))
    for dest, out in dests:
        def permuted_ok(_res, out=out):
            with open(out, "rb") as a, open(I.random, "rb") as b:
                for d in I.thin_frag_perm:
                    b.seek(d * BLOCK)
                    if a.read(BLOCK) != b.read(BLOCK):
                        return "the thin device's blocks are not random.img's in the mapped order"
            return None

        def same_as_random(_res, out=out):
            return None if filecmp.cmp(out, I.random, shallow=False) else "output differs from random.img"

        linear = Variant("imgmap compose (linear data device)", [imgmap, "compose", I.t_random, "-o", out, *P],
                         outputs=[out], check=same_as_random, imgmap=True)
        if I.meta_ok:
            ops.append(Op(f"thin device, fragmented (64 KiB runs) → {dest}", I.size, [I.random], [
                Variant("imgmap compose (thin, fragmented)",
                        [imgmap, "compose", I.t_thin_frag, "--table", f"pool={I.t_thin_frag_pool}", "-o", out, *P],
                        outputs=[out], check=permuted_ok, imgmap=True),
                linear,
            ], requires=["compose"]))
        ops.append(Op(f"snapshot, 50 % of chunks in the COW → {dest}", I.size, [I.random, I.snap_cow], [
            Variant("imgmap compose (snapshot, half COW)", [imgmap, "compose", I.t_snap_half, "-o", out, *P],
                    outputs=[out], check=same_as_random, imgmap=True),
            Variant("imgmap compose (linear origin)", [imgmap, "compose", I.t_random, "-o", out, *P],
                    outputs=[out], imgmap=True),
        ], requires=["compose"]))
    if I.meta_ok:
        ops.append(Op(f"map of a thin device with {MILLION:,} mappings", 0, I.thin_1m_inputs, [
            Variant("imgmap map (thin) > /dev/null",
                    f"{Q(imgmap)} map {Q(I.t_thin_1m)} --table pool={Q(I.t_thin_1m_pool)} > /dev/null", shell=True,
                    imgmap=True, note=f"{MILLION:,} mappings, {2 * MILLION:,} extents"),
        ], requires=["map"]))
    return ops


def metadata_target_goals(find, med, ratio, out):
    """The issue's goals, appended to the target summary."""
    for dest in ("file", "file in tmpfs"):
        thin, snap = f"thin device, fragmented (64 KiB runs) → {dest}", f"snapshot, 50 % of chunks in the COW → {dest}"
        where = "" if dest == "file" else ", into tmpfs"
        ratio(f"thin fragmented compose vs linear compose of the data device{where}",
              find(thin, "imgmap compose (thin"), find(thin, "imgmap compose (linear"), 0.8)
        ratio(f"snapshot 50 % COW compose vs linear compose of the origin{where}",
              find(snap, "imgmap compose (snapshot"), find(snap, "imgmap compose (linear"), 0.8)
    m = find("map of a thin device", "imgmap map")
    if m:
        t = med(m)
        out.append(f"- map of a thin device with {MILLION:,} mappings: {t:.2f} s (target < 2 s) — {'met' if t < 2 else 'MISSED'}; "
                   f"peak RSS {max(m.rss) / 1024:.0f} MiB")
    else:
        out.append("- map of a thin device with 1M mappings: not measured")
