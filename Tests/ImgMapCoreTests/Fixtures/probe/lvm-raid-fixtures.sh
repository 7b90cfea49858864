#!/bin/sh
# dm-oracle guest script: LVM raid4/5/6/10 and cache LVs made by the real lvm 2.03.16 on five 32 MiB PVs
# (1 MiB extents), for issue 16's remaining LVM items. Each raid LV is waited for until in sync; a
# cache pool in writethrough and one in writeback are attached to two linear LVs. The pattern goes
# at the start and 256 KiB before the end of each LV; `dmsetup table`/`status` and each LV's sha256
# are kept. The writeback cache promoted nothing before the images were taken (its status: 0/16 blocks
# cached, none dirty), so its digest is the origin's; lvm-cachevol-fixtures.sh is the one with dirty blocks.
set -e
. "$INPUTS/lib.sh"
. "$INPUTS/lvm-lib.sh"
insync() {
    i=0
    while :; do
        p=$(lvm lvs --noheadings -o sync_percent "$1" | tr -d ' ')
        [ "$p" = "100.00" ] && break
        i=$((i+1)); [ $i -lt 600 ] || break
        sleep 0.5
    done
}
lvm pvcreate -y "$DEV_ra" "$DEV_rb" "$DEV_rc" "$DEV_rd" "$DEV_re"
lvm vgcreate -y -s 1M vgr "$DEV_ra" "$DEV_rb" "$DEV_rc" "$DEV_rd" "$DEV_re"
lvm lvcreate -y --type raid4 -i2 -I64 -L 2M -n r4 vgr
lvm lvcreate -y --type raid5 -i3 -I64 -L 3M -n r5 vgr
lvm lvcreate -y --type raid6 -i3 -I64 -L 3M -n r6 vgr
lvm lvcreate -y --type raid10 -i2 -m1 -I64 -L 2M -n r10 vgr
for lv in r4 r5 r6 r10; do insync vgr/$lv; done
lvm lvcreate -y -L 2M -n wt vgr "$DEV_ra"
lvm lvcreate -y --type cache-pool -L 1M -n wtpool vgr "$DEV_rb"
lvm lvconvert -y --type cache --cachepool vgr/wtpool --cachemode writethrough vgr/wt
lvm lvcreate -y -L 2M -n wb vgr "$DEV_rc"
lvm lvcreate -y --type cache-pool -L 1M -n wbpool vgr "$DEV_rd"
lvm lvconvert -y --type cache --cachepool vgr/wbpool --cachemode writeback vgr/wb
lvm lvs -a -o+devices,seg_pe_ranges
for lv in r4 r5 r6 r10 wt wb; do
    mark /dev/vgr/$lv vgr_$lv
    volsum /dev/vgr/$lv vgr_$lv
done
for lv in r4 r5 r6 r10; do insync vgr/$lv; done
lvm_report lvm
cat "$RESULTS/lvm-dmsetup-table.txt"
cat "$RESULTS/lvm-dmsetup-status.txt"
