#!/bin/sh
# dm-oracle guest script: the parity and RAID10 md fixtures of the probe tests (levels 4, 5, 6 and
# 10 near/far/offset, each superblock version, and degraded sets), made by the real mdadm 4.2 and
# kernel 6.1. Run by make-fixtures.sh. Marks and results as in md-fixtures.sh (md-lib.sh); in the degraded sets
# a member is failed and removed BEFORE the marks are written, so its chunks of the marks exist
# only as parity (P, or P and Q) and reading them back needs the reconstruction. A guest has room
# for about 30 disks, so make-fixtures.sh runs this three times: with the p*/q* disks (levels 4, 5,
# 6), with the t*/d*/e* disks (RAID10 and the degraded sets), then with the *6? disks (RAID6 in the
# layouts beyond mdadm's default, one of them a `-6` layout with Q on the last member).
set -e
. "$INPUTS/lib.sh"
. "$INPUTS/md-lib.sh"
degrade() {   # degrade MD TAG MEMBER... : fail and remove the members, then mark
    md=$1 tag=$2; shift 2
    for m in "$@"; do mdadm "$md" --fail "$m"; mdadm "$md" --remove "$m"; done
    mark "$md" "$tag"
    sync
    volsum "$md" "$tag"
    mdadm --detail "$md" > "$RESULTS/$tag-detail.txt" || true
}
if [ -n "${DEV_p4a:-}" ]; then
make /dev/md0 r4-v12 --level=4 --raid-devices=3 --chunk=64 --metadata=1.2 --name=r4 $DEV_p4a $DEV_p4b $DEV_p4c
make /dev/md1 r5la-v090 --level=5 --layout=left-asymmetric --raid-devices=3 --chunk=32 --metadata=0.90 $DEV_p5a $DEV_p5b $DEV_p5c
make /dev/md2 r5rs-v11 --level=5 --layout=right-symmetric --raid-devices=4 --chunk=16 --metadata=1.1 --name=r5rs $DEV_q5a $DEV_q5b $DEV_q5c $DEV_q5d
make /dev/md3 r6-v10 --level=6 --raid-devices=4 --chunk=64 --metadata=1.0 --name=r6 $DEV_p6a $DEV_p6b $DEV_p6c $DEV_p6d
elif [ -n "${DEV_la6a:-}" ]; then
make /dev/md10 r6la-v12 --level=6 --layout=left-asymmetric --raid-devices=4 --chunk=64 --metadata=1.2 --name=r6la $DEV_la6a $DEV_la6b $DEV_la6c $DEV_la6d
make /dev/md11 r6rs-v11 --level=6 --layout=right-symmetric --raid-devices=4 --chunk=32 --metadata=1.1 --name=r6rs $DEV_rs6a $DEV_rs6b $DEV_rs6c $DEV_rs6d
make /dev/md12 r6ra-v10 --level=6 --layout=right-asymmetric --raid-devices=4 --chunk=16 --metadata=1.0 --name=r6ra $DEV_ra6a $DEV_ra6b $DEV_ra6c $DEV_ra6d
make /dev/md13 r6pf-v090 --level=6 --layout=parity-first --raid-devices=4 --chunk=64 --metadata=0.90 $DEV_pf6a $DEV_pf6b $DEV_pf6c $DEV_pf6d
make /dev/md14 r6ls6-v12 --level=6 --layout=left-symmetric-6 --raid-devices=4 --chunk=32 --metadata=1.2 --name=r6ls6 $DEV_ls6a $DEV_ls6b $DEV_ls6c $DEV_ls6d
else
make /dev/md4 r10n2-v12 --level=10 --layout=n2 --raid-devices=4 --chunk=64 --metadata=1.2 --name=r10n $DEV_tna $DEV_tnb $DEV_tnc $DEV_tnd
make /dev/md5 r10f2-v12 --level=10 --layout=f2 --raid-devices=3 --chunk=32 --metadata=1.2 --name=r10f $DEV_tfa $DEV_tfb $DEV_tfc
make /dev/md6 r10o2-v12 --level=10 --layout=o2 --raid-devices=3 --chunk=32 --metadata=1.2 --name=r10o $DEV_toa $DEV_tob $DEV_toc
mdadm --create /dev/md7 --run --level=5 --raid-devices=3 --chunk=64 --metadata=1.2 --name=r5deg $DEV_dga $DEV_dgb $DEV_dgc
md_settle /dev/md7
degrade /dev/md7 r5deg $DEV_dgb
mdadm --create /dev/md8 --run --level=6 --raid-devices=5 --chunk=32 --metadata=1.2 --name=r6deg $DEV_eda $DEV_edb $DEV_edc $DEV_edd $DEV_ede
md_settle /dev/md8
degrade /dev/md8 r6deg $DEV_edb $DEV_ede
fi
cat /proc/mdstat > "$RESULTS/mdstat.txt"
for m in 0 1 2 3 4 5 6 7 8 10 11 12 13 14; do [ -e /dev/md$m ] && mdadm --stop /dev/md$m || true; done
while read -r name dev; do
    mdadm --examine "$dev" > "$RESULTS/examine-$name.txt" 2>&1 || true
done < "$DISKS"
