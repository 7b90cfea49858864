"""The operations each row runs, imgmap and peer."""

from .model import *  # noqa: F401,F403
from .metadata_targets import metadata_target_goals, metadata_target_ops  # noqa: F401
from .raid_targets import raid_target_goals, raid_target_ops  # noqa: F401
from .probe_targets import probe_target_goals, probe_target_ops  # noqa: F401


def build_ops(I, W, imgmap, has):
    Q = shlex.quote
    IM = Q(imgmap)
    P = "--progress", "never"
    out = os.path.join(W, "out.img")
    ops = []

    def same_as(ref):
        def check(_res):
            if not os.path.exists(out):
                return "no output"
            return None if filecmp.cmp(out, ref, shallow=False) else f"output differs from {ref}"
        return check

    # compose -> file
    for label, img, table in (("dense", I.random, I.t_random), ("half-zero dense", I.hz_dense, I.t_hz_dense),
                              ("half-zero sparse", I.hz_sparse, I.t_hz_sparse), ("ext4 fs", I.fs, I.t_fs)):
        if not os.path.exists(img):
            continue
        vs = [Variant("imgmap compose", [imgmap, "compose", table, "-o", out, *P], outputs=[out],
                      check=same_as(img), imgmap=True)]
        if img == I.hz_dense:
            vs.append(Variant("imgmap compose --sparse always",
                              [imgmap, "compose", table, "-o", out, "--sparse", "always", *P],
                              outputs=[out], check=same_as(img), imgmap=True))
        vs += [
            Variant("cp --sparse=auto", ["cp", "--sparse=auto", img, out], outputs=[out]),
            Variant("dd bs=1M", ["dd", f"if={img}", f"of={out}", "bs=1M", "status=none"], outputs=[out]),
            Variant("qemu-img convert -O raw", ["qemu-img", "convert", "-f", "raw", "-O", "raw", img, out],
                    needs=["qemu-img"], outputs=[out]),
        ]
        ops.append(Op(f"compose → file, {label}", I.size, [img], vs, requires=["compose"]))

    # compose -> pipe
    ops.append(Op("compose → stdout pipe, dense", I.size, [I.random], [
        Variant("imgmap compose -o - | cat", f"{IM} compose {Q(I.t_random)} -o - --progress never | cat > /dev/null",
                shell=True, imgmap=True),
        Variant("nbdkit file + nbdcopy - | cat",
                f"nbdkit -r -U - file {Q(I.random)} --run 'nbdcopy \"$uri\" - | cat > /dev/null'",
                shell=True, needs=["nbdkit", "nbdcopy"]),
        Variant("cat | cat (ceiling)", f"cat {Q(I.random)} | cat > /dev/null", shell=True),
    ], requires=["compose"]))

    # offset extraction
    ops.append(Op(f"offset extraction, {mib(I.window)} window", I.window, [I.random], [
        Variant("imgmap compose (linear at offset)", [imgmap, "compose", I.t_window, "-o", out, *P],
                outputs=[out], imgmap=True),
        Variant("dd skip= count= (bytes)", ["dd", f"if={I.random}", f"of={out}", "bs=1M", f"skip={I.window_off}",
                                             f"count={I.window}", "iflag=skip_bytes,count_bytes", "status=none"],
                outputs=[out]),
    ], requires=["compose"]))

    # striped compose
    members = " ".join(Q(m) for m in I.members)
    ops.append(Op("3-way striped compose → file", I.size, I.members, [
        Variant("imgmap compose (striped 3×64K)", [imgmap, "compose", I.t_striped, "-o", out, *P],
                outputs=[out], check=same_as(I.random), imgmap=True),
        Variant("dd bs=1M each member → /dev/null",
                f"for m in {members}; do dd if=\"$m\" of=/dev/null bs=1M status=none; done", shell=True),
        Variant("cat members > file (concatenate)", f"cat {members} > {Q(out)}", shell=True, outputs=[out]),
    ], requires=["compose"]))

    # 1M-segment table
    ops.append(Op(f"{SEGMENTS:,}-segment table", 0, [I.t_segments, I.random], [
        Variant("imgmap check", [imgmap, "check", I.t_segments], imgmap=True,
                note=f"{SEGMENTS:,} lines, {SEGMENTS * 8 * SECTOR >> 30} GiB device"),
        Variant("imgmap map > /dev/null", f"{IM} map {Q(I.t_segments)} > /dev/null", shell=True, imgmap=True),
    ], requires=["check", "map"]))

    # verify
    ops.append(Op("verify, dense", I.size, [I.random], [
        Variant("imgmap verify", [imgmap, "verify", I.t_random, I.random, *P], imgmap=True),
        Variant("openssl dgst -sha256", ["openssl", "dgst", "-sha256", I.random], needs=["openssl"]),
        Variant("sha256sum", ["sha256sum", I.random]),
        Variant("qemu-img compare (same file)", ["qemu-img", "compare", "-f", "raw", "-F", "raw", I.random, I.random],
                needs=["qemu-img"]),
    ], requires=["verify"]))
    ops.append(Op("verify, half-zero sparse (zero target)", I.size, [I.hz_sparse], [
        Variant("imgmap verify", [imgmap, "verify", I.t_hz_sparse_zero, I.hz_sparse, *P], imgmap=True),
        Variant("openssl dgst -sha256", ["openssl", "dgst", "-sha256", I.hz_sparse], needs=["openssl"]),
        Variant("qemu-img compare (same file)",
                ["qemu-img", "compare", "-f", "raw", "-F", "raw", I.hz_sparse, I.hz_sparse], needs=["qemu-img"]),
    ], requires=["verify"]))

    # compose --digest
    digests = {}

    def digest_of(tool):
        def check(res):
            m = re.search(r"\b([0-9a-f]{64})\b", res.stdout + res.stderr)
            if not m:
                return "no digest printed"
            digests[tool] = m.group(1)
            others = set(digests.values())
            return None if len(others) == 1 else f"digests differ: {digests}"
        return check

    ops.append(Op("compose --digest sha256 → file, dense", I.size, [I.random], [
        Variant("imgmap compose --digest sha256", [imgmap, "compose", I.t_random, "-o", out, "--digest", "sha256", *P],
                outputs=[out], check=digest_of("imgmap"), imgmap=True),
        Variant("cp + sha256sum", f"cp {Q(I.random)} {Q(out)} && sha256sum {Q(out)}", shell=True, outputs=[out],
                check=digest_of("sha256sum")),
        Variant("cp + openssl dgst -sha256", f"cp {Q(I.random)} {Q(out)} && openssl dgst -sha256 {Q(out)}",
                shell=True, outputs=[out], needs=["openssl"], check=digest_of("openssl")),
    ], requires=["compose"]))

    # scatter
    def fresh(paths, sizes):
        def setup():
            for pth, sz in zip(paths, sizes):
                remove(pth)
                with open(pth, "wb") as f:
                    f.truncate(sz)
        return setup

    def members_equal(got, want):
        def check(_res):
            for g, w in zip(got, want):
                if not filecmp.cmp(g, w, shallow=False):
                    return f"{g} differs from {w}"
            return None
        return check

    ss = I.scatter_members
    ops.append(Op("scatter → 3-way striped members", I.size, [I.random] + I.members, [
        Variant("imgmap scatter (striped)", [imgmap, "scatter", I.t_scatter_striped, I.random, *P],
                setup=fresh(ss, I.member_sizes), outputs=ss, check=members_equal(ss, I.members), imgmap=True),
        Variant("dd conv=notrunc,fsync per member",
                " && ".join(f"dd if={Q(m)} of={Q(s)} bs=1M conv=notrunc,fsync status=none"
                            for m, s in zip(I.members, ss)),
                shell=True, setup=fresh(ss, I.member_sizes), outputs=ss),
    ], requires=["scatter"]))
    off = I.scatter_linear_offset * SECTOR
    lin = [I.scatter_linear]
    lin_size = [I.size + off]

    def linear_ok(_res):
        with open(I.scatter_linear, "rb") as a, open(I.random, "rb") as b:
            a.seek(off)
            while True:
                x, y = a.read(8 * MiB), b.read(8 * MiB)
                if x != y:
                    return "member.img differs from random.img"
                if not x:
                    return None

    ops.append(Op("scatter → linear member at 1 MiB", I.size, [I.random], [
        Variant("imgmap scatter (linear)", [imgmap, "scatter", I.t_scatter_linear, I.random, *P],
                setup=fresh(lin, lin_size), outputs=lin, check=linear_ok, imgmap=True),
        Variant("dd seek= conv=notrunc,fsync", ["dd", f"if={I.random}", f"of={I.scatter_linear}", "bs=1M",
                                                f"seek={off}", "oflag=seek_bytes", "conv=notrunc,fsync",
                                                "status=none"],
                setup=fresh(lin, lin_size), outputs=lin),
    ], requires=["scatter"]))

    # compress / decompress
    gz = os.path.join(W, "out.gz")
    for label, img in (("half-zero dense", I.hz_dense), ("ext4 fs", I.fs)):
        if not os.path.exists(img):
            continue
        ops.append(Op(f"compress level 6, {label}", I.size, [img], [
            Variant("imgmap compress -l 6", [imgmap, "compress", "-l", "6", img, "-o", gz], outputs=[gz],
                    imgmap=True),
            Variant("gzip -6 (1 run)", f"gzip -6 -c {Q(img)} > {Q(gz)}", shell=True, outputs=[gz], max_runs=1),
            Variant("pigz -p2 -6", f"pigz -p2 -6 -c {Q(img)} > {Q(gz)}", shell=True, outputs=[gz], needs=["pigz"]),
            Variant("bgzip -@2 -l 6", f"bgzip -@2 -l 6 -c {Q(img)} > {Q(gz)}", shell=True, outputs=[gz],
                    needs=["bgzip"]),
        ], requires=["compress"]))
    bgz = os.path.join(W, "fs.img.bgz")
    if os.path.exists(I.fs) and "decompress" in has and shutil.which("bgzip"):
        if not os.path.exists(bgz):
            log("prepare: fs.img.bgz (bgzip -@2 -l 6)")
            sh(f"bgzip -@2 -l 6 -c {Q(I.fs)} > {Q(bgz)}.tmp && mv {Q(bgz)}.tmp {Q(bgz)}")
        ops.append(Op("decompress BGZF, ext4 fs", I.size, [bgz], [
            Variant("imgmap decompress", [imgmap, "decompress", bgz, "-o", out], outputs=[out],
                    check=same_as(I.fs), imgmap=True),
            Variant("bgzip -d -@2", f"bgzip -d -@2 -c {Q(bgz)} > {Q(out)}", shell=True, outputs=[out],
                    needs=["bgzip"]),
        ], requires=["decompress"]))
        # Reading through a compress target: the same BGZF file as a device, composed to a pipe.
        ctable = os.path.join(W, "fs-compress.table")
        with open(ctable, "w") as f:
            f.write(f"0 {os.path.getsize(I.fs) // 512} compress {bgz} 0\n")
        ops.append(Op("read through a compress target, ext4 fs", I.size, [bgz], [
            Variant("imgmap compose (compress) -o - | cat", f"{Q(imgmap)} compose {Q(ctable)} -o - | cat > /dev/null",
                    shell=True, imgmap=True),
            Variant("bgzip -d -@2 | cat", f"bgzip -d -@2 -c {Q(bgz)} | cat > /dev/null", shell=True, needs=["bgzip"]),
        ], requires=["compose", "decompress"]))

    # serve: nbdcopy from an NBD server (imgmap serve, nbdkit file, qemu-nbd) of the same raw image.
    # Each server runs captive for one copy; nbdcopy uses up to 4 connections when the server offers
    # multi-conn (all three do, read-only).
    sock = os.path.join(W, "nbd.sock")
    pidf = os.path.join(W, "qemu-nbd.pid")
    copy_cmd = {"/dev/null": 'nbdcopy "$uri" /dev/null', "file": f'nbdcopy "$uri" {Q(out)}'}
    for dest, cmd in copy_cmd.items():
        outs = [out] if dest == "file" else []
        check = same_as(I.random) if dest == "file" else None
        ops.append(Op(f"serve → nbdcopy {dest}, dense", I.size, [I.random], [
            Variant("imgmap serve --run nbdcopy", f"{IM} serve {Q(I.t_random)} --run {Q(cmd)}", shell=True,
                    needs=["nbdcopy"], outputs=outs, check=check, imgmap=True),
            Variant("nbdkit -r file --run nbdcopy", f"nbdkit -r -U - file {Q(I.random)} --run {Q(cmd)}", shell=True,
                    needs=["nbdkit", "nbdcopy"], outputs=outs),
            Variant("qemu-nbd -r -e 8 --fork + nbdcopy",
                    f"rm -f {Q(sock)}; qemu-nbd -r -f raw -e 8 -x '' --fork --pid-file={Q(pidf)} -k {Q(sock)} {Q(I.random)} && "
                    f"uri='nbd+unix:///?socket={sock}'; {cmd}; rc=$?; kill $(cat {Q(pidf)}); exit $rc",
                    shell=True, needs=["qemu-nbd", "nbdcopy"], outputs=outs),
        ] + ([
            # No server: the file write alone, in nbdcopy's request size, is the floor under every row.
            Variant("dd of the image to the file (no server)", f"dd if={Q(I.random)} of={Q(out)} bs=256K status=none",
                    shell=True, outputs=outs),
        ] if dest == "file" else []), requires=["serve"]))
    # The striped set, which no peer can serve: against imgmap serving one member (a third of the bytes).
    one = os.path.join(W, "m0.table")
    with open(one, "w") as f:
        f.write(f"0 {I.member_sizes[0] // SECTOR} linear {I.members[0]} 0\n")
    null = 'nbdcopy "$uri" /dev/null'
    ops.append(Op("serve → nbdcopy /dev/null, 3-way striped set", I.size, I.members, [
        Variant("imgmap serve (striped 3×64K) --run nbdcopy", f"{IM} serve {Q(I.t_striped)} --run {Q(null)}", shell=True,
                needs=["nbdcopy"], imgmap=True),
    ], requires=["serve"]))
    ops.append(Op("serve → nbdcopy /dev/null, one member", I.member_sizes[0], [I.members[0]], [
        Variant("imgmap serve (linear m0) --run nbdcopy", f"{IM} serve {Q(one)} --run {Q(null)}", shell=True,
                needs=["nbdcopy"], imgmap=True),
    ], requires=["serve"]))

    # manifest
    bmap = os.path.join(W, "out.bmap")
    for label, img in (("half-zero sparse", I.hz_sparse), ("ext4 fs", I.fs)):
        if not os.path.exists(img):
            continue
        ops.append(Op(f"manifest (bmap), {label}", I.size, [img], [
            Variant("imgmap manifest --image", [imgmap, "manifest", "--image", img, "-o", bmap], outputs=[bmap],
                    imgmap=True),
            Variant("bmaptool create", ["bmaptool", "create", "-o", bmap, img], outputs=[bmap], needs=["bmaptool"]),
        ], requires=["manifest"]))

    # thin, snapshot: mappings read from metadata
    ops += metadata_target_ops(I, W, imgmap, has)
    # raid5/raid6: parity sets against striped, healthy and degraded
    ops += raid_target_ops(I, W, imgmap, has)
    # probe: metadata read from multi-terabyte sparse disks
    ops += probe_target_ops(I, W, imgmap, has)
    return ops
