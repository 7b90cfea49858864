"""Parity RAID (issue 14): RAID5 over 4 members (raid5_ls) and RAID6 over 5 (raid6_zr), each holding the
whole rows of random.img in 3 data members with 64 KiB chunks, against a striped compose of the same
data chunks (m0–m2, the striped rows only); then one member missing (rebuilt by XOR, or by P for raid6)
and raid6 with two missing (P and Q). The members are made once per size by `imgmap scatter` of
random.img's rows through the healthy tables; every output is checked against those rows.
"""

from .model import *  # noqa: F401,F403

CHUNK = 128  # sectors: 64 KiB, as the striped members


def write_table(W, name, text):
    path = os.path.join(W, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def raid_table(sectors, kind, names):
    return f"0 {sectors} raid {kind} 1 {CHUNK} {len(names)}" + "".join(f" - {n}" for n in names) + "\n"


def prepare_raid(I, W, imgmap):
    """Adds I.raid_rows (a file of random.img's striped rows), I.raid[name] = (members, tables)."""
    rows = I.striped_len  # whole 3×64 KiB rows: the same data chunks as m0–m2's striped segment
    member = I.member_area
    I.raid_rows_sectors = rows
    I.t_striped_rows = write_table(W, "striped-rows.table", f"0 {rows} striped 3 {CHUNK} "
                                   + " ".join(f"{m} 0" for m in I.members) + "\n")
    # The rows as one file: random.img itself when the size is whole rows, else its first `rows` sectors.
    if rows == I.sectors:
        I.raid_rows = I.random
    else:
        I.raid_rows = os.path.join(W, "raid-rows.img")
        if not have_size(I.raid_rows, rows * SECTOR):
            with open(I.random, "rb") as src, open(I.raid_rows, "wb") as dst:
                left = rows * SECTOR
                while left:
                    b = src.read(min(left, 64 * MiB))
                    dst.write(b)
                    left -= len(b)
    I.raid = {}
    for name, kind, n in (("r5", "raid5_ls", 4), ("r6", "raid6_zr", 5)):
        members = [os.path.join(W, f"{name}m{k}.img") for k in range(n)]
        healthy = write_table(W, f"{name}.table", raid_table(rows, kind, members))
        stamp = os.path.join(W, f"{name}.ok")
        if not (os.path.exists(stamp) and all(have_size(m, member * SECTOR) for m in members)):
            log(f"prepare: {name} members ({kind} over {n}, imgmap scatter)")
            remove(stamp, *members)
            for m in members:
                with open(m, "wb") as f:
                    f.truncate(member * SECTOR)
            sh(f"{shlex.quote(imgmap)} scatter {shlex.quote(healthy)} {shlex.quote(I.raid_rows)} --progress never > /dev/null")
            open(stamp, "w").close()
        tables = {"healthy": healthy,
                  "1missing": write_table(W, f"{name}-1missing.table",
                                          raid_table(rows, kind, ["-" if k == 1 else m for k, m in enumerate(members)]))}
        if n == 5:
            tables["2missing"] = write_table(W, f"{name}-2missing.table",
                                             raid_table(rows, kind, ["-" if k in (1, 3) else m for k, m in enumerate(members)]))
        I.raid[name] = (members, tables)


def raid_target_ops(I, W, imgmap, has):
    if "compose" not in has or "scatter" not in has:
        return []
    prepare_raid(I, W, imgmap)
    P = "--progress", "never"
    out = os.path.join(W, "out.img")
    nbytes = I.raid_rows_sectors * SECTOR

    def same_as_rows(_res):
        return None if filecmp.cmp(out, I.raid_rows, shallow=False) else "output differs from the data scattered"

    def striped():
        return Variant("imgmap compose (striped 3×64K)", [imgmap, "compose", I.t_striped_rows, "-o", out, *P],
                       outputs=[out], check=same_as_rows, imgmap=True)

    ops = []
    for name, label, n in (("r5", "RAID5 over 4", 4), ("r6", "RAID6 over 5", 5)):
        members, tables = I.raid[name]
        variants = [striped()]
        for state, text in (("healthy", "healthy"), ("1missing", "one member missing"), ("2missing", "two members missing")):
            if state in tables:
                variants.append(Variant(f"imgmap compose ({name} {text})", [imgmap, "compose", tables[state], "-o", out, *P],
                                        outputs=[out], check=same_as_rows, imgmap=True))
        ops.append(Op(f"{label} (3 data members, 64 KiB chunks) → file", nbytes, members + I.members, variants,
                      requires=["compose"]))
    return ops


def raid_target_goals(find, med, ratio, out):
    for op, name in (("RAID5 over 4", "r5"), ("RAID6 over 5", "r6")):
        striped = find(op, "imgmap compose (striped")
        healthy = find(op, f"imgmap compose ({name} healthy")
        ratio(f"{op} healthy compose vs striped compose of the same chunks", healthy, striped, 0.9)
        ratio(f"{op} one member missing vs healthy", find(op, f"imgmap compose ({name} one member"), healthy, 0.6)
    two, healthy = find("RAID6 over 5", "imgmap compose (r6 two"), find("RAID6 over 5", "imgmap compose (r6 healthy")
    if two and healthy:
        out.append(f"- RAID6 over 5, two members missing: {med(healthy) / med(two):.2f}× healthy (reported, no goal)")
