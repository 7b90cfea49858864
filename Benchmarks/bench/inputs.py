"""The input images and tables."""

from .running import *  # noqa: F401,F403


class Inputs:
    pass


def write_random(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MiB)
            f.write(os.urandom(n))
            left -= n


def copy_prefix(src, dst, n, tail_zeros=0, total=None):
    with open(src, "rb") as s, open(dst, "wb") as d:
        left = n
        while left:
            b = s.read(min(left, 8 * MiB))
            d.write(b)
            left -= len(b)
        z = bytes(8 * MiB)
        left = tail_zeros
        while left:
            k = min(left, len(z))
            d.write(z[:k])
            left -= k
        if total is not None:
            d.truncate(total)


def have_size(path, size):
    try:
        return os.stat(path).st_size == size
    except FileNotFoundError:
        return False


def stage_usr(stage, budget, max_files):
    """Copy regular files from /usr (sorted walk, so the same files every time) up to budget bytes."""
    if os.path.isdir(stage):
        shutil.rmtree(stage)
    os.makedirs(stage)
    total = files = 0
    for root, dirs, names in os.walk("/usr"):
        dirs.sort()
        for name in sorted(names):
            src = os.path.join(root, name)
            try:
                st = os.lstat(src)
            except OSError:
                continue
            if not (st.st_mode & 0o170000 == 0o100000) or st.st_size > 32 * MiB:
                continue
            if total + st.st_size > budget or files >= max_files:
                return total, files
            dst = os.path.join(stage, os.path.relpath(src, "/usr"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            try:
                shutil.copyfile(src, dst)
            except OSError:
                continue
            total += st.st_size
            files += 1
    return total, files


def ext4_fill(path):
    out = subprocess.run(["dumpe2fs", "-h", path], capture_output=True, text=True).stdout
    f = dict(re.findall(r"^([A-Za-z ]+):\s+(\S+)", out, re.M))
    blocks, free = int(f["Block count"]), int(f["Free blocks"])
    return (blocks - free) / blocks


def prepare(size, d, imgmap):
    os.makedirs(d, exist_ok=True)
    I = Inputs()
    I.size = size
    I.sectors = size // SECTOR
    half = size // 2
    p = lambda n: os.path.join(d, n)
    I.random, I.hz_dense, I.hz_sparse, I.fs = p("random.img"), p("halfzero-dense.img"), p("halfzero-sparse.img"), p("fs.img")

    if not have_size(I.random, size):
        log(f"prepare: random.img ({human(size)})")
        remove(I.hz_dense, I.hz_sparse, p("m0.img"))
        write_random(I.random, size)
    if not have_size(I.hz_dense, size):
        log("prepare: halfzero-dense.img")
        copy_prefix(I.random, I.hz_dense, half, tail_zeros=size - half)
    if not have_size(I.hz_sparse, size):
        log("prepare: halfzero-sparse.img")
        copy_prefix(I.random, I.hz_sparse, half, total=size)

    if not have_size(I.fs, size) and shutil.which("mkfs.ext4"):
        stage = p("stage")
        # ~62 % of the size in file data; ext4 metadata and the journal bring it to ~65-70 %.
        log("prepare: staging files from /usr for fs.img")
        total, files = stage_usr(stage, int(size * 0.62), size // 16384 // 2)
        log(f"prepare: fs.img: mkfs.ext4 -d with {files} files, {mib(total)}")
        tmp = I.fs + ".tmp"
        remove(tmp)
        with open(tmp, "wb") as f:
            f.truncate(size)
        env = dict(os.environ, E2FSPROGS_FAKE_TIME="1700000000", SOURCE_DATE_EPOCH="1700000000")
        sh(["mkfs.ext4", "-q", "-F", "-L", "benchfs", "-U", "6d6d6d6d-0000-4000-8000-000000000001",
            "-E", "hash_seed=6d6d6d6d-0000-4000-8000-000000000002,root_owner=0:0", "-d", stage, tmp],
           env=env)
        os.rename(tmp, I.fs)
        shutil.rmtree(stage)
    I.fs_fill = ext4_fill(I.fs) if os.path.exists(I.fs) else None

    # 3-way striped set: the largest multiple of 3 x 64 KiB of random.img is striped; a tail
    # (when the size is not such a multiple) follows on m0 through a second, linear, line.
    row = STRIPES * CHUNK_SECTORS
    I.striped_len = I.sectors // row * row
    I.tail = I.sectors - I.striped_len
    I.member_area = I.striped_len // STRIPES  # sectors per member in the striped segment
    I.members = [p(f"m{i}.img") for i in range(STRIPES)]
    I.member_sizes = [(I.member_area + (I.tail if i == 0 else 0)) * SECTOR for i in range(STRIPES)]
    I.tables = {}
    if not all(have_size(m, s) for m, s in zip(I.members, I.member_sizes)):
        log("prepare: striped members m0..m2")
        chunk = CHUNK_SECTORS * SECTOR
        outs = [open(m, "wb") for m in I.members]
        with open(I.random, "rb") as src:
            left = I.striped_len * SECTOR
            while left:
                blk = src.read(min(left, 64 * STRIPES * chunk))
                mv = memoryview(blk)
                for k in range(len(blk) // chunk):
                    outs[k % STRIPES].write(mv[k * chunk:(k + 1) * chunk])
                left -= len(blk)
            outs[0].write(src.read())
        for o in outs:
            o.close()
        I.check_striped = True
    else:
        I.check_striped = False

    def table(name, text):
        path = p(name)
        with open(path, "w") as f:
            f.write(text)
        I.tables[name] = path
        return path

    S = I.sectors
    I.t_random = table("random.table", f"0 {S} linear {I.random} 0\n")
    I.t_hz_dense = table("halfzero-dense.table", f"0 {S} linear {I.hz_dense} 0\n")
    I.t_hz_sparse = table("halfzero-sparse.table", f"0 {S} linear {I.hz_sparse} 0\n")
    I.t_hz_sparse_zero = table("halfzero-sparse-zero.table",
                               f"0 {S // 2} linear {I.hz_sparse} 0\n{S // 2} {S - S // 2} zero\n")
    I.t_fs = table("fs.table", f"0 {S} linear {I.fs} 0\n")

    def striped_table(members):
        t = f"0 {I.striped_len} striped {STRIPES} {CHUNK_SECTORS} " + " ".join(f"{m} 0" for m in members) + "\n"
        if I.tail:
            t += f"{I.striped_len} {I.tail} linear {members[0]} {I.member_area}\n"
        return t

    I.t_striped = table("striped.table", striped_table(I.members))
    I.scatter_members = [p(f"s{i}.img") for i in range(STRIPES)]
    I.t_scatter_striped = table("scatter-striped.table", striped_table(I.scatter_members))
    I.scatter_linear = p("member.img")
    I.scatter_linear_offset = 2048
    I.t_scatter_linear = table("scatter-linear.table", f"0 {S} linear {I.scatter_linear} {I.scatter_linear_offset}\n")

    # Offset extraction: a window from the middle (256 MiB, or half the image when smaller).
    I.window = min(256 * MiB, size // 2)
    I.window_off = (size // 2 - I.window // 2) // MiB * MiB
    I.t_window = table("window.table", f"0 {I.window // SECTOR} linear {I.random} {I.window_off // SECTOR}\n")

    # 1,048,576 segments: 8-sector linear pieces of random.img alternating with 8-sector zeros,
    # so no two neighbours can merge.
    path = p("segments.table")
    wrap = S - 8
    with open(path, "w") as f:
        for i in range(SEGMENTS):
            if i & 1:
                f.write(f"{i * 8} 8 zero\n")
            else:
                f.write(f"{i * 8} 8 linear {I.random} {(i // 2 * 8) % wrap}\n")
    I.t_segments = path
    I.tables["segments.table"] = path

    if I.check_striped:
        out = p("striped-check.img")
        remove(out)
        sh([imgmap, "compose", I.t_striped, "-o", out, "--progress", "never"])
        same = filecmp.cmp(out, I.random, shallow=False)
        remove(out)
        if not same:
            for m in I.members:
                remove(m)
            sys.exit("prepare: imgmap compose of the striped table does not reproduce random.img")
        log("prepare: imgmap compose striped.table reproduces random.img")
    return I
