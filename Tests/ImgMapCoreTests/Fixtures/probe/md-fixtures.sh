#!/bin/sh
# dm-oracle guest script: the md fixtures of the probe tests, made by the real mdadm 4.2 and
# kernel 6.1. Run by make-fixtures.sh. Each array gets the pattern (pattern.bin) at its start,
# its own tag at sector 1024 and the pattern again 256 KiB before its end; the kernel's size and
# sha256 of each array are recorded, and `mdadm --examine` of every member.
set -e
. "$INPUTS/lib.sh"
. "$INPUTS/md-lib.sh"
make /dev/md0 r0-v12 --level=0 --raid-devices=2 --chunk=64 --metadata=1.2 --name=r0 $DEV_r0a $DEV_r0b
make /dev/md1 r1-v12 --level=1 --raid-devices=2 --metadata=1.2 --name=r1 $DEV_r1a $DEV_r1b
make /dev/md2 lin-v12 --level=linear --raid-devices=2 --metadata=1.2 --name=lin $DEV_lna $DEV_lnb
make /dev/md3 r1-v090 --level=1 --raid-devices=2 --metadata=0.90 $DEV_v09a $DEV_v09b
make /dev/md4 r1-v10 --level=1 --raid-devices=2 --metadata=1.0 --name=r1e $DEV_v10a $DEV_v10b
make /dev/md5 r0-v11 --level=0 --raid-devices=2 --chunk=32 --metadata=1.1 --name=r0s $DEV_v11a $DEV_v11b
# A stale member: a three-way RAID1 loses stlc (failed, then removed); later writes raise the
# event count of stla and stlb only, so stlc's superblock is older and still says "active".
mdadm --create /dev/md6 --run --level=1 --raid-devices=3 --metadata=1.2 --name=stale $DEV_stla $DEV_stlb $DEV_stlc
md_settle /dev/md6
mdadm /dev/md6 --fail $DEV_stlc
mdadm /dev/md6 --remove $DEV_stlc
mark /dev/md6 stale
volsum /dev/md6 stale
mdadm --detail /dev/md6 > "$RESULTS/stale-detail.txt" || true
cat /proc/mdstat > "$RESULTS/mdstat.txt"
for m in 0 1 2 3 4 5 6; do mdadm --stop /dev/md$m; done
while read -r name dev; do
    mdadm --examine "$dev" > "$RESULTS/examine-$name.txt" 2>&1 || true
done < "$DISKS"
