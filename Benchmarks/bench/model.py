"""The benchmark model: rows, peers, runs."""

from .inputs import *  # noqa: F401,F403


class Variant:
    def __init__(self, tool, cmd, shell=False, needs=(), setup=None, check=None, outputs=(),
                 note=None, max_runs=None, imgmap=False):
        self.tool, self.cmd, self.shell, self.needs = tool, cmd, shell, needs
        self.setup, self.check, self.outputs, self.note = setup, check, outputs, note
        self.max_runs, self.imgmap = max_runs, imgmap
        self.times, self.rss, self.notes, self.error = [], [], [], None
        self.alloc = None
        self.missing = [n for n in needs if not shutil.which(n)]


class Op:
    def __init__(self, name, nbytes, inputs, variants, requires=()):
        self.name, self.nbytes, self.inputs, self.variants, self.requires = name, nbytes, inputs, variants, requires


def allocated(path):
    st = os.stat(path)
    return st.st_size, st.st_blocks * 512


def run_op(op, runs, work):
    log(f"== {op.name}")
    active = [v for v in op.variants if not v.missing]
    warm([p for p in op.inputs if os.path.exists(p)])
    for r in range(runs):
        k = r % len(active) if active else 0
        for v in active[k:] + active[:k]:  # rotate the order every run
            if v.error or (v.max_runs and len(v.times) >= v.max_runs):
                continue
            remove(*v.outputs)
            if v.setup:
                v.setup()
            res = run_measured(v.cmd, work, v.shell)
            ok = res.rc == 0
            if ok and v.check and r == 0:
                msg = v.check(res)
                if msg:
                    ok = False
                    res.stderr += "\n" + msg
            if not ok:
                v.error = f"failed (exit {res.rc})"
                log(f"   {v.tool}: FAILED exit {res.rc}: {res.stderr.strip()[-800:]}")
                remove(*v.outputs)
                continue
            if v.outputs and os.path.exists(v.outputs[0]):
                v.alloc = allocated(v.outputs[0])
            v.times.append(res.secs)
            v.rss.append(res.rss_kib)
            log(f"   {v.tool:<34} {res.secs:7.3f} s  {res.rss_kib / 1024:7.1f} MiB"
                + (f"  {op.nbytes / res.secs / 1e6:8.0f} MB/s" if op.nbytes else ""))
            remove(*v.outputs)
