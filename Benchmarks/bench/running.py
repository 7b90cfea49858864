"""Running commands and timing them."""

from .common import *  # noqa: F401,F403


class Result:
    def __init__(self, secs, rss_kib, rc, stdout, stderr):
        self.secs, self.rss_kib, self.rc, self.stdout, self.stderr = secs, rss_kib, rc, stdout, stderr


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run_measured(cmd, work, shell=False):
    """Run cmd (argv list, or a bash string when shell) and return wall time and peak RSS.

    Peak RSS is ru_maxrss from wait4 of the command, which on Linux covers the command and every
    descendant it waited for (max of its own and its children's), so for `bash -c 'a | b'` it is the
    largest process of the pipeline. The command is started by GNU time (`%M` is that same wait4
    figure) rather than straight from this script: a process keeps the peak RSS of what it was
    before exec (a fork of this Python process, ~10-130 MiB), and time is ~2 MiB. Without
    /usr/bin/time, wait4 is used directly and the figures include this script's footprint."""
    out_path = os.path.join(work, ".stdout")
    err_path = os.path.join(work, ".stderr")
    rss_path = os.path.join(work, ".rss")
    argv = ["bash", "-c", cmd] if shell else list(cmd)
    if GNU_TIME:
        argv = [GNU_TIME, "-f", "%M", "-o", rss_path, "--"] + argv
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=work)
        _, status, ru = os.wait4(p.pid, 0)
        secs = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    rss = ru.ru_maxrss
    if GNU_TIME:
        with open(rss_path) as f:
            rss = int(f.read().split()[-1])
    with open(out_path, "rb") as f:
        stdout = f.read(1 << 16)
    with open(err_path, "rb") as f:
        stderr = f.read(1 << 16)
    return Result(secs, rss, p.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=True, **kw)


def warm(paths):
    """One untimed read of each input so every tool starts from the same (cached) state."""
    buf = bytearray(8 * MiB)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def remove(*paths):
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
