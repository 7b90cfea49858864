"""Shared constants and small helpers of the benchmark harness."""

import argparse
import filecmp
import hashlib
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MiB = 1 << 20
SECTOR = 512
CHUNK_SECTORS = 128  # striped chunk: 64 KiB
STRIPES = 3
SEGMENTS = 1 << 20  # the big table for check/map

# Peer command -> Debian package that provides it.
PACKAGES = {
    "qemu-img": "qemu-utils",
    "nbdkit": "nbdkit",
    "nbdcopy": "libnbd-bin",
    "qemu-nbd": "qemu-utils",
    "pigz": "pigz",
    "bgzip": "tabix",
    "bmaptool": "bmap-tools",
    "mkfs.ext4": "e2fsprogs",
    "openssl": "openssl",
}

# Commands of imgmap not in every build; templates are here so they are easy to adjust.
#   compress:   imgmap compress -l 6 IN -o OUT
#   decompress: imgmap decompress IN -o OUT
#   manifest:   imgmap manifest --image IMAGE -o OUT.bmap


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def parse_size(s):
    m = re.fullmatch(r"(\d+)([KMGT]?)(i?B)?", s.strip(), re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {s!r} (e.g. 256M, 1G)")
    n = int(m.group(1)) << (10 * " KMGT".index((m.group(2) or " ").upper()))
    if n < 48 * MiB or n % MiB:
        raise argparse.ArgumentTypeError("size must be a whole number of MiB, at least 48M")
    return n


def human(n):
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def mib(n):
    return f"{n / MiB:.0f} MiB" if n >= 10 * MiB else f"{n / MiB:.1f} MiB"
