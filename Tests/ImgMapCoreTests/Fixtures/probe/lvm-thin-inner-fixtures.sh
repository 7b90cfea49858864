#!/bin/sh
# dm-oracle guest script: a VG inside a thin LV, as on a Proxmox host's local-lvm. The real lvm 2.03.16
# makes VG pve on two 16 MiB PVs (1 MiB extents) with a thin pool data and a thin LV vm-100-disk-0
# (8 MiB); the guest's sfdisk (the host's, passed with --tools) writes a GPT with one partition on it,
# mapped as kpartx maps it (pve-vm--100--disk--0p1, a linear over the partition's sectors: the guest
# has no kpartx); that partition is the PV of VG inner, whose linear LV root gets the marks of
# lvm-lib.sh. The kernel's tables and device numbers, the partition table as sfdisk dumps it and
# root's sha256 are recorded, then everything is deactivated so the pool's metadata is committed.
set -e
. "$INPUTS/lib.sh"
. "$INPUTS/lvm-lib.sh"
lvm pvcreate -y "$DEV_ia" "$DEV_ib"
lvm vgcreate -y -s 1M pve "$DEV_ia" "$DEV_ib"
lvm lvcreate -y -T -L 8M pve/data
lvm lvcreate -y -V 8M --thin -n vm-100-disk-0 pve/data
disk=/dev/mapper/pve-vm--100--disk--0
printf 'label: gpt\nfirst-lba: 2048\nstart=2048, name=inner\n' | sfdisk -q "$disk"
sfdisk --dump "$disk" > "$RESULTS/sfdisk-dump.txt"
cat "$RESULTS/sfdisk-dump.txt"
start=$(sfdisk --dump "$disk" | sed -n 's/.*start= *\([0-9]*\),.*/\1/p')
size=$(sfdisk --dump "$disk" | sed -n 's/.*size= *\([0-9]*\),.*/\1/p')
dmsetup create pve-vm--100--disk--0p1 --table "0 $size linear $disk $start"
part=/dev/mapper/pve-vm--100--disk--0p1
lvm pvcreate -y "$part"
lvm vgcreate -y -s 1M inner "$part"
lvm lvcreate -y -L 4M -n root inner
mark /dev/inner/root inner_root
lvm lvs -a -o+devices,seg_pe_ranges,thin_id,pool_lv,lv_attr
volsum /dev/inner/root inner_root
volsum "$part" part
lvm_report lvm
cat "$RESULTS/lvm-dmsetup-table.txt"
cat "$RESULTS/lvm-dmsetup-info.txt"
lvm vgchange -an inner
dmsetup remove pve-vm--100--disk--0p1
lvm vgchange -an pve
