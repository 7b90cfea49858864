#!/bin/sh
# Makes the md and LVM fixtures of ProbeFixtureTests with the kernel oracle (real mdadm, lvm and
# kernel in a guest), then keeps the member images gzip'd with the kernel's results.
# Usage: make-fixtures.sh WORKDIR   (from this directory; needs /work/shared/oracle/dm-oracle)
set -e
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?WORKDIR}
oracle=${ORACLE:-/work/shared/oracle/dm-oracle}
mkdir -p "$work"
python3 "$here/make-pattern.py" "$work/pattern.bin"
md_disks=""
for d in r0a r0b r1a r1b lna lnb v09a v09b v10a v10b v11a v11b stla stlb stlc; do md_disks="$md_disks --blank $d=8M"; done
"$oracle" --timeout 300 -q --guest-script "$here/md-fixtures.sh" --guest-file /work/shared/oracle/demos/lib.sh --guest-file "$here/md-lib.sh" \
    --guest-file pattern.bin="$work/pattern.bin" $md_disks --out-dir "$work/md"
"$oracle" --timeout 300 -q --guest-script "$here/lvm-fixtures.sh" --guest-file /work/shared/oracle/demos/lib.sh --guest-file "$here/lvm-lib.sh" \
    --guest-file pattern.bin="$work/pattern.bin" --blank pva=16M --blank pvb=16M --blank mda=16M --blank mdb=16M \
    --out-dir "$work/lvm"
# md-parity (levels 4, 5, 6), md-raid10 (RAID10 layouts, degraded RAID5 and RAID6) and md-raid6
# (RAID6 layouts beyond mdadm's default): one guest script, run three times, since a guest has room
# for about 30 disks.
parity_disks=""; for d in p4a p4b p4c p5a p5b p5c q5a q5b q5c q5d p6a p6b p6c p6d; do parity_disks="$parity_disks --blank $d=8M"; done
raid6_disks=""; for a in la6 rs6 ra6 pf6 ls6; do for m in a b c d; do raid6_disks="$raid6_disks --blank $a$m=8M"; done; done
raid10_disks=""; for d in tna tnb tnc tnd tfa tfb tfc toa tob toc dga dgb dgc eda edb edc edd ede; do raid10_disks="$raid10_disks --blank $d=8M"; done
"$oracle" --timeout 900 -q --guest-script "$here/md-parity-fixtures.sh" --guest-file /work/shared/oracle/demos/lib.sh --guest-file "$here/md-lib.sh" \
    --guest-file pattern.bin="$work/pattern.bin" $parity_disks --out-dir "$work/md-parity"
"$oracle" --timeout 900 -q --guest-script "$here/md-parity-fixtures.sh" --guest-file /work/shared/oracle/demos/lib.sh --guest-file "$here/md-lib.sh" \
    --guest-file pattern.bin="$work/pattern.bin" $raid10_disks --out-dir "$work/md-raid10"
"$oracle" --timeout 900 -q --guest-script "$here/md-parity-fixtures.sh" --guest-file /work/shared/oracle/demos/lib.sh --guest-file "$here/md-lib.sh" \
    --guest-file pattern.bin="$work/pattern.bin" $raid6_disks --out-dir "$work/md-raid6"
# nas: four disks with one GPT partition each (sgdisk on the host), RAID5 + LVM made in the guest.
for d in nas1 nas2 nas3 nas4; do
    rm -f "$work/$d.img"; truncate -s 24M "$work/$d.img"
    printf x | dd of="$work/$d.img" conv=notrunc 2>/dev/null   # sgdisk -o wants a file that is not all zeros
    sgdisk -o -n 1:2048:0 -t 1:fd00 -c 1:nas "$work/$d.img" >/dev/null
done
"$oracle" --timeout 300 -q --guest-script "$here/nas-fixtures.sh" --guest-file /work/shared/oracle/demos/lib.sh \
    --guest-file pattern.bin="$work/pattern.bin" --dev nas1="$work/nas1.img" --dev nas2="$work/nas2.img" \
    --dev nas3="$work/nas3.img" --dev nas4="$work/nas4.img" --out-dir "$work/nas"
"$oracle" --timeout 300 -q --guest-script "$here/lvm-types-fixtures.sh" --guest-file /work/shared/oracle/demos/lib.sh \
    --blank tpa=16M --blank tpb=16M --out-dir "$work/lvm-types"
"$oracle" --timeout 300 -q --guest-script "$here/lvm-raid-fixtures.sh" --guest-file /work/shared/oracle/demos/lib.sh --guest-file "$here/lvm-lib.sh" \
    --guest-file pattern.bin="$work/pattern.bin" --blank ra=32M --blank rb=32M --blank rc=32M --blank rd=32M --blank re=32M \
    --out-dir "$work/lvm-raid"
# lvm-cachevol: cache LVs over a cachevol (no cache pool), writethrough and writeback with dirty blocks.
"$oracle" --timeout 300 -q --guest-script "$here/lvm-cachevol-fixtures.sh" --guest-file /work/shared/oracle/demos/lib.sh --guest-file "$here/lvm-lib.sh" \
    --guest-file pattern.bin="$work/pattern.bin" --blank ca=16M --blank cb=16M --blank cc=16M --blank cd=16M \
    --out-dir "$work/lvm-cachevol"
# lvm-thin: a thin pool with error_when_full, a thin LV, a thin and a COW snapshot of it, and a thin
# snapshot of a read-only LV (an external origin).
"$oracle" --timeout 300 -q --guest-script "$here/lvm-thin-fixtures.sh" --guest-file /work/shared/oracle/demos/lib.sh --guest-file "$here/lvm-lib.sh" \
    --guest-file pattern.bin="$work/pattern.bin" --blank ha=16M --blank hb=16M --out-dir "$work/lvm-thin"
# md-part: a GPT on an md RAID5, written by the guest's sfdisk (the host's, passed with --tools).
"$oracle" --timeout 600 -q --tools mdadm,lvm2,sfdisk --guest-script "$here/md-part-fixtures.sh" --guest-file /work/shared/oracle/demos/lib.sh \
    --guest-file pattern.bin="$work/pattern.bin" --blank mpa=8M --blank mpb=8M --blank mpc=8M --out-dir "$work/md-part"
# lvm-thin-inner: a GPT written by the guest's sfdisk on a thin LV (a Proxmox VM disk), its partition
# the PV of a second VG.
"$oracle" --timeout 300 -q --tools mdadm,lvm2,sfdisk --guest-script "$here/lvm-thin-inner-fixtures.sh" --guest-file /work/shared/oracle/demos/lib.sh \
    --guest-file "$here/lvm-lib.sh" --guest-file pattern.bin="$work/pattern.bin" --blank ia=16M --blank ib=16M --out-dir "$work/lvm-thin-inner"
for set in md md-parity md-raid10 md-raid6 lvm nas lvm-types lvm-raid lvm-cachevol lvm-thin md-part lvm-thin-inner; do
    mkdir -p "$here/$set"
    for img in "$work/$set"/*.img; do gzip -9n < "$img" > "$here/$set/$(basename "$img").gz"; done
    rm -rf "$here/$set/results"; cp -r "$work/$set/results" "$here/$set/results"
    cp "$work/$set/final-examine.txt" "$here/$set/" 2>/dev/null || true
    # major:minor of each disk in the guest, to read the kernel's `dmsetup table` with.
    python3 -c "import json,sys; [print(v['major_minor'], k + '.img') for k, v in json.load(open(sys.argv[1]))['disks'].items()]" \
        "$work/$set/report.json" > "$here/$set/disks.txt"
done
