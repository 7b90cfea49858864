#!/bin/sh
# dm-oracle guest script: LVM cache LVs over a cache volume (`lvconvert --type cache --cachevol`, no
# cache pool), made by the real lvm 2.03.16 on four 16 MiB PVs (1 MiB extents): an 8 MiB LV cached in
# writethrough by a 4 MiB cachevol on another PV, and one cached in writeback. The pattern goes at the
# start and 256 KiB before the end of each LV; `dmsetup table`/`status` and the sha256 of each LV, its
# _corig and its cachevol's -cdata are kept while active.
# The writeback cache's migration is stopped before the pattern goes in (`dmsetup message …
# migration_threshold 0`; the kernel's table line stays as lvm loaded it), so its dirty blocks are never
# written back: they live only on the cachevol's PV when the cleanup deactivates the VG (the LV's digest
# differs from its _corig's). Each cache is left to finish its promotions before its sub-devices are
# read, and must not change while they are.
set -e
. "$INPUTS/lib.sh"
. "$INPUTS/lvm-lib.sh"
status() { dmsetup status "$1" | cut -d' ' -f4-; }
lvm pvcreate -y "$DEV_ca" "$DEV_cb" "$DEV_cc" "$DEV_cd"
lvm vgcreate -y -s 1M vgc "$DEV_ca" "$DEV_cb" "$DEV_cc" "$DEV_cd"
lvm lvcreate -y -L 8M -n wt vgc "$DEV_ca"
lvm lvcreate -y -L 4M -n wtfast vgc "$DEV_cb"
lvm lvconvert -y --type cache --cachevol wtfast --cachemode writethrough vgc/wt
lvm lvcreate -y -L 8M -n wb vgc "$DEV_cc"
lvm lvcreate -y -L 4M -n wbfast vgc "$DEV_cd"
lvm lvconvert -y --type cache --cachevol wbfast --cachemode writeback vgc/wb
lvm lvs -a -o+devices,seg_pe_ranges,cache_mode,cache_policy,cache_settings
# Writeback: no migration, so the dirty blocks are never written back to the origin (promotions
# still run: they are not migrations the threshold holds back).
dmsetup message vgc-wb 0 migration_threshold 0
for lv in wt wb; do
    mark /dev/vgc/$lv vgc_$lv
    # Whole 64 KiB blocks written with O_DIRECT: a writeback cache takes them in as dirty blocks.
    dd if="$INPUTS/pattern.bin" of=/dev/vgc/$lv bs=64k seek=32 oflag=direct 2>/dev/null
done
# settle LV: waits until the cache's promotions are over (its status stops changing).
settle() {
    last=$(status "$1") i=0
    while sleep 3; do
        now=$(status "$1")
        [ "$now" = "$last" ] && return 0
        last=$now i=$((i+1)); [ $i -lt 40 ] || { echo "settle $1: still changing"; return 1; }
    done
}
for lv in wt wb; do
    volsum /dev/vgc/$lv vgc_$lv
    settle vgc-$lv
    before=$(status vgc-$lv)
    volsum /dev/mapper/vgc-${lv}_corig vgc_${lv}_corig
    volsum /dev/mapper/vgc-${lv}fast_cvol-cdata vgc_${lv}fast_cvol-cdata
    echo "vgc-$lv: $before"
    [ "$(status vgc-$lv)" = "$before" ] || { echo "vgc-$lv changed while its sub-devices were read"; exit 1; }
done
lvm_report lvm
cat "$RESULTS/lvm-dmsetup-table.txt"
cat "$RESULTS/lvm-dmsetup-status.txt"
