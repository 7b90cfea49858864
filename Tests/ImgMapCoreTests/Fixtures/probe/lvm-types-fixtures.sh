#!/bin/sh
# dm-oracle guest script: LVM LV types beyond linear/striped, made by the real lvm 2.03.16 on two PVs
# (1 MiB extents): raid1, mirror (core log), a thin pool with a thin LV, and a snapshot of a linear LV.
# Only the kernel's tables are recorded (their targets are other engineers' work).
set -e
. "$INPUTS/lib.sh"
lvm pvcreate -y "$DEV_tpa" "$DEV_tpb"
lvm vgcreate -y -s 1M vgt "$DEV_tpa" "$DEV_tpb"
lvm lvcreate -y --type raid1 -m1 -L 2M -n r1 vgt
lvm lvcreate -y --type mirror -m1 --mirrorlog core -L 2M -n mir vgt
lvm lvcreate -y --type thin-pool -L 4M -n pool vgt
lvm lvcreate -y -V 8M --thin -n thin vgt/pool
lvm lvcreate -y -L 2M -n base vgt
lvm lvcreate -y -s -L 1M -n snap vgt/base
i=0
while :; do
    p=$(lvm lvs --noheadings -o sync_percent vgt/r1 | tr -d ' ')
    [ "$p" = "100.00" ] && break
    i=$((i+1)); [ $i -lt 600 ] || break
    sleep 0.5
done
lvm_report lvm
cat "$RESULTS/lvm-dmsetup-table.txt"
