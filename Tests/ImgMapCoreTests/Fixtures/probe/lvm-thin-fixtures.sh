#!/bin/sh
# dm-oracle guest script: thin LVs as the real lvm 2.03.16 makes them, on two 16 MiB PVs (1 MiB extents):
# a thin pool created with --errorwhenfull y (the kernel's error_if_no_space) holding
#   thin   a thin LV with the marks of lvm-lib.sh and the pattern again at 3 MiB;
#   tsnap  a thin snapshot of thin (no size), taken before thin changes a little;
#   csnap  a thick (COW) snapshot of thin (-L 4M), thin and csnap each changed after it;
#   ext    a thin snapshot of the read-only linear LV ro (an external origin), written a little:
#          one whole 64 KiB block and one sector inside another block (the kernel copies the rest of
#          that block from ro).
# Thin snapshots get lvm's activation skip flag: they are activated with -K. The sha256 of each LV is
# read while active, then the VG is deactivated so the pool's metadata is committed on the images.
set -e
. "$INPUTS/lib.sh"
. "$INPUTS/lvm-lib.sh"
small() { echo "$2" | dd of="$1" bs=512 seek="$3" conv=sync,fsync 2>/dev/null; }
lvm pvcreate -y "$DEV_ha" "$DEV_hb"
lvm vgcreate -y -s 1M vgh "$DEV_ha" "$DEV_hb"
# 2.03.16 refuses --errorwhenfull with --type thin-pool ("unsupported with thin pools"); -T takes it.
lvm lvcreate -y -T -L 8M --errorwhenfull y vgh/pool
lvm lvcreate -y -V 8M --thin -n thin vgh/pool
mark /dev/vgh/thin vgh_thin
dd if="$INPUTS/pattern.bin" of=/dev/vgh/thin bs=64k seek=48 conv=fsync 2>/dev/null
lvm lvcreate -y -s vgh/thin -n tsnap
lvm lvchange -ay -K vgh/tsnap
small /dev/vgh/thin "thin after tsnap" 1200
small /dev/vgh/tsnap "tsnap itself" 3000
lvm lvcreate -y -s -L 4M vgh/thin -n csnap
small /dev/vgh/thin "thin after csnap" 1300
small /dev/vgh/csnap "csnap itself" 700
lvm lvcreate -y -L 4M -n ro vgh
mark /dev/vgh/ro vgh_ro
lvm lvchange -y -pr vgh/ro
# lvm takes only an inactive LV as an external origin.
lvm lvchange -an vgh/ro
lvm lvcreate -y -s --thinpool vgh/pool vgh/ro -n ext
lvm lvchange -ay -K vgh/ext
dd if="$INPUTS/pattern.bin" of=/dev/vgh/ext bs=64k seek=20 count=1 conv=fsync 2>/dev/null
small /dev/vgh/ext "ext itself" 2000
lvm lvchange -ay vgh/ro
lvm lvs -a -o+devices,seg_pe_ranges,thin_id,pool_lv,origin,lv_when_full,lv_attr
for lv in thin tsnap csnap ext ro; do volsum /dev/vgh/$lv vgh_$lv; done
lvm_report lvm
cat "$RESULTS/lvm-dmsetup-table.txt"
cat "$RESULTS/lvm-dmsetup-info.txt"
lvm vgchange -an vgh
