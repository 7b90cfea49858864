#!/bin/sh
# dm-oracle guest script: the README's NAS example. Four disks, each with a GPT partition (made on the
# host by make-fixtures.sh with sgdisk); md RAID5 (1.2, left-symmetric, 64 KiB chunks) over the
# partitions; an LVM VG on the array with one LV. The pattern goes at the start and the end of the LV.
set -e
. "$INPUTS/lib.sh"
ls /dev/vd*
for d in $DEV_nas1 $DEV_nas2 $DEV_nas3 $DEV_nas4; do blockdev --rereadpt $d || true; done
sleep 1; ls /dev/vd*; cat /proc/partitions
mdadm --create /dev/md0 --run --level=5 --raid-devices=4 --chunk=64 --metadata=1.2 --name=nas ${DEV_nas1}1 ${DEV_nas2}1 ${DEV_nas3}1 ${DEV_nas4}1
md_settle /dev/md0
lvm pvcreate -y /dev/md0
lvm vgcreate -y -s 1M vg_nas /dev/md0
lvm lvcreate -y -n data -l 100%FREE vg_nas
dd if="$INPUTS/pattern.bin" of=/dev/vg_nas/data bs=64k conv=fsync 2>/dev/null
end=$(( $(blockdev --getsize64 /dev/vg_nas/data) / 65536 - 4 ))
dd if="$INPUTS/pattern.bin" of=/dev/vg_nas/data bs=64k seek=$end conv=fsync 2>/dev/null
md_settle /dev/md0
volsum /dev/vg_nas/data vg_nas_data
volsum /dev/md0 md-nas
lvm_report lvm
md_report /dev/md0 md0
cat "$RESULTS/lvm-dmsetup-table.txt"
