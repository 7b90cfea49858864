#!/bin/sh
# dm-oracle guest script: the LVM fixtures of the probe tests, made by the real lvm 2.03.16 and
# mdadm 4.2. vg0 on two plain PVs (1 MiB extents): a striped LV, a linear LV with a dash in its
# name, a linear LV spanning both PVs; nas-vg on an md RAID1 (1.2). The pattern (pattern.bin) goes
# at the start and 256 KiB before the end of each LV; `dmsetup table` and each LV's sha256 are kept.
set -e
. "$INPUTS/lib.sh"
. "$INPUTS/lvm-lib.sh"
lvm pvcreate -y "$DEV_pva" "$DEV_pvb"
lvm vgcreate -y -s 1M vg0 "$DEV_pva" "$DEV_pvb"
lvm lvcreate -y -n str -i2 -I64 -L 4M vg0
lvm lvcreate -y -n my-data -L 2M vg0 "$DEV_pva"
lvm lvcreate -y -n root -l 100%FREE vg0
mdadm --create /dev/md0 --run --level=1 --raid-devices=2 --metadata=1.2 --name=nas $DEV_mda $DEV_mdb
md_settle /dev/md0
lvm pvcreate -y /dev/md0
lvm vgcreate -y -s 1M nas-vg /dev/md0
lvm lvcreate -y -n data -L 6M nas-vg
lvm lvs -a -o+devices,seg_pe_ranges
for lv in vg0/str vg0/my-data vg0/root nas-vg/data; do
    tag=$(echo $lv | tr / _)
    mark /dev/$lv $tag
    volsum /dev/$lv $tag
done
md_settle /dev/md0
volsum /dev/md0 md-nas
lvm_report lvm
cat "$RESULTS/lvm-dmsetup-table.txt"
