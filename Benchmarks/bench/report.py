"""The report: markdown tables and targets met or missed."""

from .ops import *  # noqa: F401,F403


def machine():
    def cmd(c):
        try:
            return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"
    model = re.search(r"Model name:\s*(.*)", cmd("lscpu"))
    mem = re.search(r"MemTotal:\s*(\d+)", open("/proc/meminfo").read())
    return {
        "cpus": cmd("nproc"),
        "model": model.group(1).strip() if model else "?",
        "memory": f"{int(mem.group(1)) / (1 << 20):.1f} GiB" if mem else "?",
        "kernel": platform.release(),
    }


def fmt_rate(nbytes, t):
    return f"{nbytes / t / 1e6:,.0f}"


def report(ops, skipped, args, I, W, imgmap_path):
    m = machine()
    fs_type = subprocess.run(["df", "--output=fstype", W], capture_output=True, text=True).stdout.split()[-1]
    lines = []
    lines.append(f"Machine: {m['cpus']} CPUs ({m['model']}), {m['memory']} RAM, kernel {m['kernel']}, "
                 f"work dir {W} on {fs_type}.  ")
    lines.append(f"Size {human(I.size)}, {args.runs} run(s) per tool, interleaved; inputs warmed by one untimed "
                 f"read; MB/s = 10^6 bytes of logical (device) size per second; peak RSS = max over runs of the "
                 f"process tree's largest process"
                 + (" (measured by GNU time)" if GNU_TIME else " (includes this script's footprint)") + ".  ")
    if I.fs_fill is not None:
        lines.append(f"fs.img: ext4, {I.fs_fill * 100:.0f} % of blocks in use.")
    lines.append("")
    lines.append("| operation | tool | median MB/s | min–max MB/s | median time | peak RSS | notes |")
    lines.append("|---|---|---:|---:|---:|---:|---|")
    for op in ops:
        base = next((v for v in op.variants if v.imgmap and v.times), None)
        for v in op.variants:
            v.tool = v.tool.replace("|", "\\|")  # inside a markdown table cell
            if v.missing:
                lines.append(f"| {op.name} | {v.tool} | n/a | | | | not installed ({', '.join(v.missing)}) |")
                continue
            if not v.times:
                lines.append(f"| {op.name} | {v.tool} | {v.error or 'not run'} | | | | |")
                continue
            med = statistics.median(v.times)
            notes = []
            if v.note:
                notes.append(v.note)
            if v.alloc and op.name.startswith("compose → file"):
                notes.append(f"output {mib(v.alloc[1])} allocated")
            elif v.alloc and (op.name.startswith("compress") or "manifest" in op.name):
                notes.append(f"output {mib(v.alloc[0]) if v.alloc[0] >= MiB else str(v.alloc[0]) + ' B'}"
                             + (f" ({v.alloc[0] / I.size * 100:.1f} %)" if op.name.startswith("compress") else ""))
            if base and v is not base and op.nbytes:
                notes.append(f"imgmap is {statistics.median(v.times) / statistics.median(base.times):.2f}× this")
            if len(v.times) < args.runs:
                notes.append(f"{len(v.times)} run(s)")
            if op.nbytes:
                rate = fmt_rate(op.nbytes, med)
                rng = f"{fmt_rate(op.nbytes, max(v.times))}–{fmt_rate(op.nbytes, min(v.times))}"
            else:
                rate, rng = "—", "—"
            lines.append(f"| {op.name} | {v.tool} | {rate} | {rng} | {med:.3f} s | {max(v.rss) / 1024:.1f} MiB "
                         f"| {'; '.join(notes)} |")
    if skipped:
        lines.append("")
        for name, why in skipped:
            lines.append(f"- skipped: {name} — {why}")
    lines.append("")
    lines.append("Targets (ratios are of medians from this run):")
    lines.append("")
    lines += targets(ops, I)
    lines.append("")
    lines.append(f"imgmap: {imgmap_path}; command: `Benchmarks/run {' '.join(args.argv)}`")
    return "\n".join(lines) + "\n"


def targets(ops, I):
    def find(op_prefix, tool_prefix):
        for op in ops:
            if op.name.startswith(op_prefix):
                for v in op.variants:
                    if v.tool.startswith(tool_prefix) and v.times:
                        return v
        return None

    def med(v):
        return statistics.median(v.times)

    out = []

    def ratio(what, a, b, goal):
        if not a or not b:
            out.append(f"- {what}: not measured")
            return
        r = med(b) / med(a)  # a faster -> r > 1
        out.append(f"- {what}: {r:.2f}× (target ≥ {goal}×) — {'met' if r >= goal else 'MISSED'}")

    ratio("compose → file dense vs qemu-img convert", find("compose → file, dense", "imgmap compose"),
          find("compose → file, dense", "qemu-img"), 1.0)
    ratio("compose → file half-zero dense vs qemu-img convert", find("compose → file, half-zero dense", "imgmap compose"),
          find("compose → file, half-zero dense", "qemu-img"), 1.0)
    for label in ("half-zero dense", "half-zero sparse", "ext4 fs"):
        a = find(f"compose → file, {label}", "imgmap compose")
        b = find(f"compose → file, {label}", "qemu-img")
        if a and b and a.alloc and b.alloc:
            ok = a.alloc[1] <= b.alloc[1]
            line = (f"- allocated output, {label}: imgmap {mib(a.alloc[1])} vs qemu-img {mib(b.alloc[1])} — "
                    f"{'met' if ok else 'MISSED'}")
            s = find(f"compose → file, {label}", "imgmap compose --sparse always")
            if s and s.alloc:
                line += f" (imgmap --sparse always: {mib(s.alloc[1])})"
            out.append(line)
    ratio("compose → pipe vs nbdcopy", find("compose → stdout", "imgmap"), find("compose → stdout", "nbdkit"), 3.0)
    ratio("compose → pipe vs cat | cat", find("compose → stdout", "imgmap"), find("compose → stdout", "cat"), 1.5)
    ratio("offset extraction vs dd", find("offset", "imgmap"), find("offset", "dd"), 1.0)
    ratio("striped compose vs raw member reads (dd)", find("3-way", "imgmap"), find("3-way", "dd"), 0.8)
    c, m = find(f"{SEGMENTS:,}", "imgmap check"), find(f"{SEGMENTS:,}", "imgmap map")
    if c and m:
        t = med(c) + med(m)
        rss = max(max(c.rss), max(m.rss)) / 1024
        out.append(f"- {SEGMENTS:,}-segment check + map: {t:.2f} s (target < 1 s) — {'met' if t < 1 else 'MISSED'}; "
                   f"peak RSS {rss:.0f} MiB ≈ {rss * MiB / SEGMENTS:.0f} B/segment")
    ratio("verify dense vs openssl dgst", find("verify, dense", "imgmap"), find("verify, dense", "openssl"), 1.0)
    ratio("scatter striped vs dd", find("scatter → 3-way", "imgmap"), find("scatter → 3-way", "dd"), 0.8)
    ratio("scatter linear vs dd", find("scatter → linear", "imgmap"), find("scatter → linear", "dd"), 0.8)
    metadata_target_goals(find, med, ratio, out)
    for dest in ("/dev/null", "file"):
        ratio(f"serve → nbdcopy {dest} vs nbdkit file", find(f"serve → nbdcopy {dest}, dense", "imgmap"),
              find(f"serve → nbdcopy {dest}, dense", "nbdkit"), 1.5)
        ratio(f"serve → nbdcopy {dest} vs qemu-nbd", find(f"serve → nbdcopy {dest}, dense", "imgmap"),
              find(f"serve → nbdcopy {dest}, dense", "qemu-nbd"), 1.0)
    k, d = find("serve → nbdcopy file, dense", "nbdkit"), find("serve → nbdcopy file, dense", "dd of the image")
    if k and d:
        need = med(k) / 1.5
        out.append(f"- serve → nbdcopy file: the file write alone (dd, no server) takes {med(d):.2f} s; 1.5× nbdkit "
                   f"needs {need:.2f} s" + (", less than the write alone: no server can reach it here" if need < med(d) else ""))
    s3, s1 = find("serve → nbdcopy /dev/null, 3-way", "imgmap"), find("serve → nbdcopy /dev/null, one member", "imgmap")
    if s3 and s1:
        r3 = I.size / med(s3) / 1e6
        r1 = I.member_sizes[0] / med(s1) / 1e6
        out.append(f"- serve striped set: {r3:,.0f} MB/s, {r3 / r1:.2f}× the MB/s of serving one member ({r1:,.0f} MB/s)")
    raid_target_goals(find, med, ratio, out)
    probe_target_goals(find, med, out)
    # The two million-entry maps hold their entries in memory by design (24 B per thin run).
    big = [(op.name, v.tool, max(v.rss) / 1024) for op in ops for v in op.variants
           if v.imgmap and v.rss and not op.name.startswith(f"{SEGMENTS:,}") and not op.name.startswith("map of a thin")]
    if big:
        worst = max(big, key=lambda x: x[2])
        out.append(f"- peak RSS of imgmap outside the million-entry maps: max {worst[2]:.1f} MiB ({worst[0]}, "
                   f"{worst[1]}) (target < 64 MiB) — {'met' if worst[2] < 64 else 'MISSED'}")
    return out
