#!/bin/sh
# dm-oracle guest script: partitions on md. A RAID5 (1.2, left-symmetric, 64 KiB chunks) of three
# members gets a GPT with two partitions, written on /dev/md0 by the real sfdisk in the guest (the
# kernel then shows md0p1 and md0p2); each partition gets the pattern at its start and its own tag at
# sector 1024. The kernel's size and sha256 of md0, md0p1 and md0p2, the table as sfdisk dumps it and
# `mdadm --examine` of every member are recorded. Run by make-fixtures.sh.
set -e
. "$INPUTS/lib.sh"
mdadm --create /dev/md0 --run --level=5 --raid-devices=3 --chunk=64 --metadata=1.2 $DEV_mpa $DEV_mpb $DEV_mpc
md_settle /dev/md0
printf 'label: gpt\nfirst-lba: 2048\nstart=2048, size=8192, name=one\nstart=10240, name=two\n' | sfdisk -q /dev/md0
blockdev --rereadpt /dev/md0 || true
sleep 1
cat /proc/partitions
for p in 1 2; do
    dd if="$INPUTS/pattern.bin" of=/dev/md0p$p bs=64k conv=fsync 2>/dev/null
    echo "partition $p" | dd of=/dev/md0p$p bs=512 seek=1024 conv=sync,fsync 2>/dev/null
done
md_settle /dev/md0
sfdisk --dump /dev/md0 > "$RESULTS/sfdisk-dump.txt"
volsum /dev/md0 md0
volsum /dev/md0p1 md0p1
volsum /dev/md0p2 md0p2
md_report /dev/md0 md0
mdadm --stop /dev/md0
