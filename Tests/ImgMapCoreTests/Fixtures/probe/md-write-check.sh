#!/bin/sh
# dm-oracle guest script: the kernel's view of a RAID6 (md's default layout) written by imgmap.
# Host side, from a folder holding the md-parity p6a–p6d images:
#   imgmap probe p6?.img > dump.txt && imgmap scatter dump.txt --top r6 DATA --seek 1000
#   dm-oracle --timeout 600 --guest-script md-write-check.sh --guest-file .../oracle/demos/lib.sh \
#       --dev p6a=p6a.img --dev p6b=p6b.img --dev p6c=p6c.img --dev p6d=p6d.img --out-dir out
# then out/results/r6.sha256 must equal the sha256 of `imgmap compose dump.txt --top r6`, and
# out/results/mismatch_cnt (md's own parity check, P and Q) must be 0. Run on 2026-12-02: both held.
set -e
. "$INPUTS/lib.sh"
mdadm --assemble --run /dev/md0 $DEV_p6a $DEV_p6b $DEV_p6c $DEV_p6d
md_settle /dev/md0 || true
volsum /dev/md0 r6
echo check > /sys/block/md0/md/sync_action
sleep 1
md_settle /dev/md0 || true
cat /sys/block/md0/md/mismatch_cnt > "$RESULTS/mismatch_cnt"
mdadm --stop /dev/md0
