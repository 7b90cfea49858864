#!/usr/bin/env python3
# Writes pattern.bin: 256 KiB in which each 512-byte sector names its own index, so a probe
# that puts members or chunks in the wrong order composes different bytes. Deterministic.
import sys
out = bytearray()
for i in range(512):
    line = ("sector %06d " % i).encode()
    out += (line * 64)[:511] + b"\n"
open(sys.argv[1] if len(sys.argv) > 1 else "pattern.bin", "wb").write(out)
